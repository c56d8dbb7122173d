package shares

import (
	"crypto/ed25519"
	"errors"
)

// States of a share in a custodian's inventory.
const (
	// StateKept: the custodian keeps the share and will not abort it
	// (committed, or past its abort window).
	StateKept = "kept"
	// StateUncommitted: stored within its abort window and not committed:
	// the coordinator may still abort it.
	StateUncommitted = "uncommitted"
	// StateDestroyed: destroyed at retention end.
	StateDestroyed = "destroyed"
	// StateAborted: dropped because its deposit failed elsewhere.
	StateAborted = "aborted"
)

// ShareState is a custodian's word on one share it keeps or kept.
type ShareState struct {
	EscrowID     string `json:"escrow_id"`
	Index        int    `json:"index"`
	SealedSHA256 string `json:"sealed_sha256"`
	// StoredAt is the custodian's clock when it stored the share, in
	// TimeLayout; empty for a share destroyed before custodians kept it.
	StoredAt string `json:"stored_at,omitempty"`
	State    string `json:"state"`
}

// Inventory is a custodian's signed answer to "which shares do you keep":
// for one conversation and key id (status), or for the shares stored in
// [Since, Until) (reconciliation). It names no conversation beyond the one
// asked about.
type Inventory struct {
	Custodian      string       `json:"custodian"`
	At             string       `json:"at"`
	ConversationID string       `json:"conversation_id,omitempty"`
	KeyID          string       `json:"key_id,omitempty"`
	Since          string       `json:"since,omitempty"`
	Until          string       `json:"until,omitempty"`
	Shares         []ShareState `json:"shares"`
	// Holds, in a status answer, are the ids of the legal holds on the
	// conversation the custodian has on record and not lifted: a hold it
	// lacks is one the mediator withheld from it.
	Holds []string `json:"holds,omitempty"`
}

// inventoryContext separates inventory signatures from every other
// Ed25519 signature a custodian makes.
const inventoryContext = "mediator-custodian-inventory-v1\n"

// SignedInventory is an inventory and the custodian's Ed25519 signature
// over "mediator-custodian-inventory-v1\n" followed by its RFC 8785 JSON.
type SignedInventory struct {
	Inventory Inventory `json:"inventory"`
	Signature []byte    `json:"signature"`
}

// SignInventory signs inv with the custodian's key.
func SignInventory(priv ed25519.PrivateKey, inv Inventory) (SignedInventory, error) {
	c, err := canonicalJSON(inv)
	if err != nil {
		return SignedInventory{}, err
	}
	return SignedInventory{Inventory: inv, Signature: ed25519.Sign(priv, append([]byte(inventoryContext), c...))}, nil
}

// ErrBadInventory: an inventory's signature does not verify with the
// custodian's key.
var ErrBadInventory = errors.New("shares: the inventory's signature does not verify with the custodian's key")

// Verify checks the signature with the custodian's public key.
func (s SignedInventory) Verify(pub ed25519.PublicKey) error {
	c, err := canonicalJSON(s.Inventory)
	if err != nil {
		return err
	}
	if len(pub) != ed25519.PublicKeySize || !ed25519.Verify(pub, append([]byte(inventoryContext), c...), s.Signature) {
		return ErrBadInventory
	}
	return nil
}

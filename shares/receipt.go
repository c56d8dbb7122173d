package shares

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/go-json-experiment/json/jsontext"
)

// Receipt kinds.
const (
	// ReceiptDeposit: the custodian stored its share of a deposit.
	ReceiptDeposit = "deposit"
	// ReceiptRelease: the custodian checked a release and sealed its share
	// to the request's recipient.
	ReceiptRelease = "release"
)

// Receipt is what a custodian signs for each share it stores or releases,
// so that a depositor, the log and a court can hold it to what it did.
type Receipt struct {
	Kind           string `json:"kind"`
	Custodian      string `json:"custodian"`
	EscrowID       string `json:"escrow_id"`
	ConversationID string `json:"conversation_id"`
	KeyID          string `json:"key_id"`
	Index          int    `json:"index"`
	Commitment     string `json:"commitment"`
	// SealedSHA256 is the hex SHA-256 of the sealed share the custodian
	// received (deposit) or returned (release).
	SealedSHA256 string `json:"sealed_sha256"`
	// At is the custodian's own clock, RFC 3339 UTC with microseconds.
	At string `json:"at"`

	// Locator names where the custodian keeps the share (deposit).
	Locator string `json:"locator,omitempty"`

	// A release's request: its id and digest, the recipient key's
	// fingerprint, the revision of the custodian's own policy and the
	// roster version it used.
	RequestID      string `json:"request_id,omitempty"`
	RequestDigest  string `json:"request_digest,omitempty"`
	RecipientKey   string `json:"recipient_key,omitempty"`
	PolicyRevision string `json:"policy_revision,omitempty"`
	// RosterDigest is the roster version whose approvers the custodian
	// checked the approvals against.
	RosterDigest string `json:"roster_digest,omitempty"`
}

// TimeLayout is how receipts and custodian records write times.
const TimeLayout = "2006-01-02T15:04:05.000000Z"

// FormatTime writes t as TimeLayout.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeLayout) }

// SealedHash is the hex SHA-256 of a sealed share, as receipts carry it.
func SealedHash(sealed []byte) string {
	sum := sha256.Sum256(sealed)
	return hex.EncodeToString(sum[:])
}

// receiptContext separates receipt signatures from every other Ed25519
// signature a custodian makes.
const receiptContext = "mediator-custodian-receipt-v1\n"

// canonical is the RFC 8785 JSON of r.
func (r Receipt) canonical() ([]byte, error) { return canonicalJSON(r) }

// canonicalJSON is the RFC 8785 JSON of v.
func canonicalJSON(v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("shares: %T: %w", v, err)
	}
	j := jsontext.Value(raw)
	if err := j.Canonicalize(); err != nil {
		return nil, fmt.Errorf("shares: %T: %w", v, err)
	}
	return j, nil
}

// SignedReceipt is a receipt and the custodian's Ed25519 signature over
// "mediator-custodian-receipt-v1\n" followed by the receipt's RFC 8785 JSON.
type SignedReceipt struct {
	Receipt   Receipt `json:"receipt"`
	Signature []byte  `json:"signature"`
}

// Sign signs r with the custodian's key.
func Sign(priv ed25519.PrivateKey, r Receipt) (SignedReceipt, error) {
	c, err := r.canonical()
	if err != nil {
		return SignedReceipt{}, err
	}
	return SignedReceipt{Receipt: r, Signature: ed25519.Sign(priv, append([]byte(receiptContext), c...))}, nil
}

// ErrBadReceipt: a receipt's signature does not verify with the custodian's
// key.
var ErrBadReceipt = errors.New("shares: the receipt's signature does not verify with the custodian's key")

// Verify checks the signature with the custodian's public key.
func (s SignedReceipt) Verify(pub ed25519.PublicKey) error {
	c, err := s.Receipt.canonical()
	if err != nil {
		return err
	}
	if len(pub) != ed25519.PublicKeySize || !ed25519.Verify(pub, append([]byte(receiptContext), c...), s.Signature) {
		return ErrBadReceipt
	}
	return nil
}

// Hash is "sha256:" and the hex SHA-256 of the signed receipt (its
// canonical JSON, then the signature): what the log records of it.
func (s SignedReceipt) Hash() string {
	c, err := s.Receipt.canonical()
	if err != nil {
		return ""
	}
	h := sha256.New()
	h.Write(c)
	h.Write(s.Signature)
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

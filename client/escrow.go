package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/mediatorhq/mediator/shares"
	"github.com/mediatorhq/mediator/wire"
)

// CustodianSet fetches the custodian set new deposits are sealed for and
// checks it against pinned, the digest the depositor's configuration pins
// (printed by `mediator escrow custodians` on a host the depositor trusts,
// and by the custodians' operators). A set that does not match is refused:
// nothing is sealed to keys the depositor did not pin.
func (c *Client) CustodianSet(ctx context.Context, pinned string) (shares.Set, error) {
	var out wire.CustodianSet
	if err := c.get(ctx, "/v1/escrow/custodians", &out); err != nil {
		return shares.Set{}, err
	}
	if err := out.Set.CheckPinned(pinned); err != nil {
		return shares.Set{}, fmt.Errorf("client: %w", err)
	}
	return out.Set, nil
}

// FetchCustodianSet returns the custodian set the mediator serves and its
// digest, checked for nothing but its form. It is for showing the digest
// to a person who compares it with what the custodians' operators
// publish, and for tools pointed at a mediator they already trust (load
// generation); a depositor uses CustodianSet with a pinned digest.
func (c *Client) FetchCustodianSet(ctx context.Context) (shares.Set, string, error) {
	var out wire.CustodianSet
	if err := c.get(ctx, "/v1/escrow/custodians", &out); err != nil {
		return shares.Set{}, "", err
	}
	if err := out.Set.Validate(); err != nil {
		return shares.Set{}, "", fmt.Errorf("client: %w", err)
	}
	digest, err := out.Set.Digest()
	if err != nil {
		return shares.Set{}, "", err
	}
	return out.Set, digest, nil
}

// Deposited is what a deposit gives back: the mediator's answer, its
// custodians' receipts checked, and whether it created the escrow.
type Deposited struct {
	wire.DepositResponse
	Created bool
	// Conversation is the conversation's pseudonym: what the mediator and
	// the custodians were given, and the shares are bound to.
	Conversation string
}

// ErrReceipt: the mediator's answer to a deposit lacks a custodian's
// receipt, or holds one that the custodian's key in the set sealed to
// does not verify, or that is not for this deposit: the deposit is not
// proven stored.
var ErrReceipt = errors.New("client: the deposit is not proven stored: a custodian's deposit receipt is missing or does not match")

// Deposit escrows key under (conversationID, keyID) without it ever leaving
// this machine: it fetches the custodian set and checks it against the
// pinned digest, splits the key (K of N) and seals share i to custodian i,
// posts only the commitment and the sealed shares, and checks that every
// custodian signed a receipt for exactly the share it was sent. The caller
// keeps (and zeroes) the key.
func (c *Client) Deposit(ctx context.Context, pinned, conversationID, keyID string, key []byte) (Deposited, error) {
	set, err := c.CustodianSet(ctx, pinned)
	if err != nil {
		return Deposited{}, err
	}
	sp, err := shares.NewSplitter(set)
	if err != nil {
		return Deposited{}, err
	}
	return c.DepositTo(ctx, sp, pinned, conversationID, keyID, key)
}

// DepositByRoster is Deposit to the custodians of the roster in force,
// verified from genesis, the roster digest the depositor pins (Roster):
// the custodian set then changes only as a quorum of approvers signs.
func (c *Client) DepositByRoster(ctx context.Context, genesis, conversationID, keyID string, key []byte) (Deposited, error) {
	set, err := c.RosterSet(ctx, genesis)
	if err != nil {
		return Deposited{}, err
	}
	digest, err := set.Digest()
	if err != nil {
		return Deposited{}, err
	}
	sp, err := shares.NewSplitter(set)
	if err != nil {
		return Deposited{}, err
	}
	return c.DepositTo(ctx, sp, digest, conversationID, keyID, key)
}

// DepositTo is Deposit with a splitter for a set the caller already
// fetched and checked against pinned: a gateway depositing many keys
// fetches the set, and parses its keys, once.
//
// The shares are sealed for a v2 deposit (shares.Binding): under an
// escrow id this call chooses and this machine's clock, so that the
// sealed bytes open as no other escrow and at no later time.
//
// It returns success only when every custodian of the set signed a
// deposit receipt for this deposit (CheckDepositReceipts): for a new
// escrow (201) a receipt for exactly the sealed share it was sent; for a
// key escrowed before (200) the receipts of the stored shares. Anything
// less is an error wrapping ErrReceipt, with the mediator's answer: the
// mediator could otherwise drop a deposit and claim it kept it.
func (c *Client) DepositTo(ctx context.Context, sp *shares.Splitter, pinned, conversationID, keyID string, key []byte) (Deposited, error) {
	conversationID, err := c.conversationPseudonym(ctx, conversationID)
	if err != nil {
		return Deposited{}, err
	}
	set := sp.Set()
	b := shares.Binding{EscrowID: uuid.NewString(), DepositedAt: shares.FormatTime(time.Now())}
	commitment, sealed, err := sp.SplitBound(conversationID, keyID, b, key)
	if err != nil {
		return Deposited{}, err
	}
	body := wire.DepositRequest{ConversationID: conversationID, KeyID: keyID, Commitment: commitment,
		CustodianSet: pinned, Threshold: set.Threshold, Shares: make([]wire.DepositShare, len(sealed)),
		EscrowID: b.EscrowID, DepositedAt: b.DepositedAt}
	for i, s := range sealed {
		body.Shares[i] = wire.DepositShare{Custodian: s.Custodian, Index: s.Index, Sealed: s.Sealed}
	}
	out := Deposited{Conversation: conversationID}
	status, err := c.do(ctx, http.MethodPost, "/v1/escrow/keys", "", body, &out.DepositResponse)
	if err != nil {
		return Deposited{}, err
	}
	out.Created = status == http.StatusCreated
	if out.Created && out.EscrowID != b.EscrowID {
		return out, fmt.Errorf("%w: the mediator created escrow %s, not the %s the shares were sealed for", ErrReceipt, out.EscrowID, b.EscrowID)
	}
	if out.KeyCommitment != commitment {
		return out, fmt.Errorf("%w: the mediator recorded another commitment for %s/%s", ErrReceipt, conversationID, keyID)
	}
	// A key escrowed before was sealed with other randomness: its receipts
	// are for the shares sent then, whose hashes this call cannot know.
	var sent []shares.SealedShare
	if out.Created {
		sent = sealed
	}
	if err := CheckDepositReceipts(set, out.DepositResponse, conversationID, keyID, commitment, sent); err != nil {
		return out, fmt.Errorf("%s/%s: %w", conversationID, keyID, err)
	}
	return out, nil
}

// CheckDepositReceipts checks that ans holds, in set order, one deposit
// receipt from every custodian of set (a custodian signs one only once it
// has committed the share, and refuses to abort it from then on), each signed with that custodian's
// signing key in set and naming its kind (deposit), the custodian, its
// 1-based index, ans's escrow id, the conversation, the key id and the
// commitment. With sealed (a fresh deposit) each receipt must also name
// the SHA-256 of the share sent to that custodian. Any failure wraps
// ErrReceipt and names the custodian.
//
// Cost: one Ed25519 verification per custodian.
func CheckDepositReceipts(set shares.Set, ans wire.DepositResponse, conversationID, keyID, commitment string, sealed []shares.SealedShare) error {
	if len(ans.Receipts) != len(set.Custodians) {
		return fmt.Errorf("%w: %d receipts for %d custodians", ErrReceipt, len(ans.Receipts), len(set.Custodians))
	}
	for i, r := range ans.Receipts {
		cu := set.Custodians[i]
		if err := r.Verify(cu.SigningKey); err != nil {
			return fmt.Errorf("%w: %s's receipt: %v", ErrReceipt, cu.Name, err)
		}
		rc := r.Receipt
		if rc.Kind != shares.ReceiptDeposit || rc.Custodian != cu.Name || rc.EscrowID != ans.EscrowID || rc.Index != i+1 ||
			rc.ConversationID != conversationID || rc.KeyID != keyID || rc.Commitment != commitment {
			return fmt.Errorf("%w: %s's receipt is not for this deposit", ErrReceipt, cu.Name)
		}
		if sealed != nil && rc.SealedSHA256 != shares.SealedHash(sealed[i].Sealed) {
			return fmt.Errorf("%w: %s's receipt is not for the share sent", ErrReceipt, cu.Name)
		}
	}
	return nil
}

// DepositRawKey escrows key through a gateway agent (`mediator agent`, a
// client from NewLocal): the agent pseudonymises the conversation id,
// splits and seals the key against the roster it verified, and checks
// every custodian's receipt before it answers. The key crosses only the
// local socket. The answer is the mediator's, with the conversation's
// pseudonym.
func (c *Client) DepositRawKey(ctx context.Context, conversationID, keyID string, key []byte) (Deposited, error) {
	body := struct {
		ConversationID string `json:"conversation_id"`
		KeyID          string `json:"key_id"`
		Key            []byte `json:"key"`
	}{conversationID, keyID, key}
	var out struct {
		wire.DepositResponse
		Conversation string `json:"conversation"`
	}
	status, err := c.do(ctx, http.MethodPost, "/v1/escrow/keys", "", body, &out)
	if err != nil {
		return Deposited{}, err
	}
	return Deposited{DepositResponse: out.DepositResponse, Created: status == http.StatusCreated, Conversation: out.Conversation}, nil
}

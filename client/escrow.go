package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"

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
}

// ErrReceipt: the mediator answered with a receipt that the custodian's key
// in the pinned set does not verify, or that is not for the share sent.
var ErrReceipt = errors.New("client: a custodian's deposit receipt does not match")

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
func (c *Client) DepositTo(ctx context.Context, sp *shares.Splitter, pinned, conversationID, keyID string, key []byte) (Deposited, error) {
	set := sp.Set()
	commitment, sealed, err := sp.Split(conversationID, keyID, key)
	if err != nil {
		return Deposited{}, err
	}
	body := wire.DepositRequest{ConversationID: conversationID, KeyID: keyID, Commitment: commitment,
		CustodianSet: pinned, Threshold: set.Threshold, Shares: make([]wire.DepositShare, len(sealed))}
	for i, s := range sealed {
		body.Shares[i] = wire.DepositShare{Custodian: s.Custodian, Index: s.Index, Sealed: s.Sealed}
	}
	var out Deposited
	status, err := c.do(ctx, http.MethodPost, "/v1/escrow/keys", "", body, &out.DepositResponse)
	if err != nil {
		return Deposited{}, err
	}
	out.Created = status == http.StatusCreated
	if out.KeyCommitment != commitment {
		return out, fmt.Errorf("client: the mediator recorded another commitment for %s/%s", conversationID, keyID)
	}
	if !out.Created {
		// The same key was escrowed before: its receipts are for the
		// shares sent then.
		return out, nil
	}
	if len(out.Receipts) != len(set.Custodians) {
		return out, fmt.Errorf("%w: %d receipts for %d custodians", ErrReceipt, len(out.Receipts), len(set.Custodians))
	}
	for i, r := range out.Receipts {
		cu := set.Custodians[i]
		if err := r.Verify(cu.SigningKey); err != nil {
			return out, fmt.Errorf("%w: %s: %v", ErrReceipt, cu.Name, err)
		}
		rc := r.Receipt
		if rc.Kind != shares.ReceiptDeposit || rc.Custodian != cu.Name || rc.EscrowID != out.EscrowID || rc.Index != i+1 ||
			rc.ConversationID != conversationID || rc.KeyID != keyID || rc.Commitment != commitment ||
			rc.SealedSHA256 != shares.SealedHash(sealed[i].Sealed) {
			return out, fmt.Errorf("%w: %s's receipt is not for the share sent", ErrReceipt, cu.Name)
		}
	}
	return out, nil
}

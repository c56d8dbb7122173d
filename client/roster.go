package client

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/shares"
	"github.com/mediatorhq/mediator/wire"
)

// Roster fetches the roster chain and verifies it from genesis, the digest
// the caller pins: it returns the version in force and its digest only if
// every version is adopted by its predecessor's quorum and every new key
// proved possession. A chain that does not verify, or whose genesis is
// another, is refused: the mediator's word counts for nothing. A chain
// that lacks the newest version this Client verified before is refused
// with ErrRosterRollback.
func (c *Client) Roster(ctx context.Context, genesis string) (roster.Roster, string, error) {
	versions, digest, err := c.RosterVersions(ctx, genesis)
	if err != nil {
		return roster.Roster{}, "", err
	}
	return versions[len(versions)-1], digest, nil
}

// RosterVersions is Roster returning every version of the verified chain,
// genesis first, and the digest of the last, the version in force. A
// party that checks what custodians signed under earlier versions (their
// deposit receipts) needs them all. It refuses what Roster refuses.
//
// Cost: one GET, and one roster.Check per version.
func (c *Client) RosterVersions(ctx context.Context, genesis string) ([]roster.Roster, string, error) {
	chain, versions, err := c.VerifiedChain(ctx, genesis)
	if err != nil {
		return nil, "", err
	}
	return versions, roster.Digest(chain[len(chain)-1].Roster), nil
}

// VerifiedChain fetches the roster chain and returns it as signed, with
// every version parsed, only if it verifies from genesis and holds the
// newest version this Client verified before (ErrRosterRollback
// otherwise): what a tool hands custodians directly, and the versions it
// takes their URLs from.
//
// Cost: one GET, and one roster.Check per version.
func (c *Client) VerifiedChain(ctx context.Context, genesis string) ([]roster.Signed, []roster.Roster, error) {
	var out wire.RosterChain
	if err := c.get(ctx, "/v1/roster", &out); err != nil {
		return nil, nil, err
	}
	versions, err := roster.VerifyChain(genesis, out.Chain)
	if err != nil {
		return nil, nil, fmt.Errorf("client: the roster chain served does not verify from the pinned genesis: %w", err)
	}
	r, digest := versions[len(versions)-1], roster.Digest(out.Chain[len(out.Chain)-1].Roster)
	c.seenMu.Lock()
	defer c.seenMu.Unlock()
	seen := c.seen[genesis]
	if !roster.Extends(out.Chain, seen.version, seen.digest) {
		return nil, nil, fmt.Errorf("%w: the chain ends at version %d and does not hold version %d (%s), which this client verified before",
			ErrRosterRollback, r.Version, seen.version, seen.digest)
	}
	if c.seen == nil {
		c.seen = map[string]seenVersion{}
	}
	c.seen[genesis] = seenVersion{version: r.Version, digest: digest}
	return out.Chain, versions, nil
}

// ErrRosterRollback: the mediator served a roster chain older than one
// this client verified before, which would hide a removal or a re-key.
var ErrRosterRollback = errors.New("client: the roster chain is older than one verified before")

type seenVersion struct {
	version uint64
	digest  string
}

// RosterMemory is the newest roster version this client verified for
// genesis, and its digest: what a long-lived caller keeps across restarts
// (RememberRoster) so that no restart lets an older chain through. ok is
// false before any verification.
func (c *Client) RosterMemory(genesis string) (version uint64, digest string, ok bool) {
	c.seenMu.Lock()
	defer c.seenMu.Unlock()
	s, ok := c.seen[genesis]
	return s.version, s.digest, ok
}

// RememberRoster makes the client refuse, for genesis, any chain that does
// not extend version with digest: a memory RosterMemory gave before. It
// keeps a newer memory it already has.
func (c *Client) RememberRoster(genesis string, version uint64, digest string) {
	c.seenMu.Lock()
	defer c.seenMu.Unlock()
	if c.seen == nil {
		c.seen = map[string]seenVersion{}
	}
	if cur, ok := c.seen[genesis]; ok && cur.version >= version {
		return
	}
	c.seen[genesis] = seenVersion{version: version, digest: digest}
}

// RosterChain fetches the chain as served, unverified.
func (c *Client) RosterChain(ctx context.Context) (wire.RosterChain, error) {
	var out wire.RosterChain
	return out, c.get(ctx, "/v1/roster", &out)
}

// RosterSet returns the custodian set of the roster in force, verified
// from genesis (Roster): what a depositor seals shares to.
func (c *Client) RosterSet(ctx context.Context, genesis string) (shares.Set, error) {
	r, _, err := c.Roster(ctx, genesis)
	if err != nil {
		return shares.Set{}, err
	}
	return r.Set(), nil
}

// ProposeRoster files the next roster version (admin).
func (c *Client) ProposeRoster(ctx context.Context, d wire.RosterDraft) (wire.RosterProposal, error) {
	var out wire.RosterProposal
	return out, c.post(ctx, "/v1/roster/proposals", d, &out)
}

// RosterProposal fetches a proposal and its progress.
func (c *Client) RosterProposal(ctx context.Context, digest string) (wire.RosterProposal, error) {
	var out wire.RosterProposal
	return out, c.get(ctx, "/v1/roster/proposals/"+url.PathEscape(digest), &out)
}

// RosterProposals lists proposals, newest first.
func (c *Client) RosterProposals(ctx context.Context) (wire.RosterProposalList, error) {
	var out wire.RosterProposalList
	return out, c.get(ctx, "/v1/roster/proposals", &out)
}

// SignRoster signs the proposal with digest as approverID (the caller's
// token subject) with priv, and posts the signature.
func (c *Client) SignRoster(ctx context.Context, priv ed25519.PrivateKey, approverID, digest string) (wire.RosterProposal, error) {
	sig := roster.Sign(priv, digest, approverID)
	var out wire.RosterProposal
	return out, c.post(ctx, "/v1/roster/proposals/"+url.PathEscape(digest)+"/signatures", wire.RosterSignature{Signature: sig.Signature}, &out)
}

// Checkin signs and posts approverID's check-in for now.
func (c *Client) Checkin(ctx context.Context, priv ed25519.PrivateKey, approverID string) (wire.CheckinAnswer, error) {
	at := time.Now().UTC().Truncate(time.Second)
	var out wire.CheckinAnswer
	return out, c.post(ctx, "/v1/roster/checkins", wire.Checkin{At: at, Signature: ed25519.Sign(priv, roster.CheckinMessage(approverID, at))}, &out)
}

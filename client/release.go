package client

import (
	"context"
	"crypto/ed25519"
	"crypto/hpke"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/seal"
	"github.com/mediatorhq/mediator/shares"
	"github.com/mediatorhq/mediator/wire"
)

// Release asks for the keys of the caller's own request. The answer holds
// them sealed to the request's recipient key, with the mediator's account
// of them: Open verifies it against a ReleaseCheck before it opens
// anything. A release of many keys answers 202 while it goes on; Release
// asks again, once a second, until it completes or fails.
func (c *Client) Release(ctx context.Context, id string) (wire.Release, error) {
	return c.ReleaseWithProgress(ctx, id, nil)
}

// maxLostReleaseAnswers is how many release answers in a row may be lost
// before Release gives up.
const maxLostReleaseAnswers = 5

// ReleaseWithProgress is Release, calling progress (if not nil) with each
// 202 answer: how many of the request's keys have their shares so far.
// It gathers every page of the answer in memory; ReleasePages does not.
func (c *Client) ReleaseWithProgress(ctx context.Context, id string, progress func(wire.ReleaseProgress)) (wire.Release, error) {
	return gather(func(page func(wire.Release) error) error { return c.ReleasePages(ctx, id, progress, page) })
}

// ReleasePages is ReleaseWithProgress, handing each page of the answer
// (at most 1,000 keys, in escrow id order) to page as it arrives, so that
// the officer's client opens and writes a release of any size a page at
// a time. The first page carries the release's decision, audit seq and
// refusals. An error from page stops it and is returned; a page that is
// not the next page of this release is ErrUnverifiedRelease.
func (c *Client) ReleasePages(ctx context.Context, id string, progress func(wire.ReleaseProgress), page func(wire.Release) error) error {
	path := "/v1/access-requests/" + url.PathEscape(id) + "/release"
	lost := 0 // answers lost in a row
	for {
		var raw json.RawMessage
		status, err := c.do(ctx, http.MethodPost, path, "", wire.Empty{}, &raw)
		var answered *Error
		if err != nil && !errors.As(err, &answered) && ctx.Err() == nil && lost < maxLostReleaseAnswers {
			// The answer was lost (a dropped connection, a call that
			// outlasted a timeout): asking again is safe, since what was
			// released is kept and each custodian answers the same.
			lost++
			select {
			case <-ctx.Done():
			case <-time.After(2 * time.Second):
			}
			continue
		}
		if err != nil {
			return err
		}
		lost = 0
		if status == http.StatusAccepted {
			var p wire.ReleaseProgress
			if err := json.Unmarshal(raw, &p); err != nil {
				return fmt.Errorf("client: unexpected answer to POST %s: %w", path, err)
			}
			if progress != nil {
				progress(p)
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("client: release of %s: %w (the shares released so far are kept; ask again)", id, ctx.Err())
			case <-time.After(time.Second):
			}
			continue
		}
		var first wire.Release
		if err := json.Unmarshal(raw, &first); err != nil {
			return fmt.Errorf("client: unexpected answer to POST %s: %w", path, err)
		}
		return c.pages(ctx, id, first, page)
	}
}

// Released fetches a completed release again (its requester only): the
// shares the mediator kept, for an officer whose answer to Release was
// lost (ReleasedBefore), every page of it. Open verifies them as it
// verifies a Release.
func (c *Client) Released(ctx context.Context, id string) (wire.Release, error) {
	return gather(func(page func(wire.Release) error) error { return c.ReleasedPages(ctx, id, page) })
}

// ReleasedPages is Released, handing each page to page as ReleasePages
// does.
func (c *Client) ReleasedPages(ctx context.Context, id string, page func(wire.Release) error) error {
	var first wire.Release
	if err := c.get(ctx, "/v1/access-requests/"+url.PathEscape(id)+"/release", &first); err != nil {
		return err
	}
	return c.pages(ctx, id, first, page)
}

// pages hands first, a release's first page, and every page after it to
// page. A page that is not of the same release, holds a key outside its
// place in escrow id order, or does not move on, is an error.
func (c *Client) pages(ctx context.Context, id string, first wire.Release, page func(wire.Release) error) error {
	if err := checkPage(first, first.RequestID, ""); err != nil {
		return err
	}
	if err := page(first); err != nil {
		return err
	}
	for next := first.NextAfter; next != ""; {
		var p wire.Release
		if err := c.get(ctx, "/v1/access-requests/"+url.PathEscape(id)+"/release?after="+url.QueryEscape(next), &p); err != nil {
			return fmt.Errorf("client: the release's page after %s: %w", next, err)
		}
		if err := checkPage(p, first.RequestID, next); err != nil {
			return err
		}
		if err := page(p); err != nil {
			return err
		}
		next = p.NextAfter
	}
	return nil
}

// checkPage checks that p is a page of release requestID that follows the
// escrow id after: its keys lie after it, in order, up to p.NextAfter
// when set, and a page that names a next one holds keys.
func checkPage(p wire.Release, requestID, after string) error {
	bad := p.RequestID != requestID || (p.NextAfter != "" && (p.NextAfter <= after || len(p.Keys) == 0))
	last := after
	for _, k := range p.Keys {
		if k.EscrowID <= last || (p.NextAfter != "" && k.EscrowID > p.NextAfter) {
			bad = true
		}
		last = k.EscrowID
	}
	if bad {
		return fmt.Errorf("%w: the page after %q is not the next page of this release", ErrUnverifiedRelease, after)
	}
	return nil
}

// gather runs a paged release and returns its first page with the keys
// of every page.
func gather(run func(page func(wire.Release) error) error) (wire.Release, error) {
	var out wire.Release
	pages := 0
	err := run(func(p wire.Release) error {
		if pages == 0 {
			out = p
		} else {
			out.Keys = append(out.Keys, p.Keys...)
		}
		pages++
		return nil
	})
	if err != nil {
		return wire.Release{}, err
	}
	out.NextAfter = ""
	return out, nil
}

// ReleasedBefore reports whether err is the mediator's answer to Release
// for a request it released already (409 request_final, status
// released): an earlier answer was lost, and Released fetches the kept
// shares.
func ReleasedBefore(err error) bool {
	var e *Error
	if !errors.As(err, &e) || e.Status != http.StatusConflict || e.Code != "request_final" {
		return false
	}
	for _, d := range e.Details {
		var st struct {
			Status string `json:"status"`
		}
		if json.Unmarshal(d, &st) == nil && st.Status == "released" {
			return true
		}
	}
	return false
}

// ErrUnverifiedRelease: a release, or the request it is for, does not
// check out against what the officer's client verified itself; nothing of
// it is opened.
var ErrUnverifiedRelease = errors.New("client: the release does not verify")

// ReleaseCheck is what the officer's client verified itself before it
// opens a release; Open trusts nothing else.
type ReleaseCheck struct {
	// Request is parsed from the request's canonical bytes
	// (approval.Parse), never from the mediator's other fields.
	Request approval.Request
	// Digest is approval.Digest of those bytes: what approvers signed and
	// custodians name in their release receipts.
	Digest string
	// Roster is the version in force, verified from the pinned genesis:
	// its custodians' keys verify release receipts.
	Roster roster.Roster
	// Chain is every version of the verified chain, genesis first: a
	// deposit receipt is signed with the custodian's key of its day.
	Chain []roster.Roster
}

// CheckRelease fetches request id and the roster chain, and returns what
// Open checks a release of it against: the request parsed from its
// canonical bytes, which must name id, hash to the digest the mediator
// shows and carry its officer's signature with their key in the roster in
// force (CheckRequest), and every version of the roster chain verified
// from genesis (RosterVersions, which refuses a rollback). Anything else
// is an error
// wrapping ErrUnverifiedRelease or the roster's error.
//
// Cost: two GETs and the chain's verification.
func (c *Client) CheckRelease(ctx context.Context, id, genesis string) (ReleaseCheck, error) {
	shown, err := c.Request(ctx, id)
	if err != nil {
		return ReleaseCheck{}, err
	}
	chain, _, err := c.RosterVersions(ctx, genesis)
	if err != nil {
		return ReleaseCheck{}, err
	}
	r, err := CheckRequest(shown, id, chain[len(chain)-1])
	if err != nil {
		return ReleaseCheck{}, fmt.Errorf("%w: request %s: %v", ErrUnverifiedRelease, id, err)
	}
	return ReleaseCheck{Request: r.Request, Digest: r.Digest, Roster: chain[len(chain)-1], Chain: chain}, nil
}

// CheckRecipient reports whether priv is the private key of the
// request's recipient, the only key its release is sealed to. An officer
// checks it before releasing: a release is final.
func (chk ReleaseCheck) CheckRecipient(priv hpke.PrivateKey) error {
	if mine, theirs := seal.PublicKeyOf(priv).Fingerprint(), chk.Request.Recipient.Fingerprint(); mine != theirs {
		return fmt.Errorf("%w: your key %s is not the recipient key of request %s (%s)", ErrUnverifiedRelease, mine, chk.Request.ID, theirs)
	}
	return nil
}

// OpenedKey is a released key, opened on the officer's machine and checked
// against the commitment its custodians signed at deposit.
type OpenedKey struct {
	ConversationID string `json:"conversation_id"`
	KeyID          string `json:"key_id"`
	Key            []byte `json:"key"`
	// BadShares names the custodians whose share, vouched for by their
	// own release receipt, did not open or is not on the key's
	// polynomial: the key was recovered without them.
	BadShares []string `json:"bad_shares,omitempty"`
	// Unverified counts the shares the mediator handed over without a
	// valid release receipt of their custodian. They were dropped
	// unopened, and no custodian is blamed for them: nothing shows they
	// came from one.
	Unverified int `json:"unverified_shares,omitempty"`
	// Warnings say where the mediator's account differed from what the
	// custodians signed; the custodians' word was used.
	Warnings []string `json:"warnings,omitempty"`
}

// KeyError is a released key that could not be recovered.
type KeyError struct {
	ConversationID, KeyID string
	// BadShares names custodians whose receipted shares did not open or
	// are off the key's polynomial (as far as the search got).
	BadShares []string
	// Unverified counts the shares dropped for want of a valid receipt.
	Unverified int
	Err        error
}

func (e *KeyError) Error() string {
	msg := fmt.Sprintf("client: the key of %s/%s was not recovered: %v", e.ConversationID, e.KeyID, e.Err)
	if len(e.BadShares) > 0 {
		msg += "; custodians whose receipted shares are bad: " + strings.Join(e.BadShares, ", ")
	}
	if e.Unverified > 0 {
		msg += fmt.Sprintf("; %d shares came without a valid custodian receipt and were dropped (unverified, from the mediator)", e.Unverified)
	}
	return msg
}

func (e *KeyError) Unwrap() error { return e.Err }

// Open verifies a release of the request chk was made for and opens every
// key of it with priv, the request's recipient key. It takes nothing on
// the mediator's word:
//
//   - a key's commitment is the one its custodians signed in their
//     deposit receipts, each verified with that custodian's signing key in
//     a version of chk.Chain and naming this escrow, conversation and key
//     id; the mediator's key_commitment only raises a warning when it
//     differs;
//   - a share counts only with its custodian's release receipt, verified
//     with the custodian's key in the roster in force and naming this
//     escrow, conversation, key id and index, the request's id, its
//     locally recomputed digest and recipient key, that commitment and the
//     SHA-256 of exactly the sealed bytes. Any other share is dropped
//     unopened and counted in Unverified, never blamed on the custodian it
//     is labelled with;
//   - the receipted shares are opened and combined (shares.Recover, within
//     shares.MaxSubsets subsets) under the mediator's threshold, a hint
//     of at least 2: the commitment decides.
//
// A custodian is named in BadShares only if its receipted share did not
// open or is off the key's polynomial. Keys that could not be recovered
// come back as *KeyError, joined; a release for another request, or priv
// not the request's recipient key, is refused whole (ErrUnverifiedRelease).
// The caller must clear the keys.
//
// Cost per key: one Ed25519 verification per receipt, one HPKE open per
// receipted share, and shares.Recover's combines (1 + n − k of n honest
// shares). 100 keys of 5 custodians, K=3, take about 0.2 s
// (BenchmarkOpenRelease100, docs/performance.md).
func Open(priv hpke.PrivateKey, chk ReleaseCheck, rel wire.Release) ([]OpenedKey, error) {
	if err := chk.CheckRecipient(priv); err != nil {
		return nil, err
	}
	if rel.RequestID != chk.Request.ID {
		return nil, fmt.Errorf("%w: the answer is a release of request %q, not of %s", ErrUnverifiedRelease, rel.RequestID, chk.Request.ID)
	}
	o := opener{priv: priv, chk: chk, recipient: chk.Request.Recipient.Fingerprint(), keys: signingKeys(chk)}
	out := make([]OpenedKey, 0, len(rel.Keys))
	var errs []error
	for _, k := range rel.Keys {
		key, err := o.open(k)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, key)
	}
	return out, errors.Join(errs...)
}

// opener opens the keys of one release.
type opener struct {
	priv      hpke.PrivateKey
	chk       ReleaseCheck
	recipient string // the fingerprint of the request's recipient key
	keys      custodianKeys
}

// custodianKeys are the custodians' receipt-signing keys: in the roster in
// force, which verify release receipts, and in every version of the
// chain, which verify deposit receipts signed under the version of their
// day.
type custodianKeys struct {
	current map[string]ed25519.PublicKey
	ever    map[string][]ed25519.PublicKey
}

func signingKeys(chk ReleaseCheck) custodianKeys {
	ks := custodianKeys{current: map[string]ed25519.PublicKey{}, ever: map[string][]ed25519.PublicKey{}}
	for _, c := range chk.Roster.Custodians {
		ks.current[c.Name] = c.SigningKey
	}
	for _, r := range chk.Chain {
		for _, c := range r.Custodians {
			if !slices.ContainsFunc(ks.ever[c.Name], func(k ed25519.PublicKey) bool { return k.Equal(c.SigningKey) }) {
				ks.ever[c.Name] = append(ks.ever[c.Name], c.SigningKey)
			}
		}
	}
	return ks
}

// signedOnce reports whether a key custodian name held in some version
// of the chain verifies r.
func (ks custodianKeys) signedOnce(name string, r shares.SignedReceipt) bool {
	for _, pub := range ks.ever[name] {
		if r.Verify(pub) == nil {
			return true
		}
	}
	return false
}

// open opens one key in four phases: its commitment from the deposit
// receipts, its shares with a valid release receipt, those opened, and
// the combine.
func (o opener) open(k wire.ReleasedKey) (OpenedKey, error) {
	fail := &KeyError{ConversationID: k.ConversationID, KeyID: k.KeyID}
	if !slices.Contains(o.chk.Request.Scope.ConversationIDs, k.ConversationID) {
		fail.Err = errors.New("its conversation is not in the request's scope")
		return OpenedKey{}, fail
	}
	commitment, warnings, err := o.keys.depositCommitment(k)
	if err != nil {
		fail.Err = err
		return OpenedKey{}, fail
	}
	receipted, unverified := o.receipted(k, commitment)
	parts, unopened := o.openShares(k, receipted)
	defer func() {
		for _, p := range parts {
			clear(p.Share)
		}
	}()
	fail.Unverified, fail.BadShares = unverified, unopened
	key, bad, err := shares.Recover(k.ConversationID, k.KeyID, commitment, k.Threshold, parts)
	if err != nil {
		fail.Err = err
		return OpenedKey{}, fail
	}
	return OpenedKey{ConversationID: k.ConversationID, KeyID: k.KeyID, Key: key, BadShares: append(unopened, bad...),
		Unverified: unverified, Warnings: warnings}, nil
}

// depositCommitment is the commitment k's custodians signed at deposit:
// every deposit receipt shown that verifies and names k's escrow,
// conversation and key id must name the same one, and at least one must.
// It warns of receipts that do not verify, and of a key_commitment of the
// mediator's own.
func (ks custodianKeys) depositCommitment(k wire.ReleasedKey) (string, []string, error) {
	commitment, ignored := "", 0
	for _, r := range k.DepositReceipts {
		rc := r.Receipt
		if rc.Kind != shares.ReceiptDeposit || rc.EscrowID != k.EscrowID || rc.ConversationID != k.ConversationID ||
			rc.KeyID != k.KeyID || !ks.signedOnce(rc.Custodian, r) {
			ignored++
			continue
		}
		if commitment != "" && rc.Commitment != commitment {
			return "", nil, errors.New("its custodians' deposit receipts name different commitments")
		}
		commitment = rc.Commitment
	}
	if commitment == "" {
		return "", nil, fmt.Errorf("none of the %d deposit receipts shown verifies with a custodian's key for this escrow: the key's commitment is unknown",
			len(k.DepositReceipts))
	}
	var warnings []string
	if ignored > 0 {
		warnings = append(warnings, fmt.Sprintf("%d deposit receipts shown by the mediator do not verify for this escrow and were ignored", ignored))
	}
	if k.KeyCommitment != commitment {
		warnings = append(warnings, "the mediator's key_commitment is not the one the custodians signed at deposit; theirs was used")
	}
	return commitment, warnings, nil
}

// receipted returns k's shares that carry a valid release receipt of
// their custodian for exactly them (one per custodian), and how many
// others were dropped.
func (o opener) receipted(k wire.ReleasedKey, commitment string) ([]wire.ReleasedShare, int) {
	var out []wire.ReleasedShare
	seen := map[string]bool{}
	for _, sh := range k.Shares {
		rc := sh.Receipt.Receipt
		pub, listed := o.keys.current[sh.Custodian]
		// The cheap comparisons first; the signature last.
		if !listed || seen[sh.Custodian] || rc.Kind != shares.ReceiptRelease || rc.Custodian != sh.Custodian ||
			rc.EscrowID != k.EscrowID || rc.ConversationID != k.ConversationID || rc.KeyID != k.KeyID || rc.Index != sh.Index ||
			rc.RequestID != o.chk.Request.ID || rc.RequestDigest != o.chk.Digest || rc.RecipientKey != o.recipient ||
			rc.Commitment != commitment || rc.SealedSHA256 != shares.SealedHash(sh.Sealed) || sh.Receipt.Verify(pub) != nil {
			continue
		}
		seen[sh.Custodian] = true
		out = append(out, sh)
	}
	return out, len(k.Shares) - len(out)
}

// openShares opens receipted shares with the recipient key. A share that
// does not open is its custodian's doing (its receipt names exactly these
// bytes, this request and this recipient), and is named.
func (o opener) openShares(k wire.ReleasedKey, receipted []wire.ReleasedShare) ([]shares.Part, []string) {
	var parts []shares.Part
	var unopened []string
	for _, sh := range receipted {
		share, err := shares.OpenReleased(o.priv, o.chk.Request.ID, k.ConversationID, k.KeyID, sh.Custodian, sh.Index, sh.Sealed)
		if err != nil {
			unopened = append(unopened, sh.Custodian)
			continue
		}
		parts = append(parts, shares.Part{Custodian: sh.Custodian, Share: share})
	}
	return parts, unopened
}

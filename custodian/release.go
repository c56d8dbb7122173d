package custodian

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/policy"
	"github.com/mediatorhq/mediator/seal"
	"github.com/mediatorhq/mediator/shares"
	"github.com/mediatorhq/mediator/wire"
)

// maxReleaseShares bounds the shares one release call asks for.
const maxReleaseShares = 10000

// Release checks a release for itself and re-seals each share asked for to
// the request's recipient. It works only from what it can verify:
//
//   - the request is parsed from its canonical bytes (the digest is theirs),
//     never from fields the caller states;
//   - the roster chain verifies from the genesis this custodian pins and
//     holds the newest version it has seen; each approval counts only if
//     it verifies with an approver's key in the chain's last version,
//     with the roles given there;
//   - its own release policy decides, and must allow;
//   - each share must be in its own records, of a conversation in the
//     request's scope, stored within the scope's window, and never released
//     for this request before (a write-once record per request and escrow).
//
// A refusal of the whole release is a *RefusedError with reasons; a share
// that fails its own checks gets an item error and the others go on.
func (c *Custodian) Release(ctx context.Context, ev wire.ReleaseEvidence) (wire.ReleaseAnswer, error) {
	start := c.now()
	ans, err := c.release(ctx, ev)
	c.metrics.release(err, c.now().Sub(start))
	return ans, err
}

func (c *Custodian) release(ctx context.Context, ev wire.ReleaseEvidence) (wire.ReleaseAnswer, error) {
	rev := c.policy.Revision()
	if len(ev.Shares) == 0 || len(ev.Shares) > maxReleaseShares {
		return wire.ReleaseAnswer{}, badRequest("a release asks for 1–%d shares", maxReleaseShares)
	}
	req, err := approval.Parse(ev.Canonical)
	if err != nil {
		return wire.ReleaseAnswer{}, &RefusedError{Reasons: []string{"the request is not a canonical request: " + err.Error()}, PolicyRevision: rev}
	}
	if !validUUID(req.ID) {
		return wire.ReleaseAnswer{}, &RefusedError{Reasons: []string{"the request's id is not a UUID"}, PolicyRevision: rev}
	}
	digest := approval.Digest(ev.Canonical)
	if err := req.Recipient.Validate(); err != nil {
		return wire.ReleaseAnswer{}, &RefusedError{Reasons: []string{"the request's recipient key is unusable"}, PolicyRevision: rev}
	}
	current, rosterDigest, err := c.trustRoster(ctx, ev.Roster)
	if errors.Is(err, errUnavailable) {
		return wire.ReleaseAnswer{}, err
	}
	if err != nil {
		c.log.Warn("release refused: roster", "custodian", c.cfg.Name, "request_id", req.ID, "err", err)
		return wire.ReleaseAnswer{}, &RefusedError{Reasons: []string{err.Error()}, PolicyRevision: rev}
	}
	// A custodian that witnesses the audit log releases only what the log
	// shows: the request and every approval that counts, proven included
	// under a checkpoint it cosigned itself.
	var logged []bool
	if c.witness != nil {
		var reason string
		logged, reason, err = c.checkReleaseLogged(ctx, ev, req.ID, digest)
		if err != nil {
			return wire.ReleaseAnswer{}, err
		}
		if reason != "" {
			c.log.Warn("release refused: log", "custodian", c.cfg.Name, "request_id", req.ID, "reason", reason)
			c.metrics.logRefused()
			return wire.ReleaseAnswer{}, &RefusedError{Reasons: []string{reason}, PolicyRevision: rev}
		}
	}
	var unlogged []string
	now := c.now().UTC()
	in := policy.ReleaseInput{Now: now, Request: policy.ReleaseRequest{ID: req.ID, Requester: req.Requester, CaseID: req.CaseID,
		LegalBasis: req.LegalBasis, Jurisdiction: req.Jurisdiction,
		Scope:     policy.ReleaseScope{ConversationIDs: req.Scope.ConversationIDs, From: req.Scope.From, To: req.Scope.To},
		CreatedAt: req.CreatedAt, ExpiresAt: req.ExpiresAt}}
	for i, a := range ev.Approvals {
		roles, verified, active := verifyApproval(current, a.ApproverID, req.ID, digest, a.Decision, a.Signature)
		if logged != nil && !logged[i] {
			// Not in the log: it counts for nothing here.
			verified = false
			unlogged = append(unlogged, fmt.Sprintf("the approval by %s is not in the audit log under a checkpoint this custodian cosigned", a.ApproverID))
		}
		// The signature does not cover the time; the mediator's claim is
		// taken, but never later than now nor earlier than the request.
		at := a.ApprovedAt.UTC()
		if at.After(now) || at.Before(req.CreatedAt) {
			at = now
		}
		in.Approvals = append(in.Approvals, policy.ReleaseApproval{ApproverID: a.ApproverID, Roles: roles,
			Decision: a.Decision, ApprovedAt: at, SignatureVerified: verified, ApproverActive: active})
	}
	d, err := c.policy.DecideRelease(ctx, in)
	if err != nil {
		// Fail closed: no decision, no share.
		return wire.ReleaseAnswer{}, fmt.Errorf("%w: policy: %v", errUnavailable, err)
	}
	if !d.Allow {
		reasons := append(d.Reasons, unlogged...)
		c.log.Warn("release refused", "custodian", c.cfg.Name, "request_id", req.ID, "reasons", reasons, "policy_revision", rev)
		return wire.ReleaseAnswer{}, &RefusedError{Reasons: reasons, PolicyRevision: rev}
	}
	if !now.Before(req.ExpiresAt) {
		return wire.ReleaseAnswer{}, &RefusedError{Reasons: []string{"the request has expired"}, PolicyRevision: rev}
	}
	out := wire.ReleaseAnswer{PolicyRevision: rev, Shares: c.releaseShares(ctx, req, digest, rev, rosterDigest, ev.Shares)}
	released := 0
	for _, s := range out.Shares {
		if s.Error == nil {
			released++
		}
	}
	c.log.Info("release checked", "custodian", c.cfg.Name, "request_id", req.ID, "digest", digest, "decision_id", d.ID,
		"shares_released", released, "shares_refused", len(ev.Shares)-released, "policy_revision", rev)
	return out, nil
}

// releaseParallelism bounds the Vault calls of one release in flight at
// once: enough to keep the custodian's Vault busy, few enough to leave it
// room.
const releaseParallelism = 16

// releaseShares checks each share asked for against the custodian's own
// record and re-seals those that pass, each released once for the
// request. Deposit entries are read once each (shares deposited together
// share one), the shares unwrapped in one call to the custodian's key, and
// what the call gives out written as one release record.
func (c *Custodian) releaseShares(ctx context.Context, req approval.Request, digest, rev, rosterDigest string, refs []wire.ShareRef) []wire.CustodianShare {
	out := make([]wire.CustodianShare, len(refs))
	fail := func(i int, code, msg string) {
		out[i] = wire.CustodianShare{EscrowID: refs[i].EscrowID, Error: &wire.ItemError{Code: code, Message: msg}}
		c.metrics.shareReleased(code)
	}
	already, records, err := c.store.released(ctx, req.ID)
	if err != nil {
		c.log.Error("release records unreadable", "custodian", c.cfg.Name, "request_id", req.ID, "err", err)
		for i := range refs {
			fail(i, codeUnavailable, "the custodian's store is unavailable")
		}
		return out
	}
	entries := c.readEntries(ctx, refs)
	var (
		todo          []int // indexes into refs
		recs          []record
		aads, wrapped [][]byte
		seen          = map[string]bool{}
	)
	for i, ref := range refs {
		out[i].EscrowID = ref.EscrowID
		e := entries[ref.Locator]
		if !validUUID(ref.EscrowID) || errors.Is(e.err, errNoRecord) {
			fail(i, codeNotFound, "this custodian holds no such share (never stored, or destroyed)")
			continue
		}
		if e.err != nil {
			fail(i, codeUnavailable, "the custodian's store is unavailable")
			continue
		}
		rec, err := recordIn(e.sec, ref.EscrowID)
		if errors.Is(err, errNoRecord) {
			fail(i, codeNotFound, "this custodian holds no such share (never stored, or destroyed)")
			continue
		}
		stored, perr := time.Parse(shares.TimeLayout, rec.StoredAt)
		switch {
		case err != nil || perr != nil:
			fail(i, codeNotFound, "the share's record is unreadable")
			continue
		case !slices.Contains(req.Scope.ConversationIDs, rec.ConversationID):
			fail(i, codeNotInScope, "the share's conversation is not in the request's scope")
			continue
		case stored.Before(req.Scope.From) || stored.After(req.Scope.To):
			fail(i, codeNotInScope, "the share was stored outside the request's window")
			continue
		case already[ref.EscrowID] || seen[ref.EscrowID]:
			fail(i, codeAlreadyReleased, "this share was already released for this request")
			continue
		}
		seen[ref.EscrowID] = true
		todo, recs = append(todo, i), append(recs, rec)
		aads, wrapped = append(aads, aad(rec.ConversationID, rec.KeyID)), append(wrapped, []byte(rec.Wrapped))
	}
	if len(todo) == 0 {
		return out
	}

	// Open and re-seal, each share to the recipient, with its receipt.
	to, err := seal.NewSealer(req.Recipient)
	if err != nil {
		for _, i := range todo {
			fail(i, codeUnavailable, "the share could not be sealed to the recipient")
		}
		return out
	}
	plain, errs := c.wrapper.UnwrapAll(ctx, aads, wrapped)
	at := shares.FormatTime(c.now())
	ready := make([]bool, len(todo))
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for j, i := range todo {
		if errs[j] != nil {
			c.log.Error("unwrap failed", "custodian", c.cfg.Name, "escrow_id", recs[j].EscrowID, "err", errs[j])
			fail(i, codeUnavailable, "the custodian's key is unavailable")
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			defer clear(plain[j])
			if code, msg := c.sealShare(to, req, digest, rev, rosterDigest, at, recs[j], plain[j], &out[i]); code != "" {
				fail(i, code, msg)
				return
			}
			ready[j] = true
		})
	}
	wg.Wait()

	// The shares still within their abort window are recorded as such, so
	// that the coordinator can no longer abort (destroy) them.
	var fresh []string
	for j := range todo {
		stored, _ := time.Parse(shares.TimeLayout, recs[j].StoredAt)
		if ready[j] && c.now().Sub(stored) <= c.cfg.AbortWindow.Duration {
			fresh = append(fresh, recs[j].EscrowID)
		}
	}
	if len(fresh) > 0 {
		if err := c.store.putFresh(ctx, c.now(), req.ID, fresh); err != nil {
			c.log.Error("release not recorded", "custodian", c.cfg.Name, "request_id", req.ID, "err", err)
			for j, i := range todo {
				if ready[j] {
					ready[j] = false
					fail(i, codeUnavailable, "the custodian's store is unavailable")
				}
			}
			return out
		}
	}

	// One write-once record per call makes each share's release for this
	// request the only one: a concurrent call that wrote record n first
	// wins its shares, and this call retries with the rest.
	for attempt := 0; ; attempt++ {
		rr := releaseRecord{RequestDigest: digest, RecipientKey: req.Recipient.Fingerprint(), At: at, Receipts: map[string]string{}}
		for j, i := range todo {
			if ready[j] {
				rr.Receipts[recs[j].EscrowID] = out[i].Receipt.Hash()
			}
		}
		if len(rr.Receipts) == 0 {
			return out
		}
		err := c.store.putRelease(ctx, req.ID, records+1, rr)
		if err == nil {
			break
		}
		var taken map[string]bool
		if errors.Is(err, errExists) && attempt < 5 {
			taken, records, err = c.store.released(ctx, req.ID)
		} else if err == nil {
			err = errors.New("too many concurrent releases of one request")
		}
		for j, i := range todo {
			switch {
			case !ready[j]:
			case err != nil:
				ready[j] = false
				fail(i, codeUnavailable, "the custodian's store is unavailable")
			case taken[recs[j].EscrowID]:
				ready[j] = false
				fail(i, codeAlreadyReleased, "this share was already released for this request")
			}
		}
		if err != nil {
			c.log.Error("release record not written", "custodian", c.cfg.Name, "request_id", req.ID, "err", err)
			return out
		}
	}
	for j := range todo {
		if ready[j] {
			c.metrics.shareReleased("released")
		}
	}
	return out
}

// entryRead is one deposit entry read for a release.
type entryRead struct {
	sec *vaultapi.KVSecret
	err error
}

// readEntries reads each deposit entry the refs name once.
func (c *Custodian) readEntries(ctx context.Context, refs []wire.ShareRef) map[string]entryRead {
	out := make(map[string]entryRead)
	seen := make(map[string]bool)
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, releaseParallelism)
	for _, ref := range refs {
		if seen[ref.Locator] {
			continue
		}
		seen[ref.Locator] = true
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			sec, err := c.store.entry(ctx, ref.Locator)
			mu.Lock()
			out[ref.Locator] = entryRead{sec: sec, err: err}
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// sealShare re-seals one checked share to the request's recipient and
// signs its receipt, filling in out; it returns an item error's code and
// message if it cannot.
func (c *Custodian) sealShare(to *seal.Sealer, req approval.Request, digest, rev, rosterDigest, at string, rec record, share []byte, out *wire.CustodianShare) (string, string) {
	sealed, err := shares.SealReleased(to, req.ID, rec.ConversationID, rec.KeyID, c.cfg.Name, rec.Index, share)
	if err != nil {
		return codeUnavailable, "the share could not be sealed to the recipient"
	}
	r := shares.Receipt{Kind: shares.ReceiptRelease, Custodian: c.cfg.Name, EscrowID: rec.EscrowID,
		ConversationID: rec.ConversationID, KeyID: rec.KeyID, Index: rec.Index, Commitment: rec.Commitment,
		SealedSHA256: shares.SealedHash(sealed), At: at, RequestID: req.ID, RequestDigest: digest,
		RecipientKey: req.Recipient.Fingerprint(), PolicyRevision: rev, RosterDigest: rosterDigest}
	signed, err := shares.Sign(c.id.sign, r)
	if err != nil {
		return codeUnavailable, "the receipt could not be signed"
	}
	out.Index, out.Sealed, out.Receipt = rec.Index, sealed, &signed
	return "", ""
}

// checkReleaseLogged checks the release's log evidence against a
// checkpoint this custodian cosigned for the first log it witnesses.
func (c *Custodian) checkReleaseLogged(ctx context.Context, ev wire.ReleaseEvidence, requestID, digest string) ([]bool, string, error) {
	if ev.Log == nil {
		return nil, "the release comes without proof that its request and approvals are in the audit log", nil
	}
	origin := c.cfg.Witness.Logs[0].Origin
	root, ok, err := witnessStore{c.store}.cosignedRoot(ctx, origin, ev.Log.TreeSize)
	if err != nil {
		return nil, "", fmt.Errorf("%w: witness record: %v", errUnavailable, err)
	}
	if !ok {
		return nil, fmt.Sprintf("the proofs are against a checkpoint of size %d that this custodian has not cosigned (or no longer remembers)", ev.Log.TreeSize), nil
	}
	logged, reason := checkLogged(root, ev.Log, requestID, digest, ev.Approvals)
	return logged, reason, nil
}

package custodian

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/policy"
	"github.com/mediatorhq/mediator/shares"
	"github.com/mediatorhq/mediator/wire"
)

// RefusedError is a release the custodian's own checks refuse, with its
// reasons (the policy's, or what the evidence lacks).
type RefusedError struct {
	Reasons        []string
	PolicyRevision string
}

func (e *RefusedError) Error() string {
	return "custodian: release refused: " + strings.Join(e.Reasons, "; ")
}

// Errors of a call as a whole.
var (
	errBadRequest  = errors.New("custodian: bad request")
	errUnavailable = errors.New("custodian: a dependency is unavailable")
)

// maxReleaseShares bounds the shares one release call asks for.
const maxReleaseShares = 10000

// Release checks a release for itself and re-seals each share asked for to
// the request's recipient. It works only from what it can verify:
//
//   - the request is parsed from its canonical bytes (the digest is theirs),
//     never from fields the caller states;
//   - each approval counts only if it verifies with a key of an approver
//     this custodian trusts, with the roles its own file gives;
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
		return wire.ReleaseAnswer{}, fmt.Errorf("%w: a release asks for 1–%d shares", errBadRequest, maxReleaseShares)
	}
	req, err := approval.Parse(ev.Canonical)
	if err != nil {
		return wire.ReleaseAnswer{}, &RefusedError{Reasons: []string{"the request is not a canonical request: " + err.Error()}, PolicyRevision: rev}
	}
	digest := approval.Digest(ev.Canonical)
	if err := req.Recipient.Validate(); err != nil {
		return wire.ReleaseAnswer{}, &RefusedError{Reasons: []string{"the request's recipient key is unusable"}, PolicyRevision: rev}
	}
	now := c.now().UTC()
	in := policy.ReleaseInput{Now: now, Request: policy.ReleaseRequest{ID: req.ID, Requester: req.Requester, CaseID: req.CaseID,
		LegalBasis: req.LegalBasis, Jurisdiction: req.Jurisdiction,
		Scope:     policy.ReleaseScope{ConversationIDs: req.Scope.ConversationIDs, From: req.Scope.From, To: req.Scope.To},
		CreatedAt: req.CreatedAt, ExpiresAt: req.ExpiresAt}}
	for _, a := range ev.Approvals {
		roles, verified, active := c.approvers.Verify(a.ApproverID, req.ID, digest, a.Decision, a.Signature)
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
		c.log.Warn("release refused", "custodian", c.cfg.Name, "request_id", req.ID, "reasons", d.Reasons, "policy_revision", rev)
		return wire.ReleaseAnswer{}, &RefusedError{Reasons: d.Reasons, PolicyRevision: rev}
	}
	if !now.Before(req.ExpiresAt) {
		return wire.ReleaseAnswer{}, &RefusedError{Reasons: []string{"the request has expired"}, PolicyRevision: rev}
	}
	out := wire.ReleaseAnswer{PolicyRevision: rev, Shares: make([]wire.CustodianShare, len(ev.Shares))}
	sem := make(chan struct{}, releaseParallelism)
	done := make(chan struct{})
	for i, ref := range ev.Shares {
		go func() {
			sem <- struct{}{}
			out.Shares[i] = c.releaseShare(ctx, req, digest, rev, ref)
			<-sem
			done <- struct{}{}
		}()
	}
	for range ev.Shares {
		<-done
	}
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

// releaseParallelism bounds the shares of one release handled at once:
// enough to keep the custodian's Vault busy, few enough to leave it room.
const releaseParallelism = 16

// releaseShare checks one share against the custodian's own record and,
// if it passes, records the release once and returns the share re-sealed.
func (c *Custodian) releaseShare(ctx context.Context, req approval.Request, digest, rev string, ref wire.ShareRef) wire.CustodianShare {
	out := wire.CustodianShare{EscrowID: ref.EscrowID}
	fail := func(code, msg string) wire.CustodianShare {
		out.Error = &wire.ItemError{Code: code, Message: msg}
		c.metrics.shareReleased(code)
		return out
	}
	if !shares.ValidID(ref.EscrowID) {
		return fail(codeNotFound, "no such share")
	}
	rec, _, err := c.store.deposit(ctx, ref.Locator, ref.EscrowID)
	if errors.Is(err, errNoRecord) {
		return fail(codeNotFound, "this custodian holds no such share (never stored, or destroyed)")
	}
	if err != nil {
		return fail(codeUnavailable, "the custodian's store is unavailable")
	}
	stored, err := time.Parse(shares.TimeLayout, rec.StoredAt)
	switch {
	case err != nil:
		return fail(codeNotFound, "the share's record is unreadable")
	case !slices.Contains(req.Scope.ConversationIDs, rec.ConversationID):
		return fail(codeNotInScope, "the share's conversation is not in the request's scope")
	case stored.Before(req.Scope.From) || stored.After(req.Scope.To):
		return fail(codeNotInScope, "the share was stored outside the request's window")
	}
	share, err := c.wrapper.Unwrap(ctx, aad(rec.ConversationID, rec.KeyID), []byte(rec.Wrapped))
	if err != nil {
		c.log.Error("unwrap failed", "custodian", c.cfg.Name, "escrow_id", ref.EscrowID, "err", err)
		return fail(codeUnavailable, "the custodian's key is unavailable")
	}
	sealed, err := shares.SealReleased(req.Recipient, req.ID, rec.ConversationID, rec.KeyID, c.cfg.Name, rec.Index, share)
	clear(share)
	if err != nil {
		return fail(codeUnavailable, "the share could not be sealed to the recipient")
	}
	r := shares.Receipt{Kind: shares.ReceiptRelease, Custodian: c.cfg.Name, EscrowID: rec.EscrowID,
		ConversationID: rec.ConversationID, KeyID: rec.KeyID, Index: rec.Index, Commitment: rec.Commitment,
		SealedSHA256: shares.SealedHash(sealed), At: shares.FormatTime(c.now()), RequestID: req.ID, RequestDigest: digest,
		RecipientKey: req.Recipient.Fingerprint(), PolicyRevision: rev}
	signed, err := shares.Sign(c.id.sign, r)
	if err != nil {
		return fail(codeUnavailable, "the receipt could not be signed")
	}
	// The write-once record makes this the only release of this share for
	// this request: a second call, or a concurrent one, finds it there and
	// gets nothing.
	err = c.store.putOnce(ctx, c.store.path("releases", rec.EscrowID, req.ID), map[string]any{
		"request_digest": digest, "recipient_key": r.RecipientKey, "receipt_sha256": signed.Hash(), "at": r.At,
	})
	if errors.Is(err, errExists) {
		return fail(codeAlreadyReleased, "this share was already released for this request")
	}
	if err != nil {
		return fail(codeUnavailable, "the custodian's store is unavailable")
	}
	out.Index, out.Sealed, out.Receipt = rec.Index, sealed, &signed
	c.metrics.shareReleased("released")
	return out
}

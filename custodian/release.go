package custodian

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/invalid"
	"github.com/mediatorhq/mediator/policy"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/wire"
)

// maxReleaseShares bounds the shares one release call answers, and so
// what one call holds in memory and writes (with ML-KEM about 25 MB of
// answers): a call asking for more is not refused, its first
// maxReleaseShares are answered and each of the rest gets the item error
// too_many_in_call, to be asked for again in another call. The mediator
// asks in chunks well under it (escrow.DefaultReleaseChunk).
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
//   - a request its officer revoked at this custodian (RecordRevocation)
//     is refused, whatever the evidence carries;
//   - its own release policy decides, and must allow; it sees every deny
//     vote an approver delivered to this custodian directly (RecordVeto),
//     whether or not the evidence carries it; each refusal is recorded,
//     and a request with maxDeniedReleases refusals on record is refused
//     for good without asking the policy again;
//   - each share must be in its own records, of a conversation in the
//     request's scope, stored within the scope's window; it is sealed at
//     most once per request (a write-once record per request and escrow),
//     and a share released for this request before is answered again with
//     the same sealed bytes and receipt, kept beside that record.
//
// A refusal of the whole release is a *RefusedError with reasons; a share
// that fails its own checks gets an item error and the others go on. A
// call never fails for the number of shares it asks for (beyond none):
// those past the first maxReleaseShares are answered too_many_in_call, so
// that no number of escrows under one conversation can block its release.
func (c *Custodian) Release(ctx context.Context, ev wire.ReleaseEvidence) (wire.ReleaseAnswer, error) {
	start := c.now()
	ans, err := c.release(ctx, ev)
	c.metrics.release(err, c.now().Sub(start))
	return ans, err
}

// release runs the phases of a release in order, each of which may refuse
// it as a whole: verify the request and roster, refuse a request its
// officer revoked here, check the log evidence, decide (refusing a
// request locked by its denials here); only then are the shares checked
// and given out, one by one.
func (c *Custodian) release(ctx context.Context, ev wire.ReleaseEvidence) (wire.ReleaseAnswer, error) {
	rev := c.policy.Revision()
	if len(ev.Shares) == 0 {
		return wire.ReleaseAnswer{}, invalid.Input("shares", "a release asks for at least one share")
	}
	asked, over := ev.Shares, []wire.ShareRef(nil)
	if len(asked) > maxReleaseShares {
		asked, over = asked[:maxReleaseShares], asked[maxReleaseShares:]
	}
	cr, err := c.verifyRequest(ctx, ev, rev)
	if err != nil {
		return wire.ReleaseAnswer{}, err
	}
	if err := c.checkRevoked(ctx, cr); err != nil {
		return wire.ReleaseAnswer{}, err
	}
	logged, err := c.checkLogEvidence(ctx, ev, cr)
	if err != nil {
		return wire.ReleaseAnswer{}, err
	}
	d, approvedBy, err := c.decide(ctx, ev, cr, logged)
	if err != nil {
		return wire.ReleaseAnswer{}, err
	}
	cr.approvedBy = approvedBy
	out := wire.ReleaseAnswer{PolicyRevision: rev, Shares: append(c.releaseShares(ctx, cr, asked), c.tooManyInCall(over)...)}
	released := 0
	for _, s := range out.Shares {
		if s.Error == nil {
			released++
		}
	}
	c.log.Info("release checked", "custodian", c.cfg.Name, "request_id", cr.req.ID, "digest", cr.digest, "decision_id", d.ID,
		"shares_released", released, "shares_refused", len(asked)-released, "shares_not_answered", len(over), "policy_revision", rev)
	return out, nil
}

// tooManyInCall answers each share past a call's first maxReleaseShares
// with too_many_in_call, counted: nothing about it was checked, read or
// written, and the caller may ask for it again in another call.
func (c *Custodian) tooManyInCall(over []wire.ShareRef) []wire.CustodianShare {
	out := make([]wire.CustodianShare, len(over))
	for i, ref := range over {
		out[i] = wire.CustodianShare{EscrowID: ref.EscrowID, Error: &wire.ItemError{Code: codeTooManyInCall,
			Message: fmt.Sprintf("a release call is answered for its first %d shares; ask for this one in another call", maxReleaseShares)}}
		c.metrics.shareReleased(codeTooManyInCall)
	}
	return out
}

// checkedRequest is a release's request as this custodian verified it:
// nothing in it is the caller's word.
type checkedRequest struct {
	req          approval.Request // parsed from the canonical bytes
	digest       string           // of the canonical bytes
	roster       roster.Roster    // the version in force, verified from the pinned genesis
	rosterDigest string           // its digest
	rev          string           // the revision of the policy that decides
	// approvedBy is when the last approval that counted was made, as the
	// policy saw it: no share stored later is released (set by decide).
	approvedBy time.Time
}

// verifyRequest parses and verifies a release's request and roster chain.
// When it returns without error, the request was parsed from its
// canonical bytes, its id is a UUID (it names paths in the store), its
// recipient key is usable, the roster chain verifies from the genesis
// this custodian pins and holds the newest version it has seen, which it
// has recorded if newer, and the request's requester is an officer of
// that version who signed exactly these bytes: no one else chose its
// recipient key or scope. Anything else is a *RefusedError; a roster record
// it cannot read or write is errUnavailable.
func (c *Custodian) verifyRequest(ctx context.Context, ev wire.ReleaseEvidence, rev string) (checkedRequest, error) {
	refuse := func(reason string) (checkedRequest, error) {
		return checkedRequest{}, &RefusedError{Reasons: []string{reason}, PolicyRevision: rev}
	}
	req, err := approval.Parse(ev.Canonical)
	if err != nil {
		return refuse("the request is not a canonical request: " + err.Error())
	}
	if !validUUID(req.ID) {
		return refuse("the request's id is not a UUID")
	}
	digest := approval.Digest(ev.Canonical)
	if err := req.Recipient.Validate(); err != nil {
		return refuse("the request's recipient key is unusable")
	}
	current, rosterDigest, err := c.trustRoster(ctx, ev.Roster)
	if errors.Is(err, errUnavailable) {
		return checkedRequest{}, err
	}
	if err != nil {
		c.log.Warn("release refused: roster", "custodian", c.cfg.Name, "request_id", req.ID, "err", err)
		return refuse(err.Error())
	}
	if _, err := current.VerifyRequest(req.Requester, digest, ev.OfficerSignature); err != nil {
		c.log.Warn("release refused: officer", "custodian", c.cfg.Name, "request_id", req.ID, "requester", req.Requester, "err", err)
		c.metrics.officerRefused()
		return refuse(fmt.Sprintf("the request is not signed by an officer of roster version %d: %v", current.Version, err))
	}
	return checkedRequest{req: req, digest: digest, roster: current, rosterDigest: rosterDigest, rev: rev}, nil
}

// checkLogEvidence holds a custodian that witnesses the audit log to
// release only what the log shows. There, when it returns without error,
// the request is proven included under a checkpoint this custodian
// cosigned itself, and logged[i] tells whether approval i is too; a
// release without that proof is refused (and counted), and a witness
// record it cannot read is errUnavailable. A custodian that witnesses no
// log checks nothing here and returns nil logged: no approval is held back.
func (c *Custodian) checkLogEvidence(ctx context.Context, ev wire.ReleaseEvidence, cr checkedRequest) ([]bool, error) {
	if c.witness == nil {
		return nil, nil
	}
	logged, reason, err := c.checkReleaseLogged(ctx, ev, cr.req.ID, cr.digest)
	if err != nil {
		return nil, err
	}
	if reason != "" {
		c.log.Warn("release refused: log", "custodian", c.cfg.Name, "request_id", cr.req.ID, "reason", reason)
		c.metrics.logRefused()
		return nil, &RefusedError{Reasons: []string{reason}, PolicyRevision: cr.rev}
	}
	return logged, nil
}

// checkReleaseLogged checks the release's log evidence against a
// checkpoint this custodian cosigned for the first log it witnesses: it
// returns which approvals are logged, or a reason that refuses the
// release, or an error.
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
	if reason != "" {
		return nil, reason, nil
	}
	return logged, "", nil
}

// decide asks this custodian's own release policy. When it returns
// without error, the request is not locked by its denials here, the
// policy allowed the release and the request has not expired; the policy
// saw, besides the evidence's approvals, every deny vote delivered to
// this custodian directly for the request (addVetoes), so a veto the
// evidence withholds refuses the release all the same. A policy that
// cannot decide is errUnavailable (fail closed: no decision, no share); a
// denial is recorded (recordDenial) and is a *RefusedError with the
// policy's reasons and the approvals that did not count for want of the
// log, and so is a locked request (checkLocked) or an expired one. It
// also returns when the last approval that counted was made
// (policy.ReleaseInput.LastApproval), bounded by policyInput to between
// the request's filing and now.
//
// Cost: one store list for the denials, one list and one read per veto,
// the policy, and one store write when the policy refuses.
func (c *Custodian) decide(ctx context.Context, ev wire.ReleaseEvidence, cr checkedRequest, logged []bool) (policy.Decision, time.Time, error) {
	now := c.now().UTC()
	prior, err := c.denials(ctx, cr.req.ID)
	if err != nil {
		return policy.Decision{}, time.Time{}, err
	}
	if err := c.checkLocked(cr, prior); err != nil {
		return policy.Decision{}, time.Time{}, err
	}
	vetoes, err := c.recordedVetoes(ctx, cr.req.ID)
	if err != nil {
		return policy.Decision{}, time.Time{}, err
	}
	in, unlogged := policyInput(ev.Approvals, cr, logged, now)
	withheld := addVetoes(&in, vetoes, cr, ev.Approvals)
	d, err := c.policy.DecideRelease(ctx, in)
	if err != nil {
		return policy.Decision{}, time.Time{}, fmt.Errorf("%w: policy: %v", errUnavailable, err)
	}
	if !d.Allow {
		if len(withheld) > 0 {
			c.log.Warn("release refused: a veto on record is not in the evidence", "custodian", c.cfg.Name, "request_id", cr.req.ID, "withheld", withheld)
			c.metrics.vetoWithheld()
		}
		locked, err := c.recordDenial(ctx, cr, d, prior)
		if err != nil {
			return policy.Decision{}, time.Time{}, err
		}
		reasons := append(append(d.Reasons, unlogged...), withheld...)
		if locked {
			reasons = append(reasons, fmt.Sprintf("%s by this custodian's policy: no later release of this request is checked", lockedReason))
		}
		c.log.Warn("release refused", "custodian", c.cfg.Name, "request_id", cr.req.ID, "reasons", reasons, "policy_revision", cr.rev)
		return policy.Decision{}, time.Time{}, &RefusedError{Reasons: reasons, PolicyRevision: cr.rev}
	}
	if !now.Before(cr.req.ExpiresAt) {
		return policy.Decision{}, time.Time{}, &RefusedError{Reasons: []string{"the request has expired"}, PolicyRevision: cr.rev}
	}
	return d, in.LastApproval(), nil
}

// policyInput is what the policy sees of a release at now: the request as
// parsed from its canonical bytes, and each approval as verified against
// the roster in force, with the roles given there. An approval whose log
// entry is missing (logged non-nil and logged[i] false) counts as
// unverified, and unlogged says so, for the reasons of a denial.
func policyInput(approvals []wire.EvidenceApproval, cr checkedRequest, logged []bool, now time.Time) (in policy.ReleaseInput, unlogged []string) {
	req := cr.req
	in = policy.ReleaseInput{Now: now, Request: policy.ReleaseRequest{ID: req.ID, Requester: req.Requester, CaseID: req.CaseID,
		LegalBasis: req.LegalBasis, Jurisdiction: req.Jurisdiction,
		Scope:     policy.ReleaseScope{ConversationIDs: req.Scope.ConversationIDs, From: req.Scope.From, To: req.Scope.To},
		CreatedAt: req.CreatedAt, ExpiresAt: req.ExpiresAt}}
	for i, a := range approvals {
		roles, verified, active := verifyApproval(cr.roster, a.ApproverID, req.ID, cr.digest, a.Decision, a.Signature)
		if logged != nil && !logged[i] {
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
	return in, unlogged
}

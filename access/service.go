package access

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/escrow"
	"github.com/mediatorhq/mediator/policy"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/shares"
	"github.com/mediatorhq/mediator/wire"
)

// Decider decides releases: the policy engine (policy.Reloader).
type Decider interface {
	DecideRelease(ctx context.Context, in policy.ReleaseInput) (policy.Decision, error)
}

// KeyEscrow is what a release needs of the escrow (escrow.Service): the
// escrowed keys in a scope, and the custodians' answers to a release.
type KeyEscrow interface {
	InScope(ctx context.Context, conversationIDs []string, from, to time.Time) ([]escrow.Escrow, error)
	Release(ctx context.Context, ask escrow.ReleaseAsk, escrows []escrow.Escrow, have map[string]map[string]bool) []escrow.CustodianAnswer
}

// maxDeniedReleases is how many denied release attempts lock a request as
// denied: enough for an officer to fix a missing approval, too few to
// probe the policy at leisure.
const maxDeniedReleases = 5

// systemActor is who a transition the mediator makes by itself is by.
const systemActor = "mediator"

// Service runs the workflow: approvers, requests, approvals, releases. It
// decides nothing itself: the Decider says whether keys may leave.
type Service struct {
	store   Store
	decider Decider
	escrow  KeyEscrow
	log     *slog.Logger
	metrics *Metrics
	now     func() time.Time

	genesis  string
	roster   rosterCache
	notifier Notifier
	logProof LogProof
}

// Config configures a Service.
type Config struct {
	Store   Store
	Decider Decider
	Escrow  KeyEscrow
	Log     *slog.Logger
	Metrics *Metrics         // may be nil
	Now     func() time.Time // for tests; time.Now when nil
	// RosterGenesis is the pinned digest of the roster's first version:
	// only a chain that verifies from it names approvers.
	RosterGenesis string
	// Notifier, if set, receives workflow events (webhooks).
	Notifier Notifier
	// LogProof, if set, proves to custodians that witness the audit log
	// that a release's request and approvals are in it.
	LogProof LogProof
}

// New returns a Service.
func New(cfg Config) *Service {
	s := &Service{store: cfg.Store, decider: cfg.Decider, escrow: cfg.Escrow, log: cfg.Log, metrics: cfg.Metrics, now: cfg.Now,
		genesis: cfg.RosterGenesis, notifier: cfg.Notifier, logProof: cfg.LogProof}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// Create files a request by requester (the officer's token subject). Times
// are kept to the second, in UTC.
func (s *Service) Create(ctx context.Context, requester string, d Draft) (Request, error) {
	if err := validID("requester", requester); err != nil {
		return Request{}, err
	}
	now := s.now().UTC().Truncate(time.Second)
	d.Scope.ConversationIDs = slices.Clone(d.Scope.ConversationIDs)
	d.Scope.From = d.Scope.From.UTC().Truncate(time.Second)
	d.Scope.To = d.Scope.To.UTC().Truncate(time.Second)
	d.ExpiresAt = d.ExpiresAt.UTC().Truncate(time.Second)
	if err := validateDraft(d, now); err != nil {
		return Request{}, err
	}
	id, err := uuid.NewRandom()
	if err != nil {
		return Request{}, fmt.Errorf("access: request id: %w", err)
	}
	d.ID, d.Requester, d.CreatedAt = id.String(), requester, now
	r := Request{Request: d}
	if r.Canonical, err = Canonical(r); err != nil {
		return Request{}, err
	}
	r.Digest = approval.Digest(r.Canonical)
	if r, err = s.store.InsertRequest(ctx, r); err != nil {
		return Request{}, err
	}
	r.Status = StatusPending
	s.metrics.transition(StatusPending)
	s.log.Info("access request filed", "access_request_id", r.ID, "requester", requester, "case_id", r.CaseID,
		"conversations", len(d.Scope.ConversationIDs), "audit_seq", r.AuditSeq)
	s.notify(ctx, Event{Type: EventRequestFiled, RequestID: r.ID, Status: string(StatusPending)})
	s.notify(ctx, Event{Type: EventNeedsApprovals, RequestID: r.ID, Status: string(StatusPending)})
	return r, nil
}

// Get returns request id and its approvals.
func (s *Service) Get(ctx context.Context, id string) (Request, []Approval, error) {
	if _, err := uuid.Parse(id); err != nil {
		return Request{}, nil, ErrNotFound
	}
	r, err := s.store.Request(ctx, id)
	if err != nil {
		return Request{}, nil, err
	}
	s.settle(&r)
	approvals, err := s.store.Approvals(ctx, id)
	if err != nil {
		return Request{}, nil, err
	}
	return r, approvals, nil
}

// maxList bounds a listing.
const maxList = 500

// List returns up to limit requests in status (all when empty), newest
// first.
func (s *Service) List(ctx context.Context, status Status, limit int) ([]Request, error) {
	if limit <= 0 || limit > maxList {
		limit = maxList
	}
	var rs []Request
	var err error
	switch status {
	case StatusPending, StatusExpired:
		// Expiry is recorded when a request is next touched; until then a
		// request without a final state may be past its expiry.
		if rs, err = s.store.Requests(ctx, StatusPending, maxList); err != nil {
			return nil, err
		}
		if status == StatusExpired {
			recorded, err := s.store.Requests(ctx, StatusExpired, maxList)
			if err != nil {
				return nil, err
			}
			rs = append(rs, recorded...)
		}
	default:
		if rs, err = s.store.Requests(ctx, status, limit); err != nil {
			return nil, err
		}
	}
	out := make([]Request, 0, len(rs))
	for _, r := range rs {
		s.settle(&r)
		if status == "" || r.Status == status {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b Request) int { return b.CreatedAt.Compare(a.CreatedAt) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// settle sets r.Status from its final state and the clock.
func (s *Service) settle(r *Request) {
	switch {
	case r.Final != nil:
		r.Status = r.Final.Status
	case !s.now().Before(r.ExpiresAt):
		r.Status = StatusExpired
	default:
		r.Status = StatusPending
	}
}

// requirePending returns nil for a pending request, else a *FinalError; a
// request found past its expiry has its expiry recorded first.
func (s *Service) requirePending(ctx context.Context, r *Request) error {
	s.settle(r)
	if r.Status == StatusPending {
		return nil
	}
	if r.Final == nil && r.Status == StatusExpired {
		_, err := s.store.Finish(ctx, r.ID, Final{Status: StatusExpired, By: systemActor}, KindExpire,
			map[string]any{"kind": KindExpire, "request_id": r.ID, "expires_at": approval.FormatTime(r.ExpiresAt)})
		if err != nil && !errors.Is(err, ErrFinal) {
			return err
		}
		if err == nil {
			s.metrics.transition(StatusExpired)
		}
	}
	return &FinalError{Status: r.Status}
}

// Approve records approverID's signed vote on request requestID. The
// signature must verify with the approver's current key over
// ApprovalMessage(requestID, digest, decision, approverID). The requester's
// own approval is recorded and returned with ErrSelfApproval: it counts for
// nothing.
func (s *Service) Approve(ctx context.Context, approverID, requestID, decision string, signature []byte) (Approval, error) {
	a, err := s.approve(ctx, approverID, requestID, decision, signature)
	s.metrics.approval(err)
	return a, err
}

func (s *Service) approve(ctx context.Context, approverID, requestID, decision string, signature []byte) (Approval, error) {
	if decision != approval.Approve && decision != approval.Deny {
		return Approval{}, invalid("decision", "must be approve or deny")
	}
	if _, err := uuid.Parse(requestID); err != nil {
		return Approval{}, ErrNotFound
	}
	r, err := s.store.Request(ctx, requestID)
	if err != nil {
		return Approval{}, err
	}
	if err := s.requirePending(ctx, &r); err != nil {
		return Approval{}, err
	}
	if r.Corrupt {
		s.log.Error("a stored request does not match what was signed; no approval is taken", "access_request_id", r.ID)
		return Approval{}, fmt.Errorf("%w: the stored request does not match what was signed", ErrUnavailable)
	}
	cur, err := s.current(ctx)
	if err != nil {
		return Approval{}, err
	}
	if cur == nil {
		return Approval{}, ErrUnknownApprover
	}
	ap, ok := cur.Approver(approverID)
	if !ok {
		return Approval{}, ErrUnknownApprover
	}
	if !approval.Verify(ap.PublicKey, r.ID, r.Digest, decision, ap.ID, signature) {
		s.log.Warn("approval refused: bad signature", "access_request_id", r.ID, "approver_id", ap.ID)
		return Approval{}, ErrBadSignature
	}
	a := Approval{RequestID: r.ID, ApproverID: ap.ID, Decision: decision, Signature: slices.Clone(signature),
		KeyID: ap.KeyID(), Roles: ap.Roles, ByRequester: ap.ID == r.Requester}
	if a, err = s.store.InsertApproval(ctx, a, r.Digest); err != nil {
		return Approval{}, err
	}
	s.log.Info("approval recorded", "access_request_id", r.ID, "approver_id", ap.ID, "decision", decision,
		"by_requester", a.ByRequester, "audit_seq", a.AuditSeq)
	n := 0
	if all, err := s.store.Approvals(ctx, r.ID); err == nil {
		n = len(all)
	}
	s.notify(ctx, Event{Type: EventApproval, RequestID: r.ID, Status: decision, Approvals: n})
	if a.ByRequester {
		return a, ErrSelfApproval
	}
	return a, nil
}

// Revoke withdraws a pending request; only its requester may.
func (s *Service) Revoke(ctx context.Context, caller, requestID string) (Request, error) {
	if _, err := uuid.Parse(requestID); err != nil {
		return Request{}, ErrNotFound
	}
	r, err := s.store.Request(ctx, requestID)
	if err != nil {
		return Request{}, err
	}
	if caller != r.Requester {
		return Request{}, ErrNotRequester
	}
	if err := s.requirePending(ctx, &r); err != nil {
		return Request{}, err
	}
	f, err := s.store.Finish(ctx, r.ID, Final{Status: StatusRevoked, By: caller}, KindRevoke,
		map[string]any{"kind": KindRevoke, "request_id": r.ID, "revoked_by": caller})
	if err != nil {
		return Request{}, s.finalOr(ctx, r.ID, err)
	}
	s.metrics.transition(StatusRevoked)
	s.log.Info("access request revoked", "access_request_id", r.ID, "by", caller)
	r.Final, r.Status = &f, StatusRevoked
	return r, nil
}

// finalOr turns ErrFinal from a lost race into the state that won it.
func (s *Service) finalOr(ctx context.Context, id string, err error) error {
	if !errors.Is(err, ErrFinal) {
		return err
	}
	if r, rerr := s.store.Request(ctx, id); rerr == nil && r.Final != nil {
		return &FinalError{Status: r.Final.Status}
	}
	return err
}

// Release is what a release returns: every key in scope with the shares
// custodians sealed to the request's recipient (at least the threshold of
// each), and what custodians that gave nothing said.
type Release struct {
	RequestID  string
	DecisionID string
	AuditSeq   int64
	Keys       []ReleasedKey
	Refusals   []*escrow.RefusedError
}

// ReleasedKey is one escrowed key of a release and its released shares.
type ReleasedKey struct {
	Escrow escrow.Escrow
	Shares []ReleasedShare
}

// ReleasedShare is one custodian's share of a key, sealed by that custodian
// to the request's recipient, with its signed release receipt. The mediator
// cannot open it.
type ReleasedShare struct {
	EscrowID  string
	Custodian string
	Index     int
	Sealed    []byte
	Receipt   shares.SignedReceipt
	AuditSeq  int64
}

// CustodiansError: the custodians did not release enough shares of every
// key in scope. Refusals are the custodians whose own checks refused, with
// their reasons; Unavailable the custodians that could not be reached;
// Short the escrows still below their threshold. The shares that did come
// are kept: a later release call asks only for the rest.
type CustodiansError struct {
	DecisionID  string
	Refusals    []*escrow.RefusedError
	Unavailable []string
	Short       []string
}

func (e *CustodiansError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "access: %d keys lack shares:", len(e.Short))
	if len(e.Unavailable) > 0 {
		fmt.Fprintf(&b, " unavailable: %s;", strings.Join(e.Unavailable, ", "))
	}
	for _, r := range e.Refusals {
		fmt.Fprintf(&b, " %s;", r.Error())
	}
	return b.String()
}

// releaseRecord is the audit record of a completed release: the request as
// signed, the recipient, and for each key which custodians released which
// share, by the hashes of their signed receipts.
type releaseRecord struct {
	Kind          string           `json:"kind"`
	RequestID     string           `json:"request_id"`
	RequestDigest string           `json:"request_digest"`
	DecisionID    string           `json:"decision_id"`
	ReleasedBy    string           `json:"released_by"`
	RecipientKey  string           `json:"recipient_key"`
	Keys          []releasedKeyLog `json:"keys"`
}

type releasedKeyLog struct {
	EscrowID       string             `json:"escrow_id"`
	ConversationID string             `json:"conversation_id"`
	KeyID          string             `json:"key_id"`
	KeyCommitment  string             `json:"key_commitment"`
	Shares         []releasedShareLog `json:"shares"`
}

type releasedShareLog struct {
	Custodian     string `json:"custodian"`
	Index         int    `json:"index"`
	ReceiptSHA256 string `json:"receipt_sha256"`
}

// Release asks the policy whether request requestID's keys may leave, with
// every approval verified again now, and records the decision. Allowed:
// every custodian holding a share in scope is handed the request as signed
// and the approvals, checks them for itself, and seals its shares to the
// request's recipient; the shares that come back are kept (each custodian's
// answer logged), and once every key has its threshold the request becomes
// released. Denied by the policy: a *DeniedError; the fifth denial locks
// the request as denied. Not enough shares: a *CustodiansError. Only the
// requester may ask.
func (s *Service) Release(ctx context.Context, caller, requestID string) (Release, error) {
	t0 := s.now()
	rel, err := s.release(ctx, caller, requestID)
	s.metrics.release(err, s.now().Sub(t0))
	return rel, err
}

func (s *Service) release(ctx context.Context, caller, requestID string) (Release, error) {
	if _, err := uuid.Parse(requestID); err != nil {
		return Release{}, ErrNotFound
	}
	r, err := s.store.Request(ctx, requestID)
	if err != nil {
		return Release{}, err
	}
	if caller != r.Requester {
		return Release{}, ErrNotRequester
	}
	if err := s.requirePending(ctx, &r); err != nil {
		return Release{}, err
	}
	// Work from the request as approvers signed it, never from its columns.
	signed, err := approval.Parse(r.Canonical)
	if r.Corrupt || err != nil || approval.Digest(r.Canonical) != r.Digest || signed.ID != r.ID {
		s.log.Error("a stored request does not match its canonical form; nothing is released", "access_request_id", r.ID)
		return Release{}, fmt.Errorf("%w: the stored request does not match what was signed", ErrUnavailable)
	}
	in, approvals, err := s.policyInput(ctx, r)
	if err != nil {
		return Release{}, err
	}
	t0 := s.now()
	d, err := s.decider.DecideRelease(ctx, in)
	s.metrics.decision(d, err, s.now().Sub(t0))
	if err != nil {
		// Fail closed: no decision, no release.
		s.log.Error("release decision failed", "access_request_id", r.ID, "err", err)
		return Release{}, fmt.Errorf("%w: policy: %v", ErrUnavailable, err)
	}
	locked, err := s.store.RecordDecision(ctx, r.ID, d, maxDeniedReleases)
	if err != nil {
		return Release{}, err
	}
	s.log.Info("release decided", "access_request_id", r.ID, "decision_id", d.ID, "allow", d.Allow,
		"reasons", d.Reasons, "policy_revision", d.PolicyRevision)
	if !d.Allow {
		if locked {
			s.metrics.transition(StatusDenied)
			s.log.Warn("access request locked as denied", "access_request_id", r.ID, "denied_releases", maxDeniedReleases)
		}
		status := "denied_by_policy"
		if locked {
			status = string(StatusDenied)
		}
		s.notify(ctx, Event{Type: EventDenied, RequestID: r.ID, Status: status})
		return Release{}, &DeniedError{DecisionID: d.ID, Reasons: d.Reasons, Locked: locked}
	}
	escrows, err := s.escrow.InScope(ctx, signed.Scope.ConversationIDs, signed.Scope.From, signed.Scope.To)
	if err != nil {
		return Release{}, fmt.Errorf("%w: keys in scope: %v", ErrUnavailable, err)
	}
	kept, err := s.store.ReleaseShares(ctx, r.ID)
	if err != nil {
		return Release{}, err
	}
	cur, chain, err := s.Roster(ctx)
	if err != nil {
		return Release{}, err
	}
	var names []string
	for _, c := range cur.Custodians {
		names = append(names, c.Name)
	}
	logged, err := s.logEvidence(ctx, r, names)
	if err != nil {
		return Release{}, err
	}
	ask := escrow.ReleaseAsk{Canonical: r.Canonical, Approvals: approvals, Roster: chain, Log: logged, RequestID: r.ID, RequestDigest: r.Digest,
		RecipientKey: signed.Recipient.Fingerprint()}
	byKey := groupShares(kept)
	answers := s.escrow.Release(ctx, ask, escrows, haveShares(byKey))
	var refusals []*escrow.RefusedError
	var unavailable []string
	for _, a := range answers {
		switch {
		case a.Refusal != nil:
			refusals = append(refusals, a.Refusal)
		case a.Err != nil:
			unavailable = append(unavailable, a.Custodian)
			s.log.Warn("a custodian is unavailable for a release", "access_request_id", r.ID, "custodian", a.Custodian, "err", a.Err)
		case len(a.Items) > 0:
			// Its checks passed, but some shares did not come: its store or
			// key was unavailable, or its own records refused them.
			refused := &escrow.RefusedError{Custodian: a.Custodian}
			down := false
			for _, id := range slices.Sorted(maps.Keys(a.Items)) {
				item := a.Items[id]
				if item.Code == "unavailable" {
					down = true
					continue
				}
				refused.Reasons = append(refused.Reasons, "escrow "+id+": "+item.Message)
			}
			if down {
				unavailable = append(unavailable, a.Custodian)
			}
			if len(refused.Reasons) > 0 {
				refusals = append(refusals, refused)
			}
		}
		if len(a.Shares) == 0 {
			continue
		}
		got := make([]ReleasedShare, 0, len(a.Shares))
		for _, sh := range a.Shares {
			got = append(got, ReleasedShare{EscrowID: sh.EscrowID, Custodian: a.Custodian, Index: sh.Index, Sealed: sh.Sealed, Receipt: *sh.Receipt})
		}
		// What left a custodian is in the log before anything else happens.
		if got, err = s.store.InsertReleaseShares(ctx, r.ID, r.Digest, ask.RecipientKey, a.Custodian, got); err != nil {
			return Release{}, err
		}
		for _, sh := range got {
			byKey[sh.EscrowID] = append(byKey[sh.EscrowID], sh)
		}
	}
	out := Release{RequestID: r.ID, DecisionID: d.ID, Refusals: refusals, Keys: make([]ReleasedKey, 0, len(escrows))}
	var short []string
	for _, e := range escrows {
		if len(byKey[e.EscrowID]) < e.Threshold {
			short = append(short, e.EscrowID)
		}
		out.Keys = append(out.Keys, ReleasedKey{Escrow: e, Shares: byKey[e.EscrowID]})
	}
	if len(short) > 0 {
		s.log.Warn("release incomplete: keys below their threshold", "access_request_id", r.ID, "keys_short", len(short),
			"custodians_refused", len(refusals), "custodians_unavailable", unavailable)
		return Release{}, &CustodiansError{DecisionID: d.ID, Refusals: refusals, Unavailable: unavailable, Short: short}
	}
	f, err := s.store.Finish(ctx, r.ID, Final{Status: StatusReleased, By: caller, DecisionID: d.ID}, KindRelease,
		releaseLog(r, d.ID, caller, ask.RecipientKey, out.Keys))
	if err != nil {
		// Another release finished it meanwhile.
		return Release{}, s.finalOr(ctx, r.ID, err)
	}
	s.metrics.transition(StatusReleased)
	s.notify(ctx, Event{Type: EventReleased, RequestID: r.ID, Status: string(StatusReleased)})
	s.log.Info("keys released", "access_request_id", r.ID, "decision_id", d.ID, "keys", len(out.Keys), "audit_seq", f.AuditSeq)
	out.AuditSeq = f.AuditSeq
	return out, nil
}

// releaseLog is the audit record of a completed release.
func releaseLog(r Request, decisionID, by, recipientKey string, keys []ReleasedKey) releaseRecord {
	rec := releaseRecord{Kind: KindRelease, RequestID: r.ID, RequestDigest: r.Digest, DecisionID: decisionID, ReleasedBy: by,
		RecipientKey: recipientKey, Keys: make([]releasedKeyLog, 0, len(keys))}
	for _, k := range keys {
		kl := releasedKeyLog{EscrowID: k.Escrow.EscrowID, ConversationID: k.Escrow.ConversationID, KeyID: k.Escrow.KeyID,
			KeyCommitment: k.Escrow.KeyCommitment}
		for _, sh := range k.Shares {
			kl.Shares = append(kl.Shares, releasedShareLog{Custodian: sh.Custodian, Index: sh.Index, ReceiptSHA256: sh.Receipt.Hash()})
		}
		rec.Keys = append(rec.Keys, kl)
	}
	return rec
}

// groupShares groups released shares by escrow.
func groupShares(kept []ReleasedShare) map[string][]ReleasedShare {
	out := map[string][]ReleasedShare{}
	for _, sh := range kept {
		out[sh.EscrowID] = append(out[sh.EscrowID], sh)
	}
	return out
}

// haveShares says which custodian's share of which escrow is already kept.
func haveShares(byKey map[string][]ReleasedShare) map[string]map[string]bool {
	out := make(map[string]map[string]bool, len(byKey))
	for id, shs := range byKey {
		out[id] = map[string]bool{}
		for _, sh := range shs {
			out[id][sh.Custodian] = true
		}
	}
	return out
}

// Released returns a released request's keys again (its requester only):
// the shares kept from the custodians, for an officer whose answer was
// lost.
func (s *Service) Released(ctx context.Context, caller, requestID string) (Release, error) {
	if _, err := uuid.Parse(requestID); err != nil {
		return Release{}, ErrNotFound
	}
	r, err := s.store.Request(ctx, requestID)
	if err != nil {
		return Release{}, err
	}
	if caller != r.Requester {
		return Release{}, ErrNotRequester
	}
	s.settle(&r)
	if r.Status != StatusReleased {
		return Release{}, &FinalError{Status: r.Status}
	}
	signed, err := approval.Parse(r.Canonical)
	if err != nil {
		return Release{}, fmt.Errorf("%w: the stored request does not parse", ErrUnavailable)
	}
	kept, err := s.store.ReleaseShares(ctx, r.ID)
	if err != nil {
		return Release{}, err
	}
	byKey := groupShares(kept)
	escrows, err := s.escrow.InScope(ctx, signed.Scope.ConversationIDs, signed.Scope.From, signed.Scope.To)
	if err != nil {
		return Release{}, fmt.Errorf("%w: keys in scope: %v", ErrUnavailable, err)
	}
	out := Release{RequestID: r.ID, DecisionID: r.Final.DecisionID, AuditSeq: r.Final.AuditSeq}
	for _, e := range escrows {
		if len(byKey[e.EscrowID]) > 0 {
			out.Keys = append(out.Keys, ReleasedKey{Escrow: e, Shares: byKey[e.EscrowID]})
		}
	}
	return out, nil
}

// policyInput builds the policy's input: the request and every approval,
// each signature verified again now with the key it was made with, and
// whether its approver is still active. It also returns the approvals as
// custodians are handed them, to verify for themselves.
func (s *Service) policyInput(ctx context.Context, r Request) (policy.ReleaseInput, []wire.EvidenceApproval, error) {
	approvals, err := s.store.Approvals(ctx, r.ID)
	if err != nil {
		return policy.ReleaseInput{}, nil, err
	}
	in := policy.ReleaseInput{Now: s.now().UTC(), Request: policy.ReleaseRequest{
		ID: r.ID, Requester: r.Requester, CaseID: r.CaseID, LegalBasis: r.LegalBasis, Jurisdiction: r.Jurisdiction,
		Scope:     policy.ReleaseScope{ConversationIDs: r.Scope.ConversationIDs, From: r.Scope.From, To: r.Scope.To},
		CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt,
	}}
	evidence := make([]wire.EvidenceApproval, 0, len(approvals))
	cur, err := s.current(ctx)
	if err != nil {
		return policy.ReleaseInput{}, nil, err
	}
	for _, a := range approvals {
		// An approval counts only for an approver of the roster in force,
		// with the key it lists now and the roles it gives now: a removed
		// approver's or a rotated key's approvals no longer count.
		var ap roster.Approver
		active := false
		if cur != nil {
			ap, active = cur.Approver(a.ApproverID)
		}
		verified := active && ap.KeyID() == a.KeyID && approval.Verify(ap.PublicKey, r.ID, r.Digest, a.Decision, a.ApproverID, a.Signature)
		if active && !verified {
			s.log.Warn("a recorded approval does not verify with the approver's key in the roster in force; the policy will not count it",
				"access_request_id", r.ID, "approver_id", a.ApproverID)
		}
		roles := ap.Roles
		if roles == nil {
			roles = []string{}
		}
		in.Approvals = append(in.Approvals, policy.ReleaseApproval{ApproverID: a.ApproverID, Roles: roles, Decision: a.Decision,
			ApprovedAt: a.ApprovedAt.UTC(), SignatureVerified: verified, ApproverActive: active})
		evidence = append(evidence, wire.EvidenceApproval{ApproverID: a.ApproverID, Decision: a.Decision, Signature: a.Signature,
			ApprovedAt: a.ApprovedAt.UTC()})
	}
	return in, evidence, nil
}

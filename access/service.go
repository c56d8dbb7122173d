// Package access is the lawful-access workflow at the mediator: an officer
// files a request (its canonical bytes and digest are what approvers sign),
// approvers vote with Ed25519 signatures over exactly those bytes, and the
// requester asks for the release. The release is decided by the policy
// (the Decider), never here, and then by every custodian for itself: the
// mediator hands them the request as signed, the approvals, the roster
// chain and, to custodians that witness the log, proof that all of it is
// logged, and keeps what they sealed to the request's recipient. It cannot
// open a share.
//
// Requests are read from their canonical bytes only: the columns are an
// index, and a row whose bytes do not match its digest is never approved
// or released. Who may approve is the roster in force, verified from the
// pinned genesis by the governance package. Every transition is a log
// entry, committed with its row.
package access

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/escrow"
	"github.com/mediatorhq/mediator/governance"
	"github.com/mediatorhq/mediator/invalid"
	"github.com/mediatorhq/mediator/policy"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/wire"
)

// Decider decides releases: the policy engine (policy.Reloader).
type Decider interface {
	DecideRelease(ctx context.Context, in policy.ReleaseInput) (policy.Decision, error)
}

// KeyEscrow is what a release needs of the escrow (escrow.Service): the
// escrowed keys in a scope, as a release counts them, those it asks for
// in full, and the custodians' answers to a release.
type KeyEscrow interface {
	KeysInScope(ctx context.Context, conversationIDs []string, from, to time.Time) ([]escrow.ScopeKey, error)
	ByIDs(ctx context.Context, ids []string) ([]escrow.Escrow, error)
	Release(ctx context.Context, ask escrow.ReleaseAsk, escrows []escrow.Escrow, have map[string]map[string]bool) []escrow.CustodianAnswer
}

// Roster is the roster in force, verified from the pinned genesis
// (governance.Service): Current is nil before the genesis is adopted;
// Roster also returns the chain it ends, and governance.ErrNotFound
// before the genesis. Both fail with governance.ErrNoGenesis or
// ErrRosterBroken when nothing can be trusted.
type Roster interface {
	Roster(ctx context.Context) (roster.Roster, []roster.Signed, error)
	Current(ctx context.Context) (*roster.Roster, error)
}

// maxDeniedReleases is how many denied release attempts lock a request as
// denied: enough for an officer to fix a missing approval, too few to
// probe the policy at leisure.
const maxDeniedReleases = 5

// systemActor is who a transition the mediator makes by itself is by.
const systemActor = "mediator"

// Service runs the workflow: requests, approvals, releases. It decides
// nothing itself: the Decider says whether keys may leave, and each
// custodian again for its share.
type Service struct {
	requests  RequestStore
	approvals ApprovalStore
	releases  ReleaseStore
	roster    Roster
	decider   Decider
	escrow    KeyEscrow
	log       *slog.Logger
	metrics   *Metrics
	now       func() time.Time
	notifier  Notifier
	logProof  LogProof
	budget    time.Duration // how long one release call asks custodians
	pageSize  int           // keys per answer page: AnswerPage but in tests
	askPage   int           // keys read in full and asked for at a time: AskPage but in tests
}

// DefaultReleaseBudget is how long into a release call the mediator stops
// asking custodians for more chunks: with what comes after (keeping the
// answers, counting a release of 100,000 keys), well inside the API's
// 60 s write timeout, so a release of many keys answers "in progress"
// and goes on in the next call instead of being cut off.
const DefaultReleaseBudget = 20 * time.Second

// Config configures a Service. The three stores are usually one
// *PGStore; each is declared by what it is used for.
type Config struct {
	Requests  RequestStore
	Approvals ApprovalStore
	Releases  ReleaseStore
	// Roster names the approvers (governance.Service).
	Roster  Roster
	Decider Decider
	Escrow  KeyEscrow
	Log     *slog.Logger
	Metrics *Metrics         // may be nil
	Now     func() time.Time // for tests; time.Now when nil
	// Notifier, if set, receives workflow events (webhooks).
	Notifier Notifier
	// LogProof, if set, proves to custodians that witness the audit log
	// that a release's request and approvals are in it.
	LogProof LogProof
	// ReleaseBudget is how long one release call asks custodians for
	// more chunks before it answers that the release is in progress; 0
	// means DefaultReleaseBudget, a negative value no limit.
	ReleaseBudget time.Duration
}

// New returns a Service.
func New(cfg Config) *Service {
	s := &Service{requests: cfg.Requests, approvals: cfg.Approvals, releases: cfg.Releases, roster: cfg.Roster,
		decider: cfg.Decider, escrow: cfg.Escrow, log: cfg.Log, metrics: cfg.Metrics, now: cfg.Now,
		notifier: cfg.Notifier, logProof: cfg.LogProof, budget: cfg.ReleaseBudget, pageSize: AnswerPage, askPage: AskPage}
	if s.budget == 0 {
		s.budget = DefaultReleaseBudget
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// maxFilingSkew bounds how far the created_at an officer's client signed
// may lie from the mediator's clock.
const maxFilingSkew = 5 * time.Minute

// Create files a request that requester (the officer's token subject)
// built and signed: d is the whole request as the officer's client made
// it, its ID a fresh UUID and its CreatedAt the officer's clock to the
// second, and sig the officer's signature over its digest
// (approval.RequestMessage). The mediator chooses nothing in it. It is
// filed only if requester is an officer of the roster in force and sig
// verifies with their key; the signature is kept and logged with it.
func (s *Service) Create(ctx context.Context, requester string, d Draft, sig []byte) (Request, error) {
	if err := validID("requester", requester); err != nil {
		return Request{}, err
	}
	now := s.now().UTC().Truncate(time.Second)
	d.Requester = requester
	r := Request{Request: normalize(d), OfficerSignature: slices.Clone(sig)}
	if err := validateDraft(r.Request, now); err != nil {
		return Request{}, err
	}
	if id, err := uuid.Parse(d.ID); err != nil || id.String() != d.ID {
		return Request{}, invalid.Input("id", "must be a fresh UUID in lower-case hex, chosen by the officer's client")
	}
	if !r.CreatedAt.Equal(d.CreatedAt) || r.CreatedAt.Before(now.Add(-maxFilingSkew)) || r.CreatedAt.After(now.Add(maxFilingSkew)) {
		return Request{}, invalid.Input("created_at", fmt.Sprintf("must be now, to the second, within %s of the mediator's clock", maxFilingSkew))
	}
	if !r.Scope.From.Equal(d.Scope.From) || !r.Scope.To.Equal(d.Scope.To) || !r.ExpiresAt.Equal(d.ExpiresAt) {
		return Request{}, invalid.Input("scope", "times must be whole seconds: the officer signed them so")
	}
	var err error
	if r.Canonical, err = Canonical(r); err != nil {
		return Request{}, err
	}
	r.Digest = approval.Digest(r.Canonical)
	if err := s.checkOfficer(ctx, r); err != nil {
		return Request{}, err
	}
	if r, err = s.requests.InsertRequest(ctx, r); err != nil {
		return Request{}, err
	}
	r.Status = StatusPending
	s.metrics.transition(StatusPending)
	s.log.Info("access request filed", "access_request_id", r.ID, "requester", requester, "case_id", r.CaseID,
		"conversations", len(r.Scope.ConversationIDs), "audit_seq", r.AuditSeq)
	s.notify(ctx, wire.Event{Type: wire.EventRequestFiled, RequestID: r.ID, Status: string(StatusPending)})
	s.notify(ctx, wire.Event{Type: wire.EventNeedsApprovals, RequestID: r.ID, Status: string(StatusPending)})
	return r, nil
}

// normalize returns d with its times in UTC to the second and its slices
// its own.
func normalize(d Draft) Draft {
	d.Scope.ConversationIDs = slices.Clone(d.Scope.ConversationIDs)
	d.Scope.From = d.Scope.From.UTC().Truncate(time.Second)
	d.Scope.To = d.Scope.To.UTC().Truncate(time.Second)
	d.CreatedAt = d.CreatedAt.UTC().Truncate(time.Second)
	d.ExpiresAt = d.ExpiresAt.UTC().Truncate(time.Second)
	return d
}

// checkOfficer verifies that r carries its requester's signature over its
// digest and that the requester is an officer of the roster in force:
// ErrNotOfficer or ErrBadOfficerSignature otherwise. The check is made
// when a request is filed, approved and released, so that a request
// written into the tables by anyone else goes nowhere.
func (s *Service) checkOfficer(ctx context.Context, r Request) error {
	cur, err := s.roster.Current(ctx)
	if err != nil {
		return err
	}
	if cur == nil {
		return ErrNotOfficer
	}
	switch _, err := cur.VerifyRequest(r.Requester, r.Digest, r.OfficerSignature); {
	case errors.Is(err, roster.ErrNotOfficer):
		s.log.Warn("request refused: the requester is not an officer of the roster in force", "access_request_id", r.ID, "requester", r.Requester)
		return ErrNotOfficer
	case err != nil:
		s.log.Warn("request refused: the officer's signature does not verify", "access_request_id", r.ID, "requester", r.Requester)
		return ErrBadOfficerSignature
	}
	return nil
}

// Get returns request id and its approvals.
func (s *Service) Get(ctx context.Context, id string) (Request, []Approval, error) {
	if _, err := uuid.Parse(id); err != nil {
		return Request{}, nil, ErrNotFound
	}
	r, err := s.requests.Request(ctx, id)
	if err != nil {
		return Request{}, nil, err
	}
	s.settle(&r)
	approvals, err := s.approvals.Approvals(ctx, id)
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
		if rs, err = s.requests.Requests(ctx, StatusPending, maxList); err != nil {
			return nil, err
		}
		if status == StatusExpired {
			recorded, err := s.requests.Requests(ctx, StatusExpired, maxList)
			if err != nil {
				return nil, err
			}
			rs = append(rs, recorded...)
		}
	default:
		if rs, err = s.requests.Requests(ctx, status, limit); err != nil {
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
		_, err := s.requests.Finish(ctx, r.ID, Final{Status: StatusExpired, By: systemActor}, KindExpire,
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
// signature must verify with the approver's key in the roster in force
// over approval.Message(requestID, digest, decision, approverID). The
// requester's own approval is recorded and counts for nothing: it is
// answered with a *SelfApprovalError, which names its log entry, and no
// Approval.
func (s *Service) Approve(ctx context.Context, approverID, requestID, decision string, signature []byte) (Approval, error) {
	a, err := s.approve(ctx, approverID, requestID, decision, signature)
	s.metrics.approval(err)
	return a, err
}

func (s *Service) approve(ctx context.Context, approverID, requestID, decision string, signature []byte) (Approval, error) {
	if decision != approval.Approve && decision != approval.Deny {
		return Approval{}, invalid.Input("decision", "must be approve or deny")
	}
	if _, err := uuid.Parse(requestID); err != nil {
		return Approval{}, ErrNotFound
	}
	r, err := s.requests.Request(ctx, requestID)
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
	cur, err := s.roster.Current(ctx)
	if err != nil {
		return Approval{}, err
	}
	if cur == nil {
		return Approval{}, governance.ErrUnknownApprover
	}
	if err := s.checkOfficer(ctx, r); err != nil {
		return Approval{}, err
	}
	ap, ok := cur.Approver(approverID)
	if !ok {
		return Approval{}, governance.ErrUnknownApprover
	}
	if !approval.Verify(ap.PublicKey, r.ID, r.Digest, decision, ap.ID, signature) {
		s.log.Warn("approval refused: bad signature", "access_request_id", r.ID, "approver_id", ap.ID)
		return Approval{}, ErrBadSignature
	}
	a := Approval{RequestID: r.ID, ApproverID: ap.ID, Decision: decision, Signature: slices.Clone(signature),
		KeyID: ap.KeyID(), Roles: ap.Roles, ByRequester: ap.ID == r.Requester}
	if a, err = s.approvals.InsertApproval(ctx, a, r.Digest); err != nil {
		return Approval{}, err
	}
	s.log.Info("approval recorded", "access_request_id", r.ID, "approver_id", ap.ID, "decision", decision,
		"by_requester", a.ByRequester, "audit_seq", a.AuditSeq)
	n := 0
	if all, err := s.approvals.Approvals(ctx, r.ID); err == nil {
		n = len(all)
	}
	s.notify(ctx, wire.Event{Type: wire.EventApproval, RequestID: r.ID, Status: decision, Approvals: n})
	if a.ByRequester {
		return Approval{}, &SelfApprovalError{AuditSeq: a.AuditSeq}
	}
	return a, nil
}

// Revoke withdraws a pending request; only its requester may.
func (s *Service) Revoke(ctx context.Context, caller, requestID string) (Request, error) {
	if _, err := uuid.Parse(requestID); err != nil {
		return Request{}, ErrNotFound
	}
	r, err := s.requests.Request(ctx, requestID)
	if err != nil {
		return Request{}, err
	}
	if caller != r.Requester {
		return Request{}, ErrNotRequester
	}
	if err := s.requirePending(ctx, &r); err != nil {
		return Request{}, err
	}
	f, err := s.requests.Finish(ctx, r.ID, Final{Status: StatusRevoked, By: caller}, KindRevoke,
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
	if r, rerr := s.requests.Request(ctx, id); rerr == nil && r.Final != nil {
		return &FinalError{Status: r.Final.Status}
	}
	return err
}

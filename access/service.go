package access

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/escrow"
	"github.com/mediatorhq/mediator/policy"
	"github.com/mediatorhq/mediator/redact"
)

// Decider decides releases: the policy engine (policy.Reloader).
type Decider interface {
	DecideRelease(ctx context.Context, in policy.ReleaseInput) (policy.Decision, error)
}

// KeyEscrow is what a release needs of the escrow (escrow.Service).
type KeyEscrow interface {
	InScope(ctx context.Context, conversationIDs []string, from, to time.Time) ([]escrow.Receipt, error)
	Reconstruct(ctx context.Context, id, decisionRef string) ([]byte, escrow.Receipt, error)
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
}

// Config configures a Service.
type Config struct {
	Store   Store
	Decider Decider
	Escrow  KeyEscrow
	Log     *slog.Logger
	Metrics *Metrics         // may be nil
	Now     func() time.Time // for tests; time.Now when nil
}

// New returns a Service.
func New(cfg Config) *Service {
	s := &Service{store: cfg.Store, decider: cfg.Decider, escrow: cfg.Escrow, log: cfg.Log, metrics: cfg.Metrics, now: cfg.Now}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// RegisterApprover registers approver id with roles and an Ed25519 public
// key. by is the administrator.
func (s *Service) RegisterApprover(ctx context.Context, by, id string, roles []string, pub []byte) (Approver, error) {
	if err := validID("id", id); err != nil {
		return Approver{}, err
	}
	if len(roles) == 0 || len(roles) > 16 {
		return Approver{}, invalid("roles", "must list 1–16 roles")
	}
	for i, r := range roles {
		if !approverRolePattern.MatchString(r) || slices.Contains(roles[:i], r) {
			return Approver{}, invalid("roles", "must be distinct lower-case names such as legal or security")
		}
	}
	if len(pub) != ed25519.PublicKeySize {
		return Approver{}, invalid("public_key", "must be a 32-byte Ed25519 public key")
	}
	key := ed25519.PublicKey(slices.Clone(pub))
	a, err := s.store.InsertApprover(ctx, Approver{ID: id, Roles: slices.Clone(roles), Keys: []ApproverKey{{ID: approval.KeyID(key), PublicKey: key}}}, by)
	if err != nil {
		return Approver{}, err
	}
	s.log.Info("approver registered", "approver_id", id, "roles", roles, "key_id", approval.KeyID(key), "by", by)
	return a, nil
}

// Approvers lists every approver.
func (s *Service) Approvers(ctx context.Context) ([]Approver, error) { return s.store.Approvers(ctx) }

// AddApproverKey rotates approver id's key: pub becomes the key future
// signatures must verify with. Approvals made with an earlier key stay
// valid.
func (s *Service) AddApproverKey(ctx context.Context, by, id string, pub []byte) (Approver, error) {
	a, err := s.store.Approver(ctx, id)
	if err != nil {
		return Approver{}, err
	}
	if !a.Active {
		return Approver{}, ErrApproverInactive
	}
	if len(pub) != ed25519.PublicKeySize {
		return Approver{}, invalid("public_key", "must be a 32-byte Ed25519 public key")
	}
	if err := s.store.AddApproverKey(ctx, id, ed25519.PublicKey(slices.Clone(pub)), by); err != nil {
		return Approver{}, err
	}
	s.log.Info("approver key rotated", "approver_id", id, "key_id", approval.KeyID(pub), "by", by)
	return s.store.Approver(ctx, id)
}

// DeactivateApprover refuses approver id's future signatures. Their past
// approvals stay in the log; the default policy no longer counts them.
func (s *Service) DeactivateApprover(ctx context.Context, by, id, reason string) (Approver, error) {
	if reason == "" || len(reason) > 500 || !redact.Printable(reason) {
		return Approver{}, invalid("reason", "must be 1–500 printable characters")
	}
	a, err := s.store.Approver(ctx, id)
	if err != nil {
		return Approver{}, err
	}
	if !a.Active {
		return a, nil
	}
	if err := s.store.DeactivateApprover(ctx, id, by, reason); err != nil {
		return Approver{}, err
	}
	s.log.Info("approver deactivated", "approver_id", id, "by", by)
	return s.store.Approver(ctx, id)
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
	ap, err := s.store.Approver(ctx, approverID)
	if errors.Is(err, ErrNotFound) {
		return Approval{}, ErrUnknownApprover
	}
	if err != nil {
		return Approval{}, err
	}
	if !ap.Active {
		return Approval{}, ErrApproverInactive
	}
	key, ok := ap.CurrentKey()
	if !ok || !approval.Verify(key.PublicKey, r.ID, r.Digest, decision, ap.ID, signature) {
		s.log.Warn("approval refused: bad signature", "access_request_id", r.ID, "approver_id", ap.ID)
		return Approval{}, ErrBadSignature
	}
	a := Approval{RequestID: r.ID, ApproverID: ap.ID, Decision: decision, Signature: slices.Clone(signature),
		KeyID: key.ID, Roles: ap.Roles, ByRequester: ap.ID == r.Requester}
	if a, err = s.store.InsertApproval(ctx, a, r.Digest); err != nil {
		return Approval{}, err
	}
	s.log.Info("approval recorded", "access_request_id", r.ID, "approver_id", ap.ID, "decision", decision,
		"by_requester", a.ByRequester, "audit_seq", a.AuditSeq)
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

// Release is what a successful release returns.
type Release struct {
	RequestID  string
	Keys       []SealedKey
	DecisionID string
	AuditSeq   int64
}

// releasedKey is one key of a release's audit record: which escrow, and a
// hash of exactly what left sealed. Never the key.
type releasedKey struct {
	ConversationID string `json:"conversation_id"`
	KeyID          string `json:"key_id"`
	EscrowID       string `json:"escrow_id"`
	KeyCommitment  string `json:"key_commitment"`
	SealedSHA256   string `json:"sealed_sha256"`
}

// Release asks the policy whether request requestID's keys may leave, with
// every approval verified again now, and records the decision. Allowed:
// each escrowed key in scope is rebuilt and sealed to the request's
// recipient key, and the request becomes released. Denied: a *DeniedError;
// the fifth denial locks the request as denied. Only the requester may ask.
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
	in, err := s.policyInput(ctx, r)
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
		return Release{}, &DeniedError{DecisionID: d.ID, Reasons: d.Reasons, Locked: locked}
	}
	receipts, err := s.escrow.InScope(ctx, r.Scope.ConversationIDs, r.Scope.From, r.Scope.To)
	if err != nil {
		return Release{}, fmt.Errorf("%w: keys in scope: %v", ErrUnavailable, err)
	}
	out := Release{RequestID: r.ID, DecisionID: d.ID, Keys: make([]SealedKey, 0, len(receipts))}
	logged := make([]releasedKey, 0, len(receipts))
	for _, rec := range receipts {
		sk, err := s.sealOne(ctx, r, rec, d.ID)
		if err != nil {
			return Release{}, err
		}
		sum := sha256.Sum256(sk.Sealed)
		out.Keys = append(out.Keys, sk)
		logged = append(logged, releasedKey{ConversationID: rec.ConversationID, KeyID: rec.KeyID, EscrowID: rec.EscrowID,
			KeyCommitment: rec.KeyCommitment, SealedSHA256: hex.EncodeToString(sum[:])})
	}
	f, err := s.store.Finish(ctx, r.ID, Final{Status: StatusReleased, By: caller, DecisionID: d.ID}, KindRelease,
		map[string]any{"kind": KindRelease, "request_id": r.ID, "decision_id": d.ID, "released_by": caller,
			"recipient_kem_id": int(r.Recipient.KEMID), "keys": logged})
	if err != nil {
		// Another release won the race; these sealed keys never leave.
		return Release{}, s.finalOr(ctx, r.ID, err)
	}
	s.metrics.transition(StatusReleased)
	s.log.Info("keys released", "access_request_id", r.ID, "decision_id", d.ID, "keys", len(out.Keys), "audit_seq", f.AuditSeq)
	out.AuditSeq = f.AuditSeq
	return out, nil
}

// sealOne rebuilds one escrowed key and seals it to the request's
// recipient; the key is zeroed before returning.
func (s *Service) sealOne(ctx context.Context, r Request, rec escrow.Receipt, decisionID string) (SealedKey, error) {
	key, _, err := s.escrow.Reconstruct(ctx, rec.EscrowID, decisionID)
	if err != nil {
		s.log.Error("release: a key in scope could not be rebuilt", "access_request_id", r.ID, "escrow_id", rec.EscrowID, "err", err)
		return SealedKey{}, fmt.Errorf("%w: escrow %s: %v", ErrUnavailable, rec.EscrowID, err)
	}
	defer clear(key)
	sk, err := Seal(r.Recipient, r.ID, rec.ConversationID, rec.KeyID, key)
	if err != nil {
		return SealedKey{}, fmt.Errorf("access: seal escrow %s: %w", rec.EscrowID, err)
	}
	return sk, nil
}

// policyInput builds the policy's input: the request and every approval,
// each signature verified again now with the key it was made with, and
// whether its approver is still active.
func (s *Service) policyInput(ctx context.Context, r Request) (policy.ReleaseInput, error) {
	approvals, err := s.store.Approvals(ctx, r.ID)
	if err != nil {
		return policy.ReleaseInput{}, err
	}
	in := policy.ReleaseInput{Now: s.now().UTC(), Request: policy.ReleaseRequest{
		ID: r.ID, Requester: r.Requester, CaseID: r.CaseID, LegalBasis: r.LegalBasis, Jurisdiction: r.Jurisdiction,
		Scope:     policy.ReleaseScope{ConversationIDs: r.Scope.ConversationIDs, From: r.Scope.From, To: r.Scope.To},
		CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt,
	}}
	approvers := map[string]Approver{}
	for _, a := range approvals {
		ap, ok := approvers[a.ApproverID]
		if !ok {
			if ap, err = s.store.Approver(ctx, a.ApproverID); err != nil {
				return policy.ReleaseInput{}, err
			}
			approvers[a.ApproverID] = ap
		}
		key, known := ap.Key(a.KeyID)
		verified := known && approval.Verify(key.PublicKey, r.ID, r.Digest, a.Decision, a.ApproverID, a.Signature)
		if !verified {
			s.log.Error("a recorded approval no longer verifies; the policy will not count it", "access_request_id", r.ID, "approver_id", a.ApproverID)
		}
		in.Approvals = append(in.Approvals, policy.ReleaseApproval{ApproverID: a.ApproverID, Roles: a.Roles, Decision: a.Decision,
			ApprovedAt: a.ApprovedAt.UTC(), SignatureVerified: verified, ApproverActive: ap.Active})
	}
	return in, nil
}

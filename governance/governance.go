// Package governance runs the roster's workflow at the mediator: an admin
// proposes the next version, approvers sign it, and it is adopted once the
// signatures of the version in force meet that version's rule and every
// new or re-keyed approver proved possession of their key (roster.Check).
// The adopted chain is read back and verified from the pinned genesis
// before anyone relies on it (Service.Roster), so a version written into
// the database by anyone else names no approver. It also keeps approvers'
// signed check-ins and says whether those who checked in recently can
// still meet the release and roster rules (Liveness).
//
// It never trusts a description of a proposal: what is signed is the
// proposal's canonical bytes, and what it reports about a proposal is
// computed from them against the verified version in force.
package governance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/wire"
)

// Errors a caller maps to answers.
var (
	// ErrNoGenesis: the service has no pinned genesis digest, so it trusts
	// no roster and no approver (503).
	ErrNoGenesis = errors.New("governance: no roster genesis is pinned (--roster-genesis); no approver is trusted")
	// ErrNotGenesis matches a *NotGenesisError (409).
	ErrNotGenesis = errors.New("governance: the proposed first roster version is not the pinned genesis")
	// ErrRosterBroken: the stored chain does not verify from the pinned
	// genesis. Someone with the database's rights edited it; nothing that
	// depends on approvers works until it is repaired (503).
	ErrRosterBroken = errors.New("governance: the stored roster chain does not verify from the pinned genesis")
	// ErrStaleProposal: another version took the proposal's number (409).
	ErrStaleProposal = errors.New("governance: another roster version was adopted first; propose again on top of it")
	// ErrNotSigner: a roster signature by someone who is an approver of
	// neither the version in force nor the proposal, or over other bytes
	// (422).
	ErrNotSigner = errors.New("governance: the signature verifies with no key of the caller in the roster in force or the proposal")
	// ErrNotFound: no such proposal, or no version adopted yet (404).
	ErrNotFound = errors.New("governance: not found")
	// ErrUnknownApprover: the caller is not an approver of the roster in
	// force (403).
	ErrUnknownApprover = errors.New("governance: the caller is not an approver of the roster in force")
	// ErrBadSignature: a check-in's signature does not verify with the
	// approver's key in the roster in force (422).
	ErrBadSignature = errors.New("governance: the check-in signature does not verify with the approver's key in the roster in force")
	// ErrUnavailable wraps a database failure (503).
	ErrUnavailable = errors.New("governance: a dependency is unavailable")
)

// NotGenesisError is a first version whose digest is not the pinned
// genesis.
type NotGenesisError struct {
	Proposed, Pinned string
}

func (e *NotGenesisError) Error() string {
	return fmt.Sprintf("the proposed first roster version is not the pinned genesis: it is %s; the service pins %s", e.Proposed, e.Pinned)
}

// Is makes a NotGenesisError match ErrNotGenesis.
func (e *NotGenesisError) Is(target error) bool { return target == ErrNotGenesis }

// Audit entry kinds of the roster.
const (
	KindRosterProposal  = "roster.proposal"
	KindRosterSignature = "roster.signature"
	KindRosterVersion   = "roster.version"
)

// Notifier delivers workflow events. Notify must not block: it queues and
// returns (notify.Notifier).
type Notifier interface {
	Notify(ctx context.Context, e wire.Event)
}

// Service runs the roster's workflow. It is safe for concurrent use.
type Service struct {
	chain      ChainStore
	proposals  ProposalStore
	checkins   CheckinStore
	custodians CustodianSet
	rule       ReleaseRule
	log        *slog.Logger
	metrics    *Metrics
	notifier   Notifier
	now        func() time.Time
	genesis    string
	cache      chainCache
}

// Config configures a Service. Store is usually one *PGStore for all
// three; each is declared by what it is used for.
type Config struct {
	// Chain keeps the adopted versions; Proposals the proposals and their
	// signatures; Checkins the approvers' check-ins.
	Chain     ChainStore
	Proposals ProposalStore
	Checkins  CheckinStore
	// RosterGenesis is the pinned digest of the roster's first version:
	// only a chain that verifies from it names approvers.
	RosterGenesis string
	// Custodians, if set, is the custodian set the mediator forwards
	// deposits to (escrow.Service), which Liveness compares with the
	// roster's.
	Custodians CustodianSet
	// ReleaseRule, if set, is the release policy's approval rule
	// (policy.Reloader), which Liveness checks live approvers against.
	ReleaseRule ReleaseRule
	Log         *slog.Logger
	Metrics     *Metrics // may be nil
	Notifier    Notifier // may be nil
	Now         func() time.Time
}

// New returns a Service.
func New(cfg Config) *Service {
	s := &Service{chain: cfg.Chain, proposals: cfg.Proposals, checkins: cfg.Checkins, custodians: cfg.Custodians,
		rule: cfg.ReleaseRule, log: cfg.Log, metrics: cfg.Metrics, notifier: cfg.Notifier, now: cfg.Now, genesis: cfg.RosterGenesis}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// Genesis is the pinned digest of the roster's first version.
func (s *Service) Genesis() string { return s.genesis }

// chainCache is the verified chain as last read, reloaded when the stored
// chain grows.
type chainCache struct {
	mu     sync.Mutex
	chain  []roster.Signed
	latest roster.Roster
	digest string
}

// snapshot returns the chain as last verified.
func (c *chainCache) snapshot() []roster.Signed {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.chain
}

// Roster returns the roster in force and the chain it ends, verified from
// the pinned genesis: ErrNoGenesis without a pin, ErrNotFound before the
// genesis is adopted, ErrRosterBroken if the stored chain does not verify.
// It reads the chain's head once per call and the whole chain only when
// the head moved.
func (s *Service) Roster(ctx context.Context) (roster.Roster, []roster.Signed, error) {
	if s.genesis == "" {
		return roster.Roster{}, nil, ErrNoGenesis
	}
	n, digest, err := s.chain.RosterVersion(ctx, s.genesis)
	if err != nil {
		return roster.Roster{}, nil, err
	}
	if n == 0 {
		return roster.Roster{}, nil, fmt.Errorf("%w: no roster version is adopted yet", ErrNotFound)
	}
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	if uint64(len(s.cache.chain)) == n && s.cache.digest == digest {
		return s.cache.latest, s.cache.chain, nil
	}
	chain, err := s.chain.RosterChain(ctx, s.genesis)
	if err != nil {
		return roster.Roster{}, nil, err
	}
	latest, latestDigest, err := roster.Latest(s.genesis, chain)
	if err != nil {
		s.log.Error("the stored roster chain does not verify from the pinned genesis; no approval counts", "genesis", s.genesis, "err", err)
		s.metrics.rosterBroken()
		return roster.Roster{}, nil, fmt.Errorf("%w: %v", ErrRosterBroken, err)
	}
	s.cache.chain, s.cache.latest, s.cache.digest = chain, latest, latestDigest
	s.metrics.rosterVersion(latest.Version)
	return latest, chain, nil
}

// Current returns the roster in force, or nil before the genesis is
// adopted; errors as Roster's otherwise.
func (s *Service) Current(ctx context.Context) (*roster.Roster, error) {
	r, _, err := s.Roster(ctx)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// notify hands e to the notifier, if any.
func (s *Service) notify(ctx context.Context, e wire.Event) {
	if s.notifier == nil {
		return
	}
	if e.OccurredAt.IsZero() {
		e.OccurredAt = s.now().UTC()
	}
	s.notifier.Notify(ctx, e)
}

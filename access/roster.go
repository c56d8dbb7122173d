package access

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/mediatorhq/mediator/roster"
)

// Roster errors.
var (
	// ErrNoGenesis: the service has no pinned genesis digest, so it trusts
	// no roster and no approver.
	ErrNoGenesis = errors.New("access: no roster genesis is pinned (--roster-genesis); no approver is trusted")
	// ErrNotGenesis: a first version whose digest is not the pinned genesis.
	ErrNotGenesis = errors.New("access: the proposed first roster version is not the pinned genesis")
	// ErrRosterBroken: the stored chain does not verify from the pinned
	// genesis. Someone with the database's rights edited it; nothing that
	// depends on approvers works until it is repaired.
	ErrRosterBroken = errors.New("access: the stored roster chain does not verify from the pinned genesis")
	// ErrStaleProposal: another version took the proposal's number.
	ErrStaleProposal = errors.New("access: another roster version was adopted first; propose again on top of it")
	// ErrNotSigner: a roster signature by someone who is an approver of
	// neither the version in force nor the proposal, or over other bytes.
	ErrNotSigner = errors.New("access: the signature verifies with no key of the caller in the roster in force or the proposal")
)

// Proposal is a proposed roster version and the signatures it has.
type Proposal struct {
	Digest     string
	Roster     roster.Roster
	Canonical  []byte
	ProposedBy string
	ProposedAt time.Time
	AuditSeq   int64
	Signatures []roster.Signature
	// Progress weighs Signatures against the version in force; Adopted is
	// true once the proposal is part of the chain, Stale when another
	// version took its number.
	Progress roster.Progress
	Adopted  bool
	Stale    bool
	// Changes lists what it changes, for people.
	Changes []string
}

// RosterStore keeps the roster chain.
type RosterStore interface {
	// InsertRosterProposal keeps a proposal with its roster.proposal audit
	// entry; a proposal with the same digest is kept once.
	InsertRosterProposal(ctx context.Context, p Proposal, record any) (Proposal, error)
	// InsertRosterSignature keeps a verified signature with its
	// roster.signature audit entry; the same one again is no change.
	InsertRosterSignature(ctx context.Context, digest string, s roster.Signature) error
	// AdoptRoster makes the proposal with digest version n of the chain,
	// with its roster.version audit entry; ErrStaleProposal if version n
	// exists.
	AdoptRoster(ctx context.Context, genesis string, version uint64, digest string, record any) (int64, error)
	// RosterProposal returns a proposal and its signatures; ErrNotFound.
	RosterProposal(ctx context.Context, digest string) (Proposal, error)
	// RosterProposals lists proposals newest first.
	RosterProposals(ctx context.Context, limit int) ([]Proposal, error)
	// RosterChain returns the versions adopted from genesis in order,
	// with every signature kept for each.
	RosterChain(ctx context.Context, genesis string) ([]roster.Signed, error)
	// RosterVersion returns the number and digest of the newest version
	// adopted from genesis, 0 and "" when there is none.
	RosterVersion(ctx context.Context, genesis string) (uint64, string, error)
	// InsertCheckin keeps an approver's verified check-in.
	InsertCheckin(ctx context.Context, c Checkin) error
	// LastCheckins returns each approver's newest check-in time.
	LastCheckins(ctx context.Context) (map[string]time.Time, error)
}

// Audit entry kinds of the roster.
const (
	KindRosterProposal  = "roster.proposal"
	KindRosterSignature = "roster.signature"
	KindRosterVersion   = "roster.version"
)

// rosterCache is the verified chain as last read, reloaded when the
// stored chain grows.
type rosterCache struct {
	mu     sync.Mutex
	chain  []roster.Signed
	latest roster.Roster
	digest string
}

// Roster returns the roster in force and the chain it ends, verified from
// the pinned genesis: ErrNoGenesis without a pin, ErrNotFound before the
// genesis is adopted, ErrRosterBroken if the stored chain does not verify.
func (s *Service) Roster(ctx context.Context) (roster.Roster, []roster.Signed, error) {
	if s.genesis == "" {
		return roster.Roster{}, nil, ErrNoGenesis
	}
	n, digest, err := s.store.RosterVersion(ctx, s.genesis)
	if err != nil {
		return roster.Roster{}, nil, err
	}
	if n == 0 {
		return roster.Roster{}, nil, fmt.Errorf("%w: no roster version is adopted yet", ErrNotFound)
	}
	s.roster.mu.Lock()
	defer s.roster.mu.Unlock()
	if uint64(len(s.roster.chain)) == n && s.roster.digest == digest {
		return s.roster.latest, s.roster.chain, nil
	}
	chain, err := s.store.RosterChain(ctx, s.genesis)
	if err != nil {
		return roster.Roster{}, nil, err
	}
	latest, latestDigest, err := roster.Latest(s.genesis, chain)
	if err != nil {
		s.log.Error("the stored roster chain does not verify from the pinned genesis; no approval counts", "genesis", s.genesis, "err", err)
		s.metrics.rosterBroken()
		return roster.Roster{}, nil, fmt.Errorf("%w: %v", ErrRosterBroken, err)
	}
	s.roster.chain, s.roster.latest, s.roster.digest = chain, latest, latestDigest
	s.metrics.rosterVersion(latest.Version)
	return latest, chain, nil
}

// current returns the roster in force, or nil before the genesis.
func (s *Service) current(ctx context.Context) (*roster.Roster, error) {
	r, _, err := s.Roster(ctx)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// maxProposals bounds a listing of proposals.
const maxProposals = 100

// ProposeRoster files the next roster version (by an admin, who can do no
// more): approvers, custodians, threshold and rule as given, numbered one
// after the version in force and linked to it. Before any version is
// adopted, the proposal must be the pinned genesis. Nothing changes until
// approvers sign it (SignRoster).
func (s *Service) ProposeRoster(ctx context.Context, by string, draft roster.Roster) (Proposal, error) {
	if err := validID("proposed_by", by); err != nil {
		return Proposal{}, err
	}
	cur, err := s.current(ctx)
	if err != nil {
		return Proposal{}, err
	}
	next := draft
	next.Version, next.Previous = 1, ""
	if cur != nil {
		next.Version = cur.Version + 1
		if next.Previous, err = cur.Digest(); err != nil {
			return Proposal{}, err
		}
	}
	if err := next.Validate(); err != nil {
		return Proposal{}, &ValidationError{Field: "roster", Reason: err.Error(), Code: "invalid_roster"}
	}
	canonical, err := next.Canonical()
	if err != nil {
		return Proposal{}, err
	}
	digest := roster.Digest(canonical)
	if cur == nil && digest != s.genesis {
		return Proposal{}, fmt.Errorf("%w: it is %s; the service pins %s", ErrNotGenesis, digest, s.genesis)
	}
	p := Proposal{Digest: digest, Roster: next, Canonical: canonical, ProposedBy: by, Changes: roster.Changes(cur, next)}
	rec := map[string]any{"kind": KindRosterProposal, "digest": digest, "version": next.Version, "previous": next.Previous,
		"proposed_by": by, "changes": p.Changes}
	if p, err = s.store.InsertRosterProposal(ctx, p, rec); err != nil {
		return Proposal{}, err
	}
	s.log.Info("roster version proposed", "roster_digest", digest, "roster_version", next.Version, "by", by)
	s.notify(ctx, Event{Type: EventRosterProposal, RosterVersion: next.Version, RosterDigest: digest, Status: "awaiting_signatures"})
	return s.weigh(ctx, p, cur)
}

// SignRoster records approverID's signature on the proposal with digest:
// with their key in the version in force (toward the quorum), or with
// their key in the proposal (proof of possession), whichever it verifies
// with. Once the signatures meet the rule and every new key has signed,
// the proposal is adopted as the next version.
func (s *Service) SignRoster(ctx context.Context, approverID, digest string, sig []byte) (Proposal, error) {
	p, err := s.store.RosterProposal(ctx, digest)
	if err != nil {
		return Proposal{}, err
	}
	cur, err := s.current(ctx)
	if err != nil {
		return Proposal{}, err
	}
	if next := nextVersion(cur); p.Roster.Version != next || (cur == nil && p.Digest != s.genesis) {
		// Adopted already, or out of line: a signature would change nothing.
		if p, err = s.weigh(ctx, p, cur); err != nil || p.Adopted {
			return p, err
		}
		return Proposal{}, ErrStaleProposal
	}
	var keys []roster.Approver
	if cur != nil {
		if a, ok := cur.Approver(approverID); ok {
			keys = append(keys, a)
		}
	}
	if a, ok := p.Roster.Approver(approverID); ok {
		keys = append(keys, a)
	}
	msg := roster.Message(digest, approverID)
	i := slices.IndexFunc(keys, func(a roster.Approver) bool { return ed25519.Verify(a.PublicKey, msg, sig) })
	if len(sig) != ed25519.SignatureSize || i < 0 {
		s.log.Warn("roster signature refused", "roster_digest", digest, "approver_id", approverID)
		return Proposal{}, ErrNotSigner
	}
	rs := roster.Signature{ApproverID: approverID, KeyID: keys[i].KeyID(), Signature: slices.Clone(sig)}
	if err := s.store.InsertRosterSignature(ctx, digest, rs); err != nil {
		return Proposal{}, err
	}
	s.log.Info("roster signature recorded", "roster_digest", digest, "approver_id", approverID, "key_id", rs.KeyID)
	if p, err = s.store.RosterProposal(ctx, digest); err != nil {
		return Proposal{}, err
	}
	return s.weigh(ctx, p, cur)
}

// weigh fills in a proposal's progress against cur and adopts it when it
// is complete and next in line.
func (s *Service) weigh(ctx context.Context, p Proposal, cur *roster.Roster) (Proposal, error) {
	curVersion := uint64(0)
	if cur != nil {
		curVersion = cur.Version
	}
	switch {
	case p.Roster.Version <= curVersion:
		if chainHas(s.roster.chainCopy(), p.Digest) {
			p.Adopted = true
		} else {
			p.Stale = true
		}
		return p, nil
	case p.Roster.Version > curVersion+1, cur == nil && p.Digest != s.genesis:
		// Out of line, or a first version of another genesis.
		p.Stale = true
		return p, nil
	}
	prog, err := roster.Check(cur, p.Roster, p.Signatures)
	if err != nil {
		return Proposal{}, fmt.Errorf("access: weigh roster proposal: %w", err)
	}
	p.Progress, p.Changes = prog, roster.Changes(cur, p.Roster)
	if !prog.Complete() {
		return p, nil
	}
	rec := map[string]any{"kind": KindRosterVersion, "version": p.Roster.Version, "digest": p.Digest, "previous": p.Roster.Previous,
		"roster": p.Roster, "signers": prog.Signers, "proof_of_possession": prog.Possession, "changes": p.Changes}
	if _, err := s.store.AdoptRoster(ctx, s.genesis, p.Roster.Version, p.Digest, rec); err != nil {
		if errors.Is(err, ErrStaleProposal) {
			p.Stale = true
			return p, nil
		}
		return Proposal{}, err
	}
	p.Adopted = true
	s.log.Info("roster version adopted", "roster_digest", p.Digest, "roster_version", p.Roster.Version, "signers", prog.Signers)
	if _, _, err := s.Roster(ctx); err != nil {
		return Proposal{}, err
	}
	s.notify(ctx, Event{Type: EventRosterAdopted, RosterVersion: p.Roster.Version, RosterDigest: p.Digest, Status: "adopted"})
	return p, nil
}

func (c *rosterCache) chainCopy() []roster.Signed {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.chain
}

func chainHas(chain []roster.Signed, digest string) bool {
	return slices.ContainsFunc(chain, func(s roster.Signed) bool { return roster.Digest(s.Roster) == digest })
}

// RosterProposal returns a proposal with its progress.
func (s *Service) RosterProposal(ctx context.Context, digest string) (Proposal, error) {
	if !roster.ValidDigest(digest) {
		return Proposal{}, ErrNotFound
	}
	p, err := s.store.RosterProposal(ctx, digest)
	if err != nil {
		return Proposal{}, err
	}
	cur, err := s.current(ctx)
	if err != nil {
		return Proposal{}, err
	}
	return s.weigh(ctx, p, cur)
}

// RosterProposals lists the proposals, newest first, with their progress.
func (s *Service) RosterProposals(ctx context.Context) ([]Proposal, error) {
	ps, err := s.store.RosterProposals(ctx, maxProposals)
	if err != nil {
		return nil, err
	}
	cur, err := s.current(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Proposal, 0, len(ps))
	for _, p := range ps {
		if p, err = s.weigh(ctx, p, cur); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// Genesis is the pinned digest of the roster's first version.
func (s *Service) Genesis() string { return s.genesis }

// nextVersion is the number the next version takes after cur (nil before
// the genesis).
func nextVersion(cur *roster.Roster) uint64 {
	if cur == nil {
		return 1
	}
	return cur.Version + 1
}

package governance

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/mediatorhq/mediator/invalid"
	"github.com/mediatorhq/mediator/redact"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/wire"
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

// ProposalStore keeps proposals and the signatures they gathered.
type ProposalStore interface {
	// InsertRosterProposal keeps a proposal with its roster.proposal audit
	// entry; a proposal with the same digest is kept once.
	InsertRosterProposal(ctx context.Context, p Proposal, record any) (Proposal, error)
	// InsertRosterSignature keeps a verified signature with its
	// roster.signature audit entry; the same one again is no change.
	InsertRosterSignature(ctx context.Context, digest string, s roster.Signature) error
	// RosterProposal returns a proposal and its signatures; ErrNotFound.
	RosterProposal(ctx context.Context, digest string) (Proposal, error)
	// RosterProposals lists proposals newest first.
	RosterProposals(ctx context.Context, limit int) ([]Proposal, error)
}

// ChainStore keeps the adopted versions.
type ChainStore interface {
	// AdoptRoster makes the proposal with digest version n of the chain,
	// with its roster.version audit entry; ErrStaleProposal if version n
	// exists.
	AdoptRoster(ctx context.Context, genesis string, version uint64, digest string, record any) (int64, error)
	// RosterChain returns the versions adopted from genesis in order,
	// with every signature kept for each.
	RosterChain(ctx context.Context, genesis string) ([]roster.Signed, error)
	// RosterVersion returns the number and digest of the newest version
	// adopted from genesis, 0 and "" when there is none.
	RosterVersion(ctx context.Context, genesis string) (uint64, string, error)
}

// maxProposals bounds a listing of proposals.
const maxProposals = 100

// maxIDLen bounds who proposes: ids are embedded in log records.
const maxIDLen = 128

// ProposeRoster files the next roster version (by an admin, who can do no
// more): approvers, custodians, threshold and rule as given, numbered one
// after the version in force and linked to it. Before any version is
// adopted, the proposal must be the pinned genesis. Nothing changes until
// approvers sign it (SignRoster).
func (s *Service) ProposeRoster(ctx context.Context, by string, draft roster.Roster) (Proposal, error) {
	if by == "" || len(by) > maxIDLen || !redact.Printable(by) {
		return Proposal{}, invalid.Input("proposed_by", fmt.Sprintf("must be 1–%d printable characters", maxIDLen))
	}
	cur, err := s.Current(ctx)
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
		return Proposal{}, invalid.Coded("invalid_roster", "roster", err.Error())
	}
	canonical, err := next.Canonical()
	if err != nil {
		return Proposal{}, err
	}
	digest := roster.Digest(canonical)
	if cur == nil && digest != s.genesis {
		return Proposal{}, &NotGenesisError{Proposed: digest, Pinned: s.genesis}
	}
	p := Proposal{Digest: digest, Roster: next, Canonical: canonical, ProposedBy: by, Changes: roster.Changes(cur, next)}
	rec := map[string]any{"kind": KindRosterProposal, "digest": digest, "version": next.Version, "previous": next.Previous,
		"proposed_by": by, "changes": p.Changes}
	if p, err = s.proposals.InsertRosterProposal(ctx, p, rec); err != nil {
		return Proposal{}, err
	}
	s.log.Info("roster version proposed", "roster_digest", digest, "roster_version", next.Version, "by", by)
	s.notify(ctx, wire.Event{Type: wire.EventRosterProposal, RosterVersion: next.Version, RosterDigest: digest, Status: "awaiting_signatures"})
	return s.weigh(ctx, p, cur)
}

// SignRoster records approverID's signature on the proposal with digest:
// with their key in the version in force (toward the quorum), or with
// their key in the proposal (proof of possession), whichever it verifies
// with. Once the signatures meet the rule and every new key has signed,
// the proposal is adopted as the next version.
func (s *Service) SignRoster(ctx context.Context, approverID, digest string, sig []byte) (Proposal, error) {
	p, cur, err := s.proposalAndCurrent(ctx, digest)
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
		if a, ok := cur.Member(approverID); ok {
			keys = append(keys, a)
		}
	}
	if a, ok := p.Roster.Member(approverID); ok {
		keys = append(keys, a)
	}
	msg := roster.Message(digest, approverID)
	i := slices.IndexFunc(keys, func(a roster.Approver) bool { return ed25519.Verify(a.PublicKey, msg, sig) })
	if len(sig) != ed25519.SignatureSize || i < 0 {
		s.log.Warn("roster signature refused", "roster_digest", digest, "approver_id", approverID)
		return Proposal{}, ErrNotSigner
	}
	rs := roster.Signature{ApproverID: approverID, KeyID: keys[i].KeyID(), Signature: slices.Clone(sig)}
	if err := s.proposals.InsertRosterSignature(ctx, digest, rs); err != nil {
		return Proposal{}, err
	}
	s.log.Info("roster signature recorded", "roster_digest", digest, "approver_id", approverID, "key_id", rs.KeyID)
	if p, err = s.proposals.RosterProposal(ctx, digest); err != nil {
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
		if chainHas(s.cache.snapshot(), p.Digest) {
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
		return Proposal{}, fmt.Errorf("governance: weigh roster proposal: %w", err)
	}
	p.Progress, p.Changes = prog, roster.Changes(cur, p.Roster)
	if !prog.Complete() {
		return p, nil
	}
	return s.adopt(ctx, p)
}

// adopt makes the complete proposal p the next version of the chain, with
// its roster.version audit entry, and reads the chain back verified. A
// proposal whose number another version took meanwhile comes back Stale.
func (s *Service) adopt(ctx context.Context, p Proposal) (Proposal, error) {
	rec := map[string]any{"kind": KindRosterVersion, "version": p.Roster.Version, "digest": p.Digest, "previous": p.Roster.Previous,
		"roster": p.Roster, "signers": p.Progress.Signers, "proof_of_possession": p.Progress.Possession, "changes": p.Changes}
	if _, err := s.chain.AdoptRoster(ctx, s.genesis, p.Roster.Version, p.Digest, rec); err != nil {
		if errors.Is(err, ErrStaleProposal) {
			p.Stale = true
			return p, nil
		}
		return Proposal{}, err
	}
	p.Adopted = true
	s.log.Info("roster version adopted", "roster_digest", p.Digest, "roster_version", p.Roster.Version, "signers", p.Progress.Signers)
	if _, _, err := s.Roster(ctx); err != nil {
		return Proposal{}, err
	}
	s.notify(ctx, wire.Event{Type: wire.EventRosterAdopted, RosterVersion: p.Roster.Version, RosterDigest: p.Digest, Status: "adopted"})
	return p, nil
}

func chainHas(chain []roster.Signed, digest string) bool {
	return slices.ContainsFunc(chain, func(s roster.Signed) bool { return roster.Digest(s.Roster) == digest })
}

// RosterProposal returns a proposal with its progress.
func (s *Service) RosterProposal(ctx context.Context, digest string) (Proposal, error) {
	p, cur, err := s.proposalAndCurrent(ctx, digest)
	if err != nil {
		return Proposal{}, err
	}
	return s.weigh(ctx, p, cur)
}

// proposalAndCurrent reads the proposal with digest (ErrNotFound for a
// digest of the wrong form) and the roster in force.
func (s *Service) proposalAndCurrent(ctx context.Context, digest string) (Proposal, *roster.Roster, error) {
	if !roster.ValidDigest(digest) {
		return Proposal{}, nil, ErrNotFound
	}
	p, err := s.proposals.RosterProposal(ctx, digest)
	if err != nil {
		return Proposal{}, nil, err
	}
	cur, err := s.Current(ctx)
	if err != nil {
		return Proposal{}, nil, err
	}
	return p, cur, nil
}

// RosterProposals lists the proposals, newest first, with their progress.
func (s *Service) RosterProposals(ctx context.Context) ([]Proposal, error) {
	ps, err := s.proposals.RosterProposals(ctx, maxProposals)
	if err != nil {
		return nil, err
	}
	cur, err := s.Current(ctx)
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

// nextVersion is the number the next version takes after cur (nil before
// the genesis).
func nextVersion(cur *roster.Roster) uint64 {
	if cur == nil {
		return 1
	}
	return cur.Version + 1
}

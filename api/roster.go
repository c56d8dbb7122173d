package api

import (
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/mediatorhq/mediator/access"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/wire"
)

// retiredApprovers answers the retired single-admin approver registry
// (/v1/approvers...): 410, naming the roster flow that replaced it.
func (s *server) retiredApprovers(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusGone, codeRosterRequired,
		"approvers are no longer registered by one admin: an admin proposes a roster version (mediator roster propose, POST /v1/roster/proposals) "+
			"and a quorum of approvers signs it (mediator roster sign); see docs/access.md")
}

// rosterChain is GET /v1/roster: the chain from the pinned genesis.
func (s *server) rosterChain(w http.ResponseWriter, r *http.Request) {
	cur, chain, err := s.access.Roster(r.Context())
	if err != nil {
		s.accessError(w, r, "roster read", err)
		return
	}
	writeJSON(w, http.StatusOK, wire.RosterChain{Genesis: s.access.Genesis(), Version: cur.Version,
		Digest: roster.Digest(chain[len(chain)-1].Roster), Chain: chain})
}

// proposeRoster is POST /v1/roster/proposals (admin).
func (s *server) proposeRoster(w http.ResponseWriter, r *http.Request) {
	var b wire.RosterDraft
	if !decodeJSON(w, r, &b) {
		return
	}
	p, err := s.access.ProposeRoster(r.Context(), caller(r), roster.Roster{Approvers: b.Approvers, Custodians: b.Custodians,
		Threshold: b.Threshold, Rule: b.Rule})
	if err != nil {
		s.accessError(w, r, "roster proposal", err)
		return
	}
	writeJSON(w, http.StatusCreated, proposalView(p))
}

// rosterProposals is GET /v1/roster/proposals.
func (s *server) rosterProposals(w http.ResponseWriter, r *http.Request) {
	ps, err := s.access.RosterProposals(r.Context())
	if err != nil {
		s.accessError(w, r, "roster proposals", err)
		return
	}
	out := wire.RosterProposalList{Proposals: make([]wire.RosterProposal, 0, len(ps))}
	for _, p := range ps {
		out.Proposals = append(out.Proposals, proposalView(p))
	}
	writeJSON(w, http.StatusOK, out)
}

// rosterProposal is GET /v1/roster/proposals/{digest}.
func (s *server) rosterProposal(w http.ResponseWriter, r *http.Request) {
	p, err := s.access.RosterProposal(r.Context(), chi.URLParam(r, "digest"))
	if err != nil {
		s.accessError(w, r, "roster proposal", err)
		return
	}
	writeJSON(w, http.StatusOK, proposalView(p))
}

// signRoster is POST /v1/roster/proposals/{digest}/signatures (approver).
func (s *server) signRoster(w http.ResponseWriter, r *http.Request) {
	var b wire.RosterSignature
	if !decodeJSON(w, r, &b) {
		return
	}
	digest := chi.URLParam(r, "digest")
	if !roster.ValidDigest(digest) {
		s.accessError(w, r, "roster signature", access.ErrNotFound)
		return
	}
	p, err := s.access.SignRoster(r.Context(), caller(r), digest, b.Signature)
	if err != nil {
		s.accessError(w, r, "roster signature", err)
		return
	}
	writeJSON(w, http.StatusOK, proposalView(p))
}

// checkin is POST /v1/roster/checkins (approver).
func (s *server) checkin(w http.ResponseWriter, r *http.Request) {
	var b wire.Checkin
	if !decodeJSON(w, r, &b) {
		return
	}
	c, err := s.access.Checkin(r.Context(), caller(r), b.At, b.Signature)
	if err != nil {
		s.accessError(w, r, "check-in", err)
		return
	}
	writeJSON(w, http.StatusCreated, wire.CheckinAnswer{ApproverID: c.ApproverID, KeyID: c.KeyID, At: c.At})
}

func proposalView(p access.Proposal) wire.RosterProposal {
	status := "awaiting_signatures"
	switch {
	case p.Adopted:
		status = "adopted"
	case p.Stale:
		status = "stale"
	}
	orEmpty := func(s []string) []string {
		if s == nil {
			return []string{}
		}
		return s
	}
	sigs := p.Signatures
	if sigs == nil {
		sigs = []roster.Signature{}
	}
	return wire.RosterProposal{Digest: p.Digest, Version: p.Roster.Version, Previous: p.Roster.Previous, Canonical: p.Canonical,
		Roster: p.Roster, ProposedBy: p.ProposedBy, ProposedAt: p.ProposedAt.UTC().Truncate(time.Microsecond), Status: status,
		Signatures: sigs, Signers: orEmpty(p.Progress.Signers), Possession: orEmpty(p.Progress.Possession),
		Missing: orEmpty(p.Progress.Missing), Changes: orEmpty(p.Changes), AuditSeq: p.AuditSeq}
}

package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/mediatorhq/mediator/governance"
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
	cur, chain, err := s.governance.Roster(r.Context())
	if err != nil {
		s.governanceError(w, r, "roster read", err)
		return
	}
	writeJSON(w, http.StatusOK, wire.RosterChain{Genesis: s.governance.Genesis(), Version: cur.Version,
		Digest: roster.Digest(chain[len(chain)-1].Roster), Chain: chain})
}

// proposeRoster is POST /v1/roster/proposals (admin).
func (s *server) proposeRoster(w http.ResponseWriter, r *http.Request) {
	var b wire.RosterDraft
	if !decodeJSON(w, r, &b) {
		return
	}
	p, err := s.governance.ProposeRoster(r.Context(), caller(r), roster.Roster{Approvers: b.Approvers, Custodians: b.Custodians,
		Threshold: b.Threshold, Rule: b.Rule, Pseudonym: b.Pseudonym, Log: b.Log})
	if err != nil {
		s.governanceError(w, r, "roster proposal", err)
		return
	}
	writeJSON(w, http.StatusCreated, proposalView(p))
}

// rosterProposals is GET /v1/roster/proposals.
func (s *server) rosterProposals(w http.ResponseWriter, r *http.Request) {
	ps, err := s.governance.RosterProposals(r.Context())
	if err != nil {
		s.governanceError(w, r, "roster proposals", err)
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
	p, err := s.governance.RosterProposal(r.Context(), chi.URLParam(r, "digest"))
	if err != nil {
		s.governanceError(w, r, "roster proposal", err)
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
	p, err := s.governance.SignRoster(r.Context(), caller(r), chi.URLParam(r, "digest"), b.Signature)
	if err != nil {
		s.governanceError(w, r, "roster signature", err)
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
	c, err := s.governance.Checkin(r.Context(), caller(r), b.At, b.Signature)
	if err != nil {
		s.governanceError(w, r, "check-in", err)
		return
	}
	writeJSON(w, http.StatusCreated, wire.CheckinAnswer{ApproverID: c.ApproverID, KeyID: c.KeyID, At: c.At})
}

func proposalView(p governance.Proposal) wire.RosterProposal {
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

// governanceError writes the answer for an error of the roster's
// workflow, or of the roster a lawful-access call depends on.
func (s *server) governanceError(w http.ResponseWriter, r *http.Request, what string, err error) {
	var ng *governance.NotGenesisError
	switch {
	case writeInvalid(w, err):
	case errors.As(err, &ng):
		writeError(w, http.StatusConflict, codeNotGenesis, ng.Error())
	case errors.Is(err, governance.ErrNotFound):
		writeError(w, http.StatusNotFound, codeNotFound, "no such request, roster version or proposal")
	case errors.Is(err, governance.ErrNoGenesis):
		s.logFailure(r, what, err)
		unavailable(w, "roster", "the service pins no roster genesis (--roster-genesis); no approver is trusted")
	case errors.Is(err, governance.ErrRosterBroken):
		s.logFailure(r, what, err)
		unavailable(w, "roster", "the stored roster chain does not verify from the pinned genesis; nothing that depends on approvers works until it is repaired")
	case errors.Is(err, governance.ErrStaleProposal):
		writeError(w, http.StatusConflict, codeStaleProposal, "another roster version was adopted first; propose again on top of it")
	case errors.Is(err, governance.ErrNotSigner):
		writeError(w, http.StatusUnprocessableEntity, codeBadSignature,
			"the signature verifies with no key of yours in the roster in force or the proposal, over "+roster.MessageFormat)
	case errors.Is(err, governance.ErrUnknownApprover):
		writeError(w, http.StatusForbidden, codeNotAnApprover, "your token's subject is not an approver of the roster in force")
	case errors.Is(err, governance.ErrBadSignature):
		writeError(w, http.StatusUnprocessableEntity, codeBadSignature,
			"the check-in signature does not verify with your key in the roster in force over "+roster.CheckinMessageFormat)
	case errors.Is(err, governance.ErrUnavailable):
		s.logFailure(r, what, err)
		unavailable(w, "access", "a dependency (database, policy or escrow) is unavailable; nothing was released")
	default:
		s.logFailure(r, what, err)
		writeError(w, http.StatusInternalServerError, codeInternal, what+" failed; quote request id "+RequestIDFrom(r.Context()))
	}
}

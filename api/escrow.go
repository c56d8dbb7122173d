package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/mediatorhq/mediator/escrow"
	"github.com/mediatorhq/mediator/shares"
	"github.com/mediatorhq/mediator/wire"
)

// Error codes of escrow.
const (
	codePlaintextKeyRefused = "plaintext_key_refused"
	codeDestroyed           = "destroyed"
	codeSetMismatch         = "custodian_set_mismatch"
	codeNotConfigured       = "escrow_not_configured"
)

// custodianSet is GET /v1/escrow/custodians: the set depositors seal to and
// its digest.
func (s *server) custodianSet(w http.ResponseWriter, r *http.Request) {
	set, digest, err := s.escrow.Set()
	if err != nil {
		s.escrowError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, wire.CustodianSet{Set: set, Digest: digest})
}

// depositBody is a deposit as sent. Key is declared only to recognise the
// retired body, which carried the plaintext key, and refuse it by name.
type depositBody struct {
	wire.DepositRequest
	Key json.RawMessage `json:"key"`
}

// depositKey is POST /v1/escrow/keys: 201 for a new escrow, 200 with the
// same body for the same commitment again, 409 for another key under the
// same id or one destroyed, 503 (nothing kept) when a custodian or the
// database is down.
func (s *server) depositKey(w http.ResponseWriter, r *http.Request) {
	var b depositBody
	if !decodeJSON(w, r, &b) {
		return
	}
	if b.Key != nil {
		clear(b.Key)
		writeError(w, http.StatusUnprocessableEntity, codePlaintextKeyRefused,
			"the mediator never takes a plaintext key: split and seal it on your side (client.Deposit, `mediator escrow deposit`) and send "+
				`{"conversation_id","key_id","commitment","custodian_set","threshold","shares":[{"custodian","index","sealed"}]}`+
				"; the custodian set is GET /v1/escrow/custodians",
			wire.FieldProblem{Field: "key", Reason: "is retired: deposits carry sealed shares, never the key"})
		return
	}
	d := b.DepositRequest
	req := escrow.DepositRequest{ConversationID: d.ConversationID, KeyID: d.KeyID, Commitment: d.Commitment,
		CustodianSet: d.CustodianSet, Threshold: d.Threshold, Depositor: caller(r),
		Binding: shares.Binding{EscrowID: d.EscrowID, DepositedAt: d.DepositedAt}}
	for _, sh := range d.Shares {
		req.Shares = append(req.Shares, shares.SealedShare{Custodian: sh.Custodian, Index: sh.Index, Sealed: sh.Sealed})
	}
	rec, created, err := s.escrow.Deposit(r.Context(), req)
	if err != nil {
		s.escrowError(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, wire.DepositResponse{EscrowID: rec.EscrowID, Threshold: rec.Threshold, Shares: len(rec.Custodians),
		Custodians: rec.Custodians, KeyCommitment: rec.KeyCommitment, AuditSeq: rec.AuditSeq, Receipts: rec.Shares})
}

// escrowError answers for an escrow error.
func (s *server) escrowError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case writeInvalid(w, err):
	case errors.Is(err, escrow.ErrConflict):
		writeError(w, http.StatusConflict, codeConflict, "this conversation and key id are escrowed with a different key")
	case errors.Is(err, escrow.ErrDestroyed):
		writeError(w, http.StatusConflict, codeDestroyed, "this conversation and key id were escrowed and destroyed at retention end; the id cannot be used again")
	case errors.Is(err, escrow.ErrSetMismatch):
		writeError(w, http.StatusConflict, codeSetMismatch, "the shares were sealed for another custodian set; fetch GET /v1/escrow/custodians and check it against the digest you pinned")
	case errors.Is(err, escrow.ErrNotConfigured):
		unavailableCode(w, codeNotConfigured, "custodian", "this mediator has no custodians configured (--custodians); nothing was kept")
	case errors.Is(err, escrow.ErrUnavailable):
		failed := escrow.FailedCustodians(err)
		if len(failed) == 0 {
			s.logFailure(r, "escrow deposit", err)
			unavailable(w, "custodian", "a custodian or the database is unavailable; nothing was kept")
			return
		}
		s.custodianFailure(w, r, "escrow deposit", failed, err)
	default:
		s.logFailure(r, "escrow deposit", err)
		writeError(w, http.StatusInternalServerError, codeInternal, "deposit failed; nothing was kept; quote request id "+RequestIDFrom(r.Context()))
	}
}

// custodianFailure is a dependency detail that names the custodian that
// failed: the first of custodians (all that failed, in set order) and its
// reason, which says what it answered or that it could not be reached,
// never an address, a token or a share.
type custodianFailure struct {
	Dependency string   `json:"dependency"`
	Custodian  string   `json:"custodian"`
	Reason     string   `json:"reason"`
	Custodians []string `json:"custodians"`
}

// custodianFailure answers 503 for what failed at the custodians named,
// and logs it with their names.
func (s *server) custodianFailure(w http.ResponseWriter, r *http.Request, what string, failed []*escrow.UnavailableError, err error) {
	d := custodianFailure{Dependency: "custodian", Custodian: failed[0].Custodian, Reason: failed[0].Reason}
	said := make([]string, len(failed))
	for i, f := range failed {
		d.Custodians = append(d.Custodians, f.Custodian)
		said[i] = f.Public()
	}
	if d.Reason == "" {
		d.Reason = "did not answer as it should"
	}
	s.log.Error(what+" failed", "request_id", RequestIDFrom(r.Context()), "custodian", d.Custodian, "reason", d.Reason,
		"custodians", d.Custodians, "err", err)
	w.Header().Set("Retry-After", "5")
	writeError(w, http.StatusServiceUnavailable, codeUnavailable, strings.Join(said, "; ")+"; nothing was kept", d)
}

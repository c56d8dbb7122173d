package api

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/mediatorhq/mediator/escrow"
	"github.com/mediatorhq/mediator/wire"
)

// depositKey is POST /v1/escrow/keys: 201 for a new escrow, 200 with the
// same body for the same key again, 409 for another key under the same id,
// 503 (nothing written) when a custodian or the database is down.
func (s *server) depositKey(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		writeError(w, http.StatusUnsupportedMediaType, codeUnsupportedMediaType, "Content-Type must be application/json")
		return
	}
	var body wire.DepositRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, codeBodyTooLarge, "request body too large")
			return
		}
		var corrupt base64.CorruptInputError
		if errors.As(err, &corrupt) {
			writeError(w, http.StatusUnprocessableEntity, codeValidationFailed, "key must be standard base64",
				wire.FieldProblem{Field: "key", Reason: "must be standard base64"})
			return
		}
		// The decoder's message could quote the key; say only what is wrong.
		writeError(w, http.StatusBadRequest, codeBadRequest, `body must be {"conversation_id","key_id","key"} with no other fields, the key in standard base64`)
		return
	}
	rec, created, err := s.escrow.Deposit(r.Context(), escrow.DepositRequest{ConversationID: body.ConversationID, KeyID: body.KeyID, Key: body.Key})
	clear(body.Key)
	var ve *escrow.ValidationError
	switch {
	case errors.As(err, &ve):
		writeError(w, http.StatusUnprocessableEntity, codeValidationFailed, ve.Field+" "+ve.Reason, wire.FieldProblem{Field: ve.Field, Reason: ve.Reason})
		return
	case errors.Is(err, escrow.ErrConflict):
		writeError(w, http.StatusConflict, codeConflict, "this conversation and key id are escrowed with a different key")
		return
	case errors.Is(err, escrow.ErrUnavailable):
		s.logFailure(r, "escrow deposit", err)
		unavailable(w, "custodian", "a custodian or the database is unavailable; nothing was kept")
		return
	case err != nil:
		s.logFailure(r, "escrow deposit", err)
		writeError(w, http.StatusInternalServerError, codeInternal, "deposit failed; nothing was kept; quote request id "+RequestIDFrom(r.Context()))
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, wire.DepositResponse{EscrowID: rec.EscrowID, Threshold: rec.Threshold, Shares: rec.Shares,
		Custodians: rec.Custodians, KeyCommitment: rec.KeyCommitment, AuditSeq: rec.AuditSeq})
}

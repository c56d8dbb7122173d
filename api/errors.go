package api

import (
	"errors"
	"net/http"

	"github.com/mediatorhq/mediator/wire"
)

// Error codes are part of the API contract: clients match on them, so a code
// once published keeps its meaning.
const (
	codeUnauthenticated      = "unauthenticated"
	codeForbidden            = "forbidden"
	codeNotFound             = "not_found"
	codeMethodNotAllowed     = "method_not_allowed"
	codeNotReady             = "not_ready"
	codeInternal             = "internal_error"
	codeBodyTooLarge         = "body_too_large"
	codeUnsupportedMediaType = "unsupported_media_type"
	codeBadRequest           = "bad_request"
	codeValidationFailed     = "validation_failed"
	codeUnavailable          = "dependency_unavailable"
	codeConflict             = "conflict"
	codeRateLimited          = "rate_limited"
	codeNotPublished         = "not_published"
	codeLogHalted            = "log_halted"
	codeNotReplicated        = "not_replicated"
)

// writeError writes the error envelope (wire.Error). message is for humans
// and must not contain secrets or internals; details are machine-readable
// specifics.
func writeError(w http.ResponseWriter, status int, code, message string, details ...any) {
	wire.WriteError(w, status, code, message, details...)
}

func writeJSON(w http.ResponseWriter, status int, v any) { wire.WriteJSON(w, status, v) }

// invalidInput is input that breaks a rule (*invalid.Error): the field at
// fault, why, and the rule's stable code.
type invalidInput interface {
	Invalid() (field, reason, code string)
}

// writeInvalid answers err 422 with its field problem if it is invalid
// input, and reports whether it was. Every handler's error mapping asks
// it first, so input errors are answered the same everywhere.
func writeInvalid(w http.ResponseWriter, err error) bool {
	var in invalidInput
	if !errors.As(err, &in) {
		return false
	}
	field, reason, code := in.Invalid()
	writeError(w, http.StatusUnprocessableEntity, code, field+" "+reason, wire.FieldProblem{Field: field, Reason: reason})
	return true
}

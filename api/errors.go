package api

import (
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
)

// writeError writes the error envelope (wire.Error). message is for humans
// and must not contain secrets or internals; details are machine-readable
// specifics.
func writeError(w http.ResponseWriter, status int, code, message string, details ...any) {
	wire.WriteError(w, status, code, message, details...)
}

func writeJSON(w http.ResponseWriter, status int, v any) { wire.WriteJSON(w, status, v) }

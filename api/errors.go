package api

import (
	"encoding/json"
	"net/http"
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

// errorBody is the one error shape every endpoint returns:
// {"error":{"code":"...","message":"...","details":[...]}}.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Details []any  `json:"details"`
}

// writeError writes the error envelope. message is for humans and must not
// contain secrets or internals; details are machine-readable specifics.
func writeError(w http.ResponseWriter, status int, code, message string, details ...any) {
	if details == nil {
		details = []any{}
	}
	writeJSON(w, status, errorBody{Error: errorDetail{Code: code, Message: message, Details: details}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

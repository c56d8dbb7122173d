package wire

import (
	"encoding/json"
	"net/http"
)

// WriteJSON writes v as the JSON body of a status answer, HTML characters
// unescaped (bodies carry base64 and signed notes, never markup), and
// tells browsers not to sniff another type.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// WriteError writes the one error envelope, Error, with status. code is
// stable and machine-readable; message is for people and must hold no
// secret and no internals; details are specifics a client may act on
// (never nil on the wire: an empty list when there are none).
func WriteError(w http.ResponseWriter, status int, code, message string, details ...any) {
	if details == nil {
		details = []any{}
	}
	WriteJSON(w, status, Error{Error: ErrorDetail{Code: code, Message: message, Details: details}})
}

package api

import (
	"context"
	"errors"
	"io"
	"net/http"

	"github.com/mediatorhq/mediator/audit"
	"github.com/mediatorhq/mediator/ingest"
	"github.com/mediatorhq/mediator/redact"
	"github.com/mediatorhq/mediator/wire"
)

// Ingester takes request bodies of events into the log (ingest.Service).
type Ingester interface {
	Ingest(ctx context.Context, submitter string, body []byte, format ingest.Format, atomic bool) (ingest.Result, error)
}

// ingestEvents is POST /v1/events: the body goes to ingest, which answers
// after the commit.
func (s *server) ingestEvents(w http.ResponseWriter, r *http.Request) {
	format, err := ingest.ParseContentType(r.Header.Get("Content-Type"))
	if err != nil {
		writeError(w, http.StatusUnsupportedMediaType, codeUnsupportedMediaType, "Content-Type must be application/json or application/x-ndjson")
		return
	}
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	// Event ids are namespaced by the caller: the token's subject.
	p, _ := PrincipalFrom(r.Context())
	res, err := s.ingest.Ingest(r.Context(), p.Subject, body, format, r.URL.Query().Get("atomic") == "true")
	if err != nil {
		s.ingestError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ingestView(res))
}

// readBody reads the whole (size-limited) body, answering 413 or 400 when
// it cannot.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(r.Body)
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		writeError(w, http.StatusRequestEntityTooLarge, codeBodyTooLarge, "request body too large")
		return nil, false
	case err != nil:
		writeError(w, http.StatusBadRequest, codeBadRequest, "could not read the request body")
		return nil, false
	}
	return body, true
}

// ingestError answers for an ingest failure.
func (s *server) ingestError(w http.ResponseWriter, r *http.Request, err error) {
	var refused *ingest.RefusedError
	var conflict *ingest.ConflictError
	switch {
	case errors.As(err, &conflict):
		details := make([]any, len(conflict.Problems))
		for i, p := range conflict.Problems {
			details[i] = wireProblem(p)
		}
		writeError(w, http.StatusConflict, ingest.CodeEventIDConflict,
			"an event_id you already sent comes with different content; nothing of this request was written", details...)
	case errors.As(err, &refused):
		details := make([]any, len(refused.Problems))
		for i, p := range refused.Problems {
			details[i] = wireProblem(p)
		}
		writeError(w, http.StatusUnprocessableEntity, refused.Code, refused.Message, details...)
	case errors.Is(err, audit.ErrHalted):
		s.logFailure(r, "ingest", err)
		unavailableCode(w, codeLogHalted, "postgres",
			"the audit log is halted: its database lost entries that were signed, and an operator must recover them; nothing was acknowledged")
	default:
		s.logFailure(r, "ingest", err)
		unavailable(w, "postgres", "the audit log is unavailable; nothing was acknowledged")
	}
}

func ingestView(res ingest.Result) wire.IngestResponse {
	out := wire.IngestResponse{Accepted: res.Accepted, Duplicates: res.Duplicates, FirstSeq: res.FirstSeq, LastSeq: res.LastSeq,
		Rejected: res.Rejected, Problems: make([]wire.Problem, len(res.Problems))}
	for i, p := range res.Problems {
		out.Problems[i] = wireProblem(p)
	}
	return out
}

func wireProblem(p redact.Problem) wire.Problem {
	return wire.Problem{Index: p.Index, Path: p.Path, Code: p.Code, Message: p.Message}
}

// unavailable answers 503 naming the dependency, with Retry-After.
func unavailable(w http.ResponseWriter, dependency, msg string) {
	unavailableCode(w, codeUnavailable, dependency, msg)
}

// unavailableCode is unavailable with a code of its own.
func unavailableCode(w http.ResponseWriter, code, dependency, msg string, details ...any) {
	w.Header().Set("Retry-After", "5")
	writeError(w, http.StatusServiceUnavailable, code, msg, append([]any{map[string]string{"dependency": dependency}}, details...)...)
}

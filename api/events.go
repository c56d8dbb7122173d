package api

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/mediatorhq/mediator/audit"
	"github.com/mediatorhq/mediator/redact"
)

// Ingest limits (contract: up to 10,000 events or 8 MiB per request).
const (
	maxEventsPerRequest = 10000
	maxEventsBody       = 8 << 20
)

// Log is the audit log as the API uses it.
type Log interface {
	Append(ctx context.Context, entries []audit.Entry) ([]audit.Appended, error)
	Entry(ctx context.Context, seq int64) (audit.StoredEntry, error)
	Search(ctx context.Context, q audit.Query) ([]audit.StoredEntry, error)
	InclusionProof(ctx context.Context, seq, treeSize int64) (tlog.RecordProof, error)
	ConsistencyProof(ctx context.Context, from, to int64) (tlog.TreeProof, error)
	LatestCheckpoint(ctx context.Context) (audit.Checkpoint, error)
	WriteBundle(ctx context.Context, w io.Writer, q audit.Query) (int, error)
}

// PseudonymSource supplies the current pseudonymization key.
type PseudonymSource interface {
	Current(ctx context.Context) (redact.PseudonymKey, error)
}

// ingestResponse is the contract's response, plus what was refused.
type ingestResponse struct {
	Accepted   int              `json:"accepted"`
	Duplicates int              `json:"duplicates"`
	FirstSeq   *int64           `json:"first_seq"`
	LastSeq    *int64           `json:"last_seq"`
	Rejected   int              `json:"rejected"`
	Problems   []redact.Problem `json:"problems"`
}

// ingestEvents is POST /v1/events: decode strictly, minimize, append the
// valid events in one transaction, answer after the commit.
func (s *server) ingestEvents(w http.ResponseWriter, r *http.Request) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || (mt != "application/json" && mt != "application/x-ndjson") {
		writeError(w, http.StatusUnsupportedMediaType, codeUnsupportedMediaType,
			"Content-Type must be application/json or application/x-ndjson")
		return
	}
	atomic := r.URL.Query().Get("atomic") == "true"
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, codeBodyTooLarge, "request body exceeds 8 MiB")
			return
		}
		writeError(w, http.StatusBadRequest, codeBadRequest, "could not read the request body")
		return
	}
	raws, bodyProblem := redact.SplitBatch(body, mt == "application/x-ndjson", maxEventsPerRequest)
	if bodyProblem != nil {
		s.metrics.eventsRejected.WithLabelValues(bodyProblem.Code).Inc()
		writeError(w, http.StatusUnprocessableEntity, problemCode([]redact.Problem{*bodyProblem}), bodyProblem.Message, *bodyProblem)
		return
	}
	key, err := s.pseudonyms.Current(r.Context())
	if err != nil {
		s.log.Error("pseudonym key unavailable; refusing ingest", "request_id", RequestIDFrom(r.Context()), "err", err)
		unavailable(w, "vault", "the pseudonymization key is unavailable; nothing was written")
		return
	}
	now := time.Now()
	minimizer := redact.NewMinimizer(s.profile, key)
	var problems []redact.Problem
	entries := make([]audit.Entry, 0, len(raws))
	records := make([]*redact.Record, 0, len(raws))
	for i, raw := range raws {
		ev, probs := redact.DecodeEvent(i, raw)
		if probs == nil {
			var rec *redact.Record
			rec, probs = minimizer.Minimize(i, ev, now)
			if probs == nil {
				entries = append(entries, audit.Entry{Kind: rec.Kind, EventID: rec.EventID,
					ConversationID: rec.ConversationID, OccurredAt: rec.Occurred, Record: rec})
				records = append(records, rec)
				continue
			}
		}
		problems = append(problems, probs...)
		s.metrics.eventsRejected.WithLabelValues(probs[0].Code).Inc()
	}
	if len(problems) > 0 && (atomic || len(entries) == 0) {
		msg := "no event was accepted"
		if atomic {
			msg = "atomic request refused: at least one event is invalid; nothing was written"
		}
		details := make([]any, len(problems))
		for i, p := range problems {
			details[i] = p
		}
		writeError(w, http.StatusUnprocessableEntity, problemCode(problems), msg, details...)
		return
	}
	start := time.Now()
	appended, err := s.auditLog.Append(r.Context(), entries)
	s.metrics.appendLatency.Observe(time.Since(start).Seconds())
	if err != nil {
		s.log.Error("append failed; nothing acknowledged", "request_id", RequestIDFrom(r.Context()), "err", err)
		unavailable(w, "postgres", "the audit log is unavailable; nothing was acknowledged")
		return
	}
	resp := ingestResponse{Rejected: countEvents(problems), Problems: problems}
	if resp.Problems == nil {
		resp.Problems = []redact.Problem{}
	}
	for i, a := range appended {
		if a.Duplicate {
			resp.Duplicates++
			s.metrics.eventsDuplicate.Inc()
		} else {
			resp.Accepted++
			rec := records[i]
			s.metrics.eventsAccepted.WithLabelValues(rec.Kind, rec.Transport, rec.Status).Inc()
			if s.tally != nil {
				s.tally.Count(rec)
			}
			if rec.Downgrade != nil {
				s.metrics.downgrades.WithLabelValues(rec.Downgrade.From, rec.Downgrade.To).Inc()
			}
			// A new entry at seq n means the tree has at least n+1 leaves; a
			// duplicate's seq says nothing about the tree now.
			s.metrics.treeSizeSeen(a.Seq + 1)
		}
		if resp.FirstSeq == nil || a.Seq < *resp.FirstSeq {
			seq := a.Seq
			resp.FirstSeq = &seq
		}
		if resp.LastSeq == nil || a.Seq > *resp.LastSeq {
			seq := a.Seq
			resp.LastSeq = &seq
		}
	}
	s.log.LogAttrs(r.Context(), slog.LevelDebug, "events ingested",
		slog.String("request_id", RequestIDFrom(r.Context())),
		slog.Int("accepted", resp.Accepted), slog.Int("duplicates", resp.Duplicates), slog.Int("rejected", resp.Rejected))
	writeJSON(w, http.StatusOK, resp)
}

// problemCode is the error code for a refused request: content_not_accepted
// if any event carried content, else validation_failed.
func problemCode(ps []redact.Problem) string {
	for _, p := range ps {
		if p.Code == redact.CodeContentNotAccepted {
			return redact.CodeContentNotAccepted
		}
	}
	return codeValidationFailed
}

func countEvents(ps []redact.Problem) int {
	seen := map[int]bool{}
	for _, p := range ps {
		seen[p.Index] = true
	}
	return len(seen)
}

// unavailable answers 503 naming the dependency, with Retry-After.
func unavailable(w http.ResponseWriter, dependency, msg string) {
	w.Header().Set("Retry-After", "5")
	writeError(w, http.StatusServiceUnavailable, codeUnavailable, msg, map[string]string{"dependency": dependency})
}

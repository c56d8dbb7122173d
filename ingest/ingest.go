// Package ingest takes delivery metadata into the audit log. A request body
// is decoded strictly and minimized (redact): identifiers arrive as
// pseudonyms the gateway's side computed, and the service holds no key
// that makes or reverses one; the valid events are appended in one group-committed
// transaction (audit), and once committed they are counted for the SOC view
// and the metrics. Ingest answers only after the commit, so an event it
// reports accepted is durable. Nothing here knows HTTP.
package ingest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"slices"
	"time"

	"github.com/mediatorhq/mediator/audit"
	"github.com/mediatorhq/mediator/redact"
)

// Limits of one request (ARCHITECTURE.md: up to 10,000 events or 8 MiB).
const (
	MaxEvents    = 10000
	MaxBodyBytes = 8 << 20
)

// Format is how a body carries its events.
type Format int

// The two formats.
const (
	// JSON is {"events":[...]} (application/json).
	JSON Format = iota
	// NDJSON is one event per line (application/x-ndjson).
	NDJSON
)

// ErrUnsupportedType: the content type is neither format.
var ErrUnsupportedType = errors.New("ingest: Content-Type must be application/json or application/x-ndjson")

// ParseContentType returns the format a Content-Type header names.
func ParseContentType(header string) (Format, error) {
	mt, _, err := mime.ParseMediaType(header)
	switch {
	case err != nil:
		return 0, ErrUnsupportedType
	case mt == "application/json":
		return JSON, nil
	case mt == "application/x-ndjson":
		return NDJSON, nil
	}
	return 0, ErrUnsupportedType
}

// Appender is the audit log as ingest uses it (audit.Log).
type Appender interface {
	Append(ctx context.Context, entries []audit.Entry) ([]audit.Appended, error)
}

// Counter counts committed records for the SOC view (stats.Tally).
type Counter interface {
	Count(r *redact.Record)
}

// Config configures a Service.
type Config struct {
	Log     Appender
	Profile redact.Profile
	// Tally, if set, counts every committed record.
	Tally  Counter
	Logger *slog.Logger
	// Metrics, if set, counts accepted, duplicate and refused events.
	Metrics *Metrics
}

// Service ingests request bodies. It is safe for concurrent use.
type Service struct {
	log     Appender
	profile redact.Profile
	tally   Counter
	logger  *slog.Logger
	metrics *Metrics
	now     func() time.Time
}

// New returns a Service.
func New(cfg Config) *Service {
	s := &Service{log: cfg.Log, profile: cfg.Profile, tally: cfg.Tally, logger: cfg.Logger,
		metrics: cfg.Metrics, now: time.Now}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	return s
}

// Result is what became of a request's events.
type Result struct {
	Accepted   int
	Duplicates int
	// FirstSeq and LastSeq bound the seqs of the accepted and duplicate
	// events; nil when there were none.
	FirstSeq, LastSeq *int64
	// Rejected counts refused events; Problems says why, event by event.
	Rejected int
	Problems []redact.Problem
}

// RefusedError: nothing was written, because the body itself is unusable,
// no event is valid, or the request was atomic and one event is not.
type RefusedError struct {
	// Code is content_not_accepted if any event carried content, else
	// validation_failed.
	Code     string
	Message  string
	Problems []redact.Problem
}

func (e *RefusedError) Error() string { return "ingest: " + e.Message }

// ConflictError: nothing of the request was written, because the submitter
// already sent an event with the same event_id and a different record (or
// the request holds one id twice with different records). Problems name
// the events, with code event_id_conflict.
type ConflictError struct {
	Problems []redact.Problem
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("ingest: %d events reuse an event_id with different content; nothing was written", len(e.Problems))
}

// CodeEventIDConflict: an event id the submitter already used, with
// different content.
const CodeEventIDConflict = "event_id_conflict"

// The refusal codes.
const (
	CodeValidationFailed   = "validation_failed"
	CodeContentNotAccepted = redact.CodeContentNotAccepted
	// CodeIdentifierInOpaqueField: client.version looks like a phone
	// number or an email address.
	CodeIdentifierInOpaqueField = redact.CodeIdentifierInOpaqueField
	// CodeNotAPseudonym: an identifier field is not a pseudonym.
	CodeNotAPseudonym = redact.CodeNotAPseudonym
)

// ErrLogUnavailable: the append failed; nothing was acknowledged.
var ErrLogUnavailable = errors.New("ingest: the audit log is unavailable; nothing was acknowledged")

// Ingest decodes body, minimizes its valid events and appends them in one
// transaction, returning after the commit. atomic refuses the whole body if
// any event is invalid. It returns a *RefusedError when nothing was
// written for a reason in the body, and ErrLogUnavailable (wrapping the
// cause) when the log failed.
//
// Event ids are unique per submitter, the authenticated subject that sent
// the request, which each record carries: a resend of the same event is a
// duplicate reporting its original seq, and a resend with different content
// is a *ConflictError, never a silent duplicate.
func (s *Service) Ingest(ctx context.Context, submitter string, body []byte, format Format, atomic bool) (Result, error) {
	events, problems, bodyProblem := redact.DecodeBatch(body, format == NDJSON, MaxEvents)
	if bodyProblem == nil {
		// Refused before any event is minimized: what a request makes
		// the service hold grows with its recipients.
		bodyProblem = redact.CountRecipients(events, s.profile.MaxRecipientsPerRequest)
	}
	if bodyProblem != nil {
		s.metrics.rejected(bodyProblem.Code)
		return Result{}, refused([]redact.Problem{*bodyProblem}, bodyProblem.Message)
	}
	now := s.now()
	minimizer := redact.NewMinimizer(s.profile, submitter)
	entries := make([]audit.Entry, 0, len(events))
	records := make([]*redact.Record, 0, len(events))
	// entries[i] is event indexes[i], for the problems of a conflict.
	indexes := make([]int, 0, len(events))
	refusedAt := -1 // the index whose problems were counted last
	for _, p := range problems {
		if p.Index != refusedAt {
			s.metrics.rejected(p.Code)
			refusedAt = p.Index
		}
	}
	for i, ev := range events {
		if ev == nil {
			continue
		}
		rec, probs := minimizer.Minimize(i, ev, now)
		if probs != nil {
			problems = append(problems, probs...)
			s.metrics.rejected(probs[0].Code)
			continue
		}
		entries = append(entries, audit.Entry{Kind: rec.Kind, EventID: rec.EventID, Submitter: submitter,
			ConversationID: rec.ConversationID, OccurredAt: rec.Occurred, Record: rec})
		records = append(records, rec)
		indexes = append(indexes, i)
	}
	// Problems in the order of the events, as one pass would have found them.
	slices.SortStableFunc(problems, func(a, b redact.Problem) int { return cmp.Compare(a.Index, b.Index) })
	if len(problems) > 0 && (atomic || len(entries) == 0) {
		msg := "no event was accepted"
		if atomic {
			msg = "atomic request refused: at least one event is invalid; nothing was written"
		}
		return Result{}, refused(problems, msg)
	}
	appended, err := s.log.Append(ctx, entries)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %v", ErrLogUnavailable, err)
	}
	var conflicts []redact.Problem
	for i, a := range appended {
		if a.Conflict {
			conflicts = append(conflicts, redact.Problem{Index: indexes[i], Path: "$.event_id", Code: CodeEventIDConflict,
				Message: "you already sent this event_id with different content; nothing of this request was written"})
		}
	}
	if conflicts != nil {
		s.metrics.rejected(CodeEventIDConflict)
		return Result{}, &ConflictError{Problems: conflicts}
	}
	res := Result{Rejected: redact.CountEvents(problems), Problems: problems}
	for i, a := range appended {
		if a.Duplicate {
			res.Duplicates++
		} else {
			res.Accepted++
			s.counted(records[i])
		}
		if res.FirstSeq == nil || a.Seq < *res.FirstSeq {
			res.FirstSeq = &a.Seq
		}
		if res.LastSeq == nil || a.Seq > *res.LastSeq {
			res.LastSeq = &a.Seq
		}
	}
	s.metrics.duplicates(res.Duplicates)
	return res, nil
}

// counted records a newly committed record in the SOC tally and metrics.
func (s *Service) counted(rec *redact.Record) {
	s.metrics.accepted(rec)
	if s.tally != nil {
		s.tally.Count(rec)
	}
}

// refused builds the refusal, its code as redact.RefusalCode says.
func refused(problems []redact.Problem, msg string) *RefusedError {
	return &RefusedError{Code: redact.RefusalCode(problems), Message: msg, Problems: problems}
}

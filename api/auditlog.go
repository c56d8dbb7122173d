package api

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/mediatorhq/mediator/audit"
	"github.com/mediatorhq/mediator/wire"
)

// checkpoint is GET /v1/audit/checkpoint: the latest signed checkpoint note.
func (s *server) checkpoint(w http.ResponseWriter, r *http.Request) {
	cp, err := s.auditLog.LatestCheckpoint(r.Context())
	if errors.Is(err, audit.ErrNotFound) {
		writeError(w, http.StatusNotFound, codeNotFound, "no checkpoint has been signed yet: the log is empty")
		return
	}
	if err != nil {
		s.logFailure(r, "read checkpoint", err)
		unavailable(w, "postgres", "the audit log is unavailable")
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte(cp.Note))
}

// verifierKey is GET /v1/audit/verifier-key: the note verifier key.
func (s *server) verifierKey(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte(s.auditLog.VerifierKey() + "\n"))
}

func entryView(e audit.StoredEntry) (wire.Entry, error) {
	_, rec, err := audit.ParseLeaf(e.Leaf)
	if err != nil {
		return wire.Entry{}, err
	}
	return wire.Entry{Seq: e.Seq, Leaf: e.Leaf, Record: rec}, nil
}

// entry is GET /v1/audit/entries/{seq}.
func (s *server) entry(w http.ResponseWriter, r *http.Request) {
	seq, ok := nonNegative(w, "seq", chi.URLParam(r, "seq"))
	if !ok {
		return
	}
	e, err := s.auditLog.Entry(r.Context(), seq)
	if errors.Is(err, audit.ErrNotFound) {
		writeError(w, http.StatusNotFound, codeNotFound, "no entry with that seq")
		return
	}
	if err != nil {
		s.logFailure(r, "read entry", err)
		unavailable(w, "postgres", "the audit log is unavailable")
		return
	}
	resp, err := entryView(e)
	if err != nil {
		s.logFailure(r, "parse stored leaf", err)
		writeError(w, http.StatusInternalServerError, codeInternal, "stored leaf is unreadable; run `mediator audit verify`")
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// defaultPage is the page size of an entries search without a limit.
const defaultPage = 100

// searchQuery reads conversation_id, kind, from, to, after_seq and limit.
func searchQuery(w http.ResponseWriter, r *http.Request) (audit.Query, bool) {
	v := r.URL.Query()
	q := audit.Query{ConversationID: v.Get("conversation_id"), Kind: v.Get("kind"), AfterSeq: -1, Limit: defaultPage}
	if len(q.ConversationID) > 128 || len(q.Kind) > 64 {
		writeError(w, http.StatusBadRequest, codeBadRequest, "conversation_id or kind is too long")
		return q, false
	}
	for name, dst := range map[string]*time.Time{"from": &q.From, "to": &q.To} {
		if s := v.Get(name); s != "" {
			t, err := time.Parse(time.RFC3339, s)
			if err != nil {
				writeError(w, http.StatusBadRequest, codeBadRequest, name+" must be an RFC 3339 timestamp")
				return q, false
			}
			*dst = t
		}
	}
	if s := v.Get("after_seq"); s != "" {
		n, ok := nonNegative(w, "after_seq", s)
		if !ok {
			return q, false
		}
		q.AfterSeq = n
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > audit.MaxSearchLimit {
			writeError(w, http.StatusBadRequest, codeBadRequest, "limit must be between 1 and "+strconv.Itoa(audit.MaxSearchLimit))
			return q, false
		}
		q.Limit = n
	}
	return q, true
}

// entries is GET /v1/audit/entries: a page of records, oldest first, with
// the cursor for the next page.
func (s *server) entries(w http.ResponseWriter, r *http.Request) {
	q, ok := searchQuery(w, r)
	if !ok {
		return
	}
	page, err := s.auditLog.Search(r.Context(), q)
	if err != nil {
		s.logFailure(r, "search entries", err)
		unavailable(w, "postgres", "the audit log is unavailable")
		return
	}
	out := make([]wire.Entry, 0, len(page))
	for _, e := range page {
		resp, err := entryView(e)
		if err != nil {
			s.logFailure(r, "parse stored leaf", err)
			writeError(w, http.StatusInternalServerError, codeInternal, "stored leaf is unreadable; run `mediator audit verify`")
			return
		}
		out = append(out, resp)
	}
	var next *int64
	if len(page) == q.Limit {
		n := page[len(page)-1].Seq
		next = &n
	}
	writeJSON(w, http.StatusOK, wire.EntryPage{Entries: out, NextAfterSeq: next})
}

// inclusionProof is GET /v1/audit/proof/inclusion?seq=N&tree_size=S.
func (s *server) inclusionProof(w http.ResponseWriter, r *http.Request) {
	seq, ok := nonNegative(w, "seq", r.URL.Query().Get("seq"))
	if !ok {
		return
	}
	size, ok := nonNegative(w, "tree_size", r.URL.Query().Get("tree_size"))
	if !ok {
		return
	}
	p, err := s.auditLog.InclusionProof(r.Context(), seq, size)
	if !s.proofError(w, r, err) {
		return
	}
	writeJSON(w, http.StatusOK, wire.InclusionProof{LeafIndex: seq, TreeSize: size, Hashes: hashBytes(p)})
}

// consistencyProof is GET /v1/audit/proof/consistency?from=A&to=B.
func (s *server) consistencyProof(w http.ResponseWriter, r *http.Request) {
	from, ok := nonNegative(w, "from", r.URL.Query().Get("from"))
	if !ok {
		return
	}
	to, ok := nonNegative(w, "to", r.URL.Query().Get("to"))
	if !ok {
		return
	}
	p, err := s.auditLog.ConsistencyProof(r.Context(), from, to)
	if !s.proofError(w, r, err) {
		return
	}
	writeJSON(w, http.StatusOK, wire.ConsistencyProof{From: from, To: to, Hashes: hashBytes(p)})
}

// proofError answers for a proof error and reports whether there was none.
func (s *server) proofError(w http.ResponseWriter, r *http.Request, err error) bool {
	switch {
	case err == nil:
		return true
	case errors.Is(err, audit.ErrNotReplicated):
		notReplicated(w)
	case errors.Is(err, audit.ErrBadRange):
		writeError(w, http.StatusBadRequest, codeBadRequest, "no proof exists for those sizes: need 0 ≤ seq < tree_size, or 1 ≤ from ≤ to")
	case errors.Is(err, audit.ErrNotFound):
		writeError(w, http.StatusNotFound, codeNotFound, "the log is not that large yet")
	default:
		s.logFailure(r, "proof", err)
		unavailable(w, "postgres", "the audit log is unavailable")
	}
	return false
}

// export is GET /v1/audit/export: an NDJSON evidence bundle.
func (s *server) export(w http.ResponseWriter, r *http.Request) {
	q, ok := searchQuery(w, r)
	if !ok {
		return
	}
	if _, err := s.auditLog.LatestCheckpoint(r.Context()); errors.Is(err, audit.ErrNotFound) {
		writeError(w, http.StatusNotFound, codeNotFound, "no checkpoint has been signed yet: nothing to export")
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Content-Disposition", `attachment; filename="mediator-evidence.ndjson"`)
	if _, err := s.auditLog.WriteBundle(r.Context(), w, q); err != nil {
		// Headers are gone; the bundle ends without its trailer, which
		// VerifyBundle refuses.
		s.logFailure(r, "export", err)
	}
}

func hashBytes[T ~[]H, H ~[32]byte](hs T) [][]byte {
	out := make([][]byte, len(hs))
	for i, h := range hs {
		out[i] = h[:]
	}
	return out
}

func nonNegative(w http.ResponseWriter, name, s string) (int64, bool) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		writeError(w, http.StatusBadRequest, codeBadRequest, name+" must be a non-negative integer")
		return 0, false
	}
	return n, true
}

func (s *server) logFailure(r *http.Request, what string, err error) {
	s.log.Error(what+" failed", "request_id", RequestIDFrom(r.Context()), "err", err)
}

// notReplicated answers 503 not_replicated with Retry-After: this
// instance reads the log from a standby that has not replayed that far.
func notReplicated(w http.ResponseWriter) {
	w.Header().Set("Retry-After", "1")
	writeError(w, http.StatusServiceUnavailable, codeNotReplicated,
		"this instance reads the log from a standby that has not replayed that far yet; retry", map[string]string{"dependency": "postgres"})
}

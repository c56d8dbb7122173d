package api

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/mediatorhq/mediator/identity"
	"github.com/mediatorhq/mediator/ingest"
	"github.com/mediatorhq/mediator/ratelimit"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// admissionServer serves h behind ingestAdmission, with the caller's
// subject taken from the X-Sub header.
func admissionServer(perIdentity *ratelimit.Buckets, budget *ingestBudget, h http.Handler) (*server, http.Handler) {
	s := &server{metrics: NewMetrics("test")}
	inner := s.ingestAdmission(perIdentity, budget)(h)
	return s, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := identity.Principal{Subject: r.Header.Get("X-Sub")}
		inner.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey, p)))
	})
}

func maximalRequest(sub string) *http.Request {
	r := httptest.NewRequest("POST", "/v1/events", bytes.NewReader(make([]byte, ingest.MaxBodyBytes)))
	r.Header.Set("X-Sub", sub)
	return r
}

// TestIngestBudgetBoundsBytesInFlight: while one maximal body holds the
// whole budget, the next waits, then gets 503 overloaded with
// Retry-After; once the first is answered there is room again.
func TestIngestBudgetBoundsBytesInFlight(t *testing.T) {
	budget := newIngestBudget(1) // raised to one maximal body
	budget.wait = 50 * time.Millisecond
	entered, release := make(chan struct{}), make(chan struct{})
	s, h := admissionServer(nil, budget, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
	}))
	done := make(chan struct{})
	go func() { h.ServeHTTP(httptest.NewRecorder(), maximalRequest("gw-1")); close(done) }()
	<-entered
	if got := testutil.ToFloat64(s.metrics.ingestInFlight); got != float64(ingest.MaxBodyBytes) {
		t.Fatalf("in flight: %v bytes", got)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, maximalRequest("gw-2"))
	if rec.Code != 503 || rec.Header().Get("Retry-After") != "1" || !bytes.Contains(rec.Body.Bytes(), []byte(`"overloaded"`)) {
		t.Fatalf("over the budget: %d %q %s", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
	close(release)
	<-done
	go func() { <-entered }()
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, maximalRequest("gw-2"))
	if rec.Code != 200 {
		t.Fatalf("after the first was answered: %d %s", rec.Code, rec.Body)
	}
	if got := testutil.ToFloat64(s.metrics.ingestInFlight); got != 0 {
		t.Fatalf("in flight after all answered: %v bytes", got)
	}
}

// TestIngestBurstIsInBytes: one identity's burst is counted in body bytes,
// so a few maximal bodies exhaust it (429 with Retry-After) while many
// small ones would not, and other identities keep theirs.
func TestIngestBurstIsInBytes(t *testing.T) {
	ls := ratelimit.New(Limit{Rate: 1 << 20, Burst: 2 * ingest.MaxBodyBytes})
	_, h := admissionServer(ls, nil, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	for i := range 2 {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, maximalRequest("gw-1"))
		if rec.Code != 200 {
			t.Fatalf("maximal body %d within the burst: %d", i, rec.Code)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, maximalRequest("gw-1"))
	if rec.Code != 429 || rec.Header().Get("Retry-After") != "8" {
		t.Fatalf("third maximal body: %d Retry-After %q, want 429 after 8 s at 1 MiB/s", rec.Code, rec.Header().Get("Retry-After"))
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, maximalRequest("gw-2"))
	if rec.Code != 200 {
		t.Fatalf("another identity: %d", rec.Code)
	}
}

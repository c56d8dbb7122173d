package api

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/mediatorhq/mediator/ingest"
	"github.com/mediatorhq/mediator/ratelimit"
)

// budgetWait is how long an ingest request waits for room in the in-flight
// budget before it is refused with 503: long enough to ride out a burst,
// short enough that a gateway's retry is quicker than waiting.
const budgetWait = 2 * time.Second

// codeOverloaded: the service holds as many request bytes as it may; retry
// after Retry-After.
const codeOverloaded = "overloaded"

// ingestBudget admits ingest request bodies while the bytes of those in
// flight stay within a fixed budget, so that the memory the service needs
// for ingest is bounded whatever many gateways send at once. A request is
// counted at its Content-Length (or the largest body allowed when it does
// not say) from before its body is read until it is answered.
type ingestBudget struct {
	sem  *semaphore.Weighted
	wait time.Duration // how long a request waits for room
}

// newIngestBudget returns a budget of size bytes, at least one maximal
// body; zero or less means no budget.
func newIngestBudget(size int64) *ingestBudget {
	if size <= 0 {
		return nil
	}
	size = max(size, ingest.MaxBodyBytes)
	return &ingestBudget{sem: semaphore.NewWeighted(size), wait: budgetWait}
}

// bodyCost is what a request is counted as: its declared length, or the
// largest body allowed when it does not declare one.
func bodyCost(r *http.Request) int64 {
	if r.ContentLength < 0 || r.ContentLength > ingest.MaxBodyBytes {
		return ingest.MaxBodyBytes
	}
	return max(r.ContentLength, 1)
}

// ingestAdmission applies, after the caller is known and before the body
// is read, the caller's byte rate (429 rate_limited with Retry-After) and
// then the service-wide in-flight budget (503 overloaded with Retry-After
// when no room came within budgetWait).
func (s *server) ingestAdmission(perIdentity *ratelimit.Buckets, budget *ingestBudget) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n := bodyCost(r)
			if perIdentity != nil {
				p, _ := PrincipalFrom(r.Context())
				if ok, wait := perIdentity.ReserveN(p.Subject, int(n), time.Now()); !ok {
					s.metrics.rateLimited.WithLabelValues(routeOf(r)).Inc()
					w.Header().Set("Retry-After", strconv.Itoa(ratelimit.RetryAfterSeconds(wait)))
					writeError(w, http.StatusTooManyRequests, codeRateLimited,
						"this identity sent more bytes than its rate allows; retry after the Retry-After seconds")
					return
				}
			}
			if budget != nil {
				ctx, cancel := context.WithTimeout(r.Context(), budget.wait)
				err := budget.sem.Acquire(ctx, n)
				cancel()
				if err != nil {
					s.metrics.ingestOverloaded.Inc()
					w.Header().Set("Retry-After", "1")
					writeError(w, http.StatusServiceUnavailable, codeOverloaded,
						"the service is holding as many ingest bytes as it may; nothing was written; retry after the Retry-After seconds")
					return
				}
				s.metrics.ingestInFlight.Add(float64(n))
				defer func() {
					s.metrics.ingestInFlight.Sub(float64(n))
					budget.sem.Release(n)
				}()
			}
			next.ServeHTTP(w, r)
		})
	}
}

package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/mediatorhq/mediator/ratelimit"
)

// Limit is a per-identity request rate: Rate requests per second on
// average, Burst at once. A zero Rate means no limit.
type Limit = ratelimit.Limit

// Limits are the per-identity rates of the route classes that take them.
type Limits struct {
	// Ingest is POST /v1/events, per token subject.
	Ingest Limit
	// IngestBytes is POST /v1/events in body bytes per second and bytes at
	// once, per token subject. Its burst is raised to one maximal body
	// (ingest.MaxBodyBytes) if set lower.
	IngestBytes Limit
	// IngestInFlightBytes is the service-wide budget of ingest body bytes
	// being processed at once (zero: none), at least one maximal body.
	IngestInFlightBytes int64
	// Access is the lawful-access writes (requests, approvals, releases,
	// revocations, approver changes), per token subject.
	Access Limit
	// Deposit is POST /v1/escrow/keys, per token subject: one depositor
	// cannot pile up keys under a conversation faster than this.
	Deposit Limit
	// Tiles is the C2SP tlog tiles and entry bundles, per token subject:
	// what one reader (a regulator's monitor, a mirror client) may take
	// of the service while it ingests.
	Tiles Limit
}

// rateLimited limits each authenticated caller to ls; it runs after guard,
// so the caller is known. Refused: 429 rate_limited with Retry-After.
func (s *server) rateLimited(ls *ratelimit.Buckets) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if ls == nil {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, _ := PrincipalFrom(r.Context())
			ok, wait := ls.Reserve(p.Subject, time.Now())
			if !ok {
				s.metrics.rateLimited.WithLabelValues(routeOf(r)).Inc()
				w.Header().Set("Retry-After", strconv.Itoa(ratelimit.RetryAfterSeconds(wait)))
				writeError(w, http.StatusTooManyRequests, codeRateLimited,
					"too many requests from this identity; retry after the Retry-After seconds")
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

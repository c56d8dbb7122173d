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
	// TilesService is the same routes service-wide: what all readers
	// together may take, however many identities they hold. A reader is
	// charged its own bucket first, so one flooding reader cannot empty
	// this one.
	TilesService Limit
}

// rateLimited limits each authenticated caller to ls; it runs after guard,
// so the caller is known. Refused: 429 rate_limited with Retry-After.
func (s *server) rateLimited(ls *ratelimit.Buckets) func(http.Handler) http.Handler {
	return s.limited(ls, func(r *http.Request) string {
		p, _ := PrincipalFrom(r.Context())
		return p.Subject
	}, "too many requests from this identity; retry after the Retry-After seconds")
}

// serviceLimited limits all callers of a route class together to ls.
// Refused: 429 rate_limited with Retry-After, as for one identity.
func (s *server) serviceLimited(ls *ratelimit.Buckets) func(http.Handler) http.Handler {
	return s.limited(ls, func(*http.Request) string { return "" },
		"the service is answering as many of these requests as it allows at once; retry after the Retry-After seconds")
}

// limited takes a token of ls for the bucket key(r) names, or answers 429.
func (s *server) limited(ls *ratelimit.Buckets, key func(*http.Request) string, refusal string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if ls == nil {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ok, wait := ls.Reserve(key(r), time.Now())
			if !ok {
				s.metrics.rateLimited.WithLabelValues(routeOf(r)).Inc()
				w.Header().Set("Retry-After", strconv.Itoa(ratelimit.RetryAfterSeconds(wait)))
				writeError(w, http.StatusTooManyRequests, codeRateLimited, refusal)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

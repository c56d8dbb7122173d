package api

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limit is a per-identity request rate: Rate requests per second on
// average, Burst at once. A zero Rate means no limit.
type Limit struct {
	Rate  float64
	Burst int
}

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
}

// limiters hands out one token bucket per identity, so a flood from one
// caller is refused with 429 while every other caller keeps its own rate.
// Buckets idle for longer than limiterIdle are dropped.
type limiters struct {
	limit Limit

	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

// limiterIdle is how long an identity's bucket is kept without use; a
// full bucket is the same as a new one, so dropping it loses nothing.
const limiterIdle = 10 * time.Minute

func newLimiters(l Limit) *limiters {
	if l.Rate <= 0 {
		return nil
	}
	if l.Burst < 1 {
		l.Burst = int(math.Ceil(l.Rate))
	}
	return &limiters{limit: l, buckets: map[string]*bucket{}}
}

// reserve takes a token for id, or says how long until one is free.
func (ls *limiters) reserve(id string, now time.Time) (bool, time.Duration) {
	return ls.reserveN(id, 1, now)
}

// reserveN takes n tokens for id, or says how long until they are free.
func (ls *limiters) reserveN(id string, n int, now time.Time) (bool, time.Duration) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if now.Sub(ls.swept) > limiterIdle {
		for k, b := range ls.buckets {
			if now.Sub(b.seen) > limiterIdle {
				delete(ls.buckets, k)
			}
		}
		ls.swept = now
	}
	b := ls.buckets[id]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(rate.Limit(ls.limit.Rate), ls.limit.Burst)}
		ls.buckets[id] = b
	}
	b.seen = now
	r := b.lim.ReserveN(now, n)
	if !r.OK() { // more than the burst: never admissible
		return false, time.Minute
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// rateLimited limits each authenticated caller to ls; it runs after guard,
// so the caller is known. Refused: 429 rate_limited with Retry-After.
func (s *server) rateLimited(ls *limiters) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if ls == nil {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, _ := PrincipalFrom(r.Context())
			ok, wait := ls.reserve(p.Subject, time.Now())
			if !ok {
				s.metrics.rateLimited.WithLabelValues(routeOf(r)).Inc()
				w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(wait)))
				writeError(w, http.StatusTooManyRequests, codeRateLimited,
					"too many requests from this identity; retry after the Retry-After seconds")
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// retryAfterSeconds is wait rounded up to whole seconds, at least one.
func retryAfterSeconds(wait time.Duration) int {
	return max(1, int(math.Ceil(wait.Seconds())))
}

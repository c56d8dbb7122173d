// Package ratelimit hands out one token bucket per identity (a token's
// subject, a caller's address), so that a flood from one caller is
// refused while every other caller keeps its own rate. Buckets idle for
// longer than Idle are dropped: a full bucket is the same as a new one.
package ratelimit

import (
	"math"
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

// Idle is how long an identity's bucket is kept without use.
const Idle = 10 * time.Minute

// Buckets are the token buckets of one Limit. They are safe for
// concurrent use.
type Buckets struct {
	limit Limit

	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

// New returns the buckets of l, or nil (no limit) for a zero rate. A
// burst below one is raised to the rate, rounded up.
func New(l Limit) *Buckets {
	if l.Rate <= 0 {
		return nil
	}
	if l.Burst < 1 {
		l.Burst = int(math.Ceil(l.Rate))
	}
	return &Buckets{limit: l, buckets: map[string]*bucket{}}
}

// Reserve takes a token for id, or says how long until one is free.
func (b *Buckets) Reserve(id string, now time.Time) (bool, time.Duration) {
	return b.ReserveN(id, 1, now)
}

// ReserveN takes n tokens for id, or says how long until they are free;
// a refusal takes none.
func (b *Buckets) ReserveN(id string, n int, now time.Time) (bool, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.Sub(b.swept) > Idle {
		for k, bk := range b.buckets {
			if now.Sub(bk.seen) > Idle {
				delete(b.buckets, k)
			}
		}
		b.swept = now
	}
	bk := b.buckets[id]
	if bk == nil {
		bk = &bucket{lim: rate.NewLimiter(rate.Limit(b.limit.Rate), b.limit.Burst)}
		b.buckets[id] = bk
	}
	bk.seen = now
	r := bk.lim.ReserveN(now, n)
	if !r.OK() { // more than the burst: never admissible
		return false, time.Minute
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// Has reports whether id has a bucket (for tests of idling).
func (b *Buckets) Has(id string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.buckets[id]
	return ok
}

// RetryAfterSeconds is wait rounded up to whole seconds, at least one:
// what a Retry-After header says.
func RetryAfterSeconds(wait time.Duration) int {
	return max(1, int(math.Ceil(wait.Seconds())))
}

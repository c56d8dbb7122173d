package api

import (
	"testing"
	"time"
)

func TestLimitersAreAPerIdentityBucket(t *testing.T) {
	ls := newLimiters(Limit{Rate: 10, Burst: 3})
	now := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	for i := range 3 {
		if ok, _ := ls.reserve("flood", now); !ok {
			t.Fatalf("request %d within the burst refused", i)
		}
	}
	ok, wait := ls.reserve("flood", now)
	if ok || wait <= 0 || wait > 100*time.Millisecond {
		t.Fatalf("over the burst: ok=%v wait=%v, want refused for about 1/rate", ok, wait)
	}
	// Another identity has its own bucket.
	if ok, _ := ls.reserve("other", now); !ok {
		t.Fatal("a flood from one identity starved another")
	}
	// A refused request takes no token: after 1/rate one more is allowed.
	if ok, _ := ls.reserve("flood", now.Add(100*time.Millisecond)); !ok {
		t.Fatal("the bucket did not refill")
	}
	// Idle buckets are dropped.
	ls.reserve("late", now.Add(2*limiterIdle))
	if _, kept := ls.buckets["other"]; kept {
		t.Fatal("an idle bucket was kept")
	}
	if newLimiters(Limit{}) != nil {
		t.Fatal("a zero rate made a limiter")
	}
}

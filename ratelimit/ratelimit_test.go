package ratelimit

import (
	"testing"
	"time"
)

func TestBucketsArePerIdentity(t *testing.T) {
	ls := New(Limit{Rate: 10, Burst: 3})
	now := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	for i := range 3 {
		if ok, _ := ls.Reserve("flood", now); !ok {
			t.Fatalf("request %d within the burst refused", i)
		}
	}
	ok, wait := ls.Reserve("flood", now)
	if ok || wait <= 0 || wait > 100*time.Millisecond {
		t.Fatalf("over the burst: ok=%v wait=%v, want refused for about 1/rate", ok, wait)
	}
	// Another identity has its own bucket.
	if ok, _ := ls.Reserve("other", now); !ok {
		t.Fatal("a flood from one identity starved another")
	}
	// A refused request takes no token: after 1/rate one more is allowed.
	if ok, _ := ls.Reserve("flood", now.Add(100*time.Millisecond)); !ok {
		t.Fatal("the bucket did not refill")
	}
	// Idle buckets are dropped.
	ls.Reserve("late", now.Add(2*Idle))
	if ls.Has("other") {
		t.Fatal("an idle bucket was kept")
	}
	if New(Limit{}) != nil {
		t.Fatal("a zero rate made a limiter")
	}
	if got := RetryAfterSeconds(1500 * time.Millisecond); got != 2 {
		t.Fatalf("Retry-After for 1.5 s: %d", got)
	}
}

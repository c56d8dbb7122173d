package custodian_test

import (
	"bytes"
	"net/http"
	"testing"
	"time"

	"github.com/mediatorhq/mediator/dev"
)

// TestPublicRoutesRateLimited: one address calling a route that needs no
// credential faster than public_rate (10/s, bursts of 20) is refused
// with 429 and Retry-After, and counted; the routes that need a token
// are not limited by it.
func TestPublicRoutesRateLimited(t *testing.T) {
	f := newFixture(t, dev.CustodianOptions{})
	url := f.set.Custodians[0].URL
	// Call until 15 calls were limited, at most 200: however slow the
	// machine, no more calls may pass than the burst and the rate allow
	// in the time taken.
	ok, limited := 0, 0
	start := time.Now()
	for range 200 {
		resp, err := http.Post(url+"/v1/shares/status", "application/json",
			bytes.NewReader([]byte(`{"conversation_id":"conv-a","key_id":"e1"}`)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
			ok++
		case http.StatusTooManyRequests:
			if resp.Header.Get("Retry-After") == "" {
				t.Fatal("a 429 without Retry-After")
			}
			limited++
		default:
			t.Fatalf("status: %d", resp.StatusCode)
		}
		if allowed := 20 + 10*time.Since(start).Seconds() + 1; float64(ok) > allowed {
			t.Fatalf("%d calls passed in %v: more than a burst of 20 and 10/s allow", ok, time.Since(start))
		}
		if limited == 15 {
			break
		}
	}
	if limited < 15 {
		t.Fatalf("%d of %d rapid calls limited, want 15 past a burst of 20", limited, ok+limited)
	}
	if got := f.set.Counter(0, "mediator_custodian_rate_limited_total"); got != float64(limited) {
		t.Fatalf("mediator_custodian_rate_limited_total = %v, want %d", got, limited)
	}
	// The mediator's calls are not limited by it.
	f.deposit(t, "conv-a", "e1", bytes.Repeat([]byte{1}, 32))
}

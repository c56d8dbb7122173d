package custodian_test

import (
	"bytes"
	"net/http"
	"testing"

	"github.com/mediatorhq/mediator/dev"
)

// TestPublicRoutesRateLimited: one address calling a route that needs no
// credential faster than public_rate (10/s, bursts of 20) is refused
// with 429 and Retry-After, and counted; the routes that need a token
// are not limited by it.
func TestPublicRoutesRateLimited(t *testing.T) {
	f := newFixture(t, dev.CustodianOptions{})
	url := f.set.Custodians[0].URL
	limited := 0
	for range 40 {
		resp, err := http.Post(url+"/v1/shares/status", "application/json",
			bytes.NewReader([]byte(`{"conversation_id":"conv-a","key_id":"e1"}`)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
		case http.StatusTooManyRequests:
			if resp.Header.Get("Retry-After") == "" {
				t.Fatal("a 429 without Retry-After")
			}
			limited++
		default:
			t.Fatalf("status: %d", resp.StatusCode)
		}
	}
	if limited < 15 {
		t.Fatalf("%d of 40 rapid calls limited, want at least 15 past a burst of 20", limited)
	}
	if got := f.set.Counter(0, "mediator_custodian_rate_limited_total"); got != float64(limited) {
		t.Fatalf("mediator_custodian_rate_limited_total = %v, want %d", got, limited)
	}
	// The mediator's calls are not limited by it.
	f.deposit(t, "conv-a", "e1", bytes.Repeat([]byte{1}, 32))
}

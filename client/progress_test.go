package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/mediatorhq/mediator/wire"
)

// TestReleaseAsksAgainWhileInProgress: a 202 answer is progress, not the
// release: the client reports it and posts again until the mediator
// answers with the keys.
func TestReleaseAsksAgainWhileInProgress(t *testing.T) {
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		w.Header().Set("Content-Type", "application/json")
		if calls < 3 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusAccepted)
			json.NewEncoder(w).Encode(wire.ReleaseProgress{RequestID: "r1", Status: "releasing", KeysTotal: 3, KeysReady: calls})
			return
		}
		json.NewEncoder(w).Encode(wire.Release{RequestID: "r1", Keys: []wire.ReleasedKey{{EscrowID: "e1"}, {EscrowID: "e2"}, {EscrowID: "e3"}}})
	}))
	defer srv.Close()
	c, err := New(srv.URL, "token", nil)
	if err != nil {
		t.Fatal(err)
	}
	var seen []int
	rel, err := c.ReleaseWithProgress(context.Background(), "r1", func(p wire.ReleaseProgress) { seen = append(seen, p.KeysReady) })
	if err != nil || calls != 3 || len(rel.Keys) != 3 || len(seen) != 2 || seen[0] != 1 || seen[1] != 2 {
		t.Fatalf("release after two answers in progress: %d calls, %d keys, progress %v, %v", calls, len(rel.Keys), seen, err)
	}
}

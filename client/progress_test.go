package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	c.UsePseudonyms(localPseudonyms())
	if err != nil {
		t.Fatal(err)
	}
	var seen []int
	rel, err := c.ReleaseWithProgress(context.Background(), "r1", func(p wire.ReleaseProgress) { seen = append(seen, p.KeysReady) })
	if err != nil || calls != 3 || len(rel.Keys) != 3 || len(seen) != 2 || seen[0] != 1 || seen[1] != 2 {
		t.Fatalf("release after two answers in progress: %d calls, %d keys, progress %v, %v", calls, len(rel.Keys), seen, err)
	}
}

// TestReleasedFollowsPages: a release answered in pages is fetched whole,
// page after page, or handed over a page at a time; a page that is of
// another release, repeats a key, or does not move on is refused rather
// than looped on.
func TestReleasedFollowsPages(t *testing.T) {
	pages := map[string]wire.Release{
		"":  {RequestID: "r1", Keys: []wire.ReleasedKey{{EscrowID: "a"}, {EscrowID: "b"}}, NextAfter: "b"},
		"b": {RequestID: "r1", Keys: []wire.ReleasedKey{{EscrowID: "c"}, {EscrowID: "d"}}, NextAfter: "d"},
		"d": {RequestID: "r1", Keys: []wire.ReleasedKey{{EscrowID: "e"}}},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(pages[r.URL.Query().Get("after")])
	}))
	defer srv.Close()
	c, err := New(srv.URL, "token", nil)
	c.UsePseudonyms(localPseudonyms())
	if err != nil {
		t.Fatal(err)
	}
	rel, err := c.Released(context.Background(), "r1")
	var ids []string
	for _, k := range rel.Keys {
		ids = append(ids, k.EscrowID)
	}
	if err != nil || fmt.Sprint(ids) != "[a b c d e]" || rel.NextAfter != "" {
		t.Fatalf("pages: %v next %q %v", ids, rel.NextAfter, err)
	}
	// Page by page: never more than one page held.
	var sizes []int
	if err := c.ReleasedPages(context.Background(), "r1", func(p wire.Release) error {
		sizes = append(sizes, len(p.Keys))
		return nil
	}); err != nil || fmt.Sprint(sizes) != "[2 2 1]" {
		t.Fatalf("pages handed over: %v, %v; want [2 2 1]", sizes, err)
	}
	pages["d"] = wire.Release{RequestID: "r1", Keys: []wire.ReleasedKey{{EscrowID: "c"}, {EscrowID: "e"}}}
	if _, err := c.Released(context.Background(), "r1"); !errors.Is(err, ErrUnverifiedRelease) {
		t.Fatalf("a page that repeats a key of an earlier page: %v", err)
	}
	pages["d"] = wire.Release{RequestID: "r1", Keys: []wire.ReleasedKey{{EscrowID: "e"}}, NextAfter: "b"}
	if _, err := c.Released(context.Background(), "r1"); !errors.Is(err, ErrUnverifiedRelease) {
		t.Fatalf("a page that goes back: %v", err)
	}
	pages["d"] = wire.Release{RequestID: "r2", Keys: []wire.ReleasedKey{{EscrowID: "e"}}}
	if _, err := c.Released(context.Background(), "r1"); !errors.Is(err, ErrUnverifiedRelease) {
		t.Fatalf("a page of another release: %v", err)
	}
}

// TestReleaseAsksAgainWhenAnAnswerIsLost: a release whose answer is lost
// on the way (the connection dropped) is asked for again, since asking
// again only continues it; an answer with an error is not.
func TestReleaseAsksAgainWhenAnAnswerIsLost(t *testing.T) {
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		if calls == 1 {
			hj, _ := w.(http.Hijacker)
			conn, _, _ := hj.Hijack()
			conn.Close() // the answer is lost
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(wire.Release{RequestID: "r1", Keys: []wire.ReleasedKey{{EscrowID: "e1"}}})
	}))
	defer srv.Close()
	c, err := New(srv.URL, "token", nil)
	c.UsePseudonyms(localPseudonyms())
	if err != nil {
		t.Fatal(err)
	}
	if rel, err := c.Release(context.Background(), "r1"); err != nil || calls != 2 || len(rel.Keys) != 1 {
		t.Fatalf("after a lost answer: %d calls, %+v, %v", calls, rel, err)
	}
}

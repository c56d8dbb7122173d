package client

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/seal"
	"github.com/mediatorhq/mediator/wire"
)

// TestRosterRefusesRollback: a client that verified version 2 refuses a
// chain that ends at version 1 afterwards, as a mediator hiding a removal
// would serve it; a chain that extends what it saw is taken.
func TestRosterRefusesRollback(t *testing.T) {
	var people []struct {
		id   string
		priv ed25519.PrivateKey
	}
	g := roster.Roster{Version: 1, Threshold: 2, Rule: roster.DefaultRule()}
	for _, a := range [][2]string{{"lena", "legal"}, {"sam", "security"}} {
		pub, priv, _ := ed25519.GenerateKey(nil)
		people = append(people, struct {
			id   string
			priv ed25519.PrivateKey
		}{a[0], priv})
		g.Approvers = append(g.Approvers, roster.Approver{ID: a[0], Roles: []string{a[1]}, PublicKey: pub})
	}
	for _, name := range []string{"c1", "c2"} {
		_, k, _ := seal.NewKey(seal.KEMX25519)
		s, _, _ := ed25519.GenerateKey(nil)
		g.Custodians = append(g.Custodians, roster.Custodian{Name: name, URL: "https://" + name + ".example", HPKEKey: k, SigningKey: s})
	}
	signed := func(r roster.Roster) roster.Signed {
		c, err := r.Canonical()
		if err != nil {
			t.Fatal(err)
		}
		s := roster.Signed{Roster: c}
		for _, p := range people {
			s.Signatures = append(s.Signatures, roster.Sign(p.priv, roster.Digest(c), p.id))
		}
		return s
	}
	genesis, _ := g.Digest()
	v2 := g
	v2.Version, v2.Previous = 2, genesis
	chain := []roster.Signed{signed(g), signed(v2)}

	var mu sync.Mutex
	serve := chain
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(wire.RosterChain{Genesis: genesis, Version: uint64(len(serve)), Chain: serve})
	}))
	defer srv.Close()
	c, err := New(srv.URL, "token", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if r, _, err := c.Roster(ctx, genesis); err != nil || r.Version != 2 {
		t.Fatalf("version 2: %v %v", r.Version, err)
	}
	mu.Lock()
	serve = chain[:1]
	mu.Unlock()
	if _, _, err := c.Roster(ctx, genesis); !errors.Is(err, ErrRosterRollback) {
		t.Fatalf("a chain rolled back to version 1: %v", err)
	}
	fresh, _ := New(srv.URL, "token", nil)
	if r, _, err := fresh.Roster(ctx, genesis); err != nil || r.Version != 1 {
		t.Fatalf("a client that saw nothing before takes version 1: %v %v", r.Version, err)
	}
}

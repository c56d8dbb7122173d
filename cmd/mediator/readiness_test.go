package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mediatorhq/mediator/api"
	"github.com/mediatorhq/mediator/audit"
	"github.com/mediatorhq/mediator/dev"
	"github.com/mediatorhq/mediator/policy"
)

// TestReadyzNamesEachMissingDependency: /readyz, as serve wires it, answers
// 503 naming jwks while the identity provider's key set cannot be fetched,
// custodians and roster while they are not configured, and witnesses while
// the checkpoint job's latest round lacked the quorum; and 200 once all
// are fine.
func TestReadyzNamesEachMissingDependency(t *testing.T) {
	state := t.TempDir()
	if _, err := dev.LoadOrCreateIssuer(state); err != nil {
		t.Fatal(err)
	}
	jwks, err := os.ReadFile(dev.JWKSPath(state))
	if err != nil {
		t.Fatal(err)
	}
	var blocked atomic.Bool
	blocked.Store(true)
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if blocked.Load() {
			http.Error(w, "blocked", http.StatusForbidden)
			return
		}
		w.Write(jwks)
	}))
	defer idp.Close()
	engine, err := policy.Load(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	ok := func(context.Context) error { return nil }
	quorum := fmt.Errorf("%w: 1 of 3", audit.ErrWitnessQuorum)
	ready := func(t *testing.T, cfg serveConfig, witnesses error) (int, map[string]string, string) {
		t.Helper()
		cfg.JWKS, cfg.JWTIssuer, cfg.JWTAudience = idp.URL, dev.IssuerName, dev.Audience
		verifier, err := newVerifier(cfg)
		if err != nil {
			t.Fatal(err)
		}
		h := api.NewRouter(api.Deps{Logger: slog.New(slog.DiscardHandler), Authn: verifier, Authz: engine, Metrics: api.NewMetrics("test"),
			Ready: readiness(cfg, verifier, ok, ok, func(context.Context) error { return witnesses })})
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		var body struct {
			Status string
			Checks map[string]string
			Error  struct {
				Message string
				Details []struct{ Dependency, Status string }
			}
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("readyz body %q: %v", rec.Body, err)
		}
		if rec.Code == 200 {
			return rec.Code, body.Checks, body.Status
		}
		got := map[string]string{}
		for _, d := range body.Error.Details {
			got[d.Dependency] = d.Status
		}
		return rec.Code, got, body.Error.Message
	}
	full := serveConfig{Custodians: "custodians.json", RosterGenesis: "sha256:" + strings.Repeat("0", 64)}

	t.Run("jwks cannot be fetched", func(t *testing.T) {
		code, deps, msg := ready(t, full, nil)
		if code != 503 || len(deps) != 1 || deps["jwks"] != "down" || msg != "jwks unreachable" {
			t.Fatalf("readyz = %d %v %q, want 503 naming jwks", code, deps, msg)
		}
	})
	blocked.Store(false)
	t.Run("no custodians, no roster", func(t *testing.T) {
		code, deps, msg := ready(t, serveConfig{}, nil)
		if code != 503 || len(deps) != 2 || deps["custodians"] != "not_configured" || deps["roster"] != "not_configured" ||
			msg != "custodians, roster not configured" {
			t.Fatalf("readyz = %d %v %q, want 503 naming custodians and roster", code, deps, msg)
		}
		noRoster := full
		noRoster.RosterGenesis = ""
		if code, deps, _ := ready(t, noRoster, nil); code != 503 || len(deps) != 1 || deps["roster"] != "not_configured" {
			t.Fatalf("readyz without a roster genesis = %d %v", code, deps)
		}
	})
	t.Run("witness quorum unreachable", func(t *testing.T) {
		code, deps, msg := ready(t, full, quorum)
		if code != 503 || len(deps) != 1 || deps["witnesses"] != "down" || msg != "witnesses unreachable" {
			t.Fatalf("readyz = %d %v %q, want 503 naming witnesses", code, deps, msg)
		}
	})
	t.Run("all fine", func(t *testing.T) {
		code, checks, status := ready(t, full, nil)
		if code != 200 || status != "ready" || len(checks) != 6 {
			t.Fatalf("readyz = %d %v %q, want 200 with six checks", code, checks, status)
		}
		for name, st := range checks {
			if st != "ok" {
				t.Fatalf("readyz 200 with %s %s", name, st)
			}
		}
	})
}

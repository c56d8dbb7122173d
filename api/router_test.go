package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mediatorhq/mediator/dev"
	"github.com/mediatorhq/mediator/identity"
	"github.com/mediatorhq/mediator/policy"
)

type fixture struct {
	handler http.Handler
	metrics *Metrics
	issuer  *dev.Issuer
	logs    *bytes.Buffer
	pgDown  bool
	// noCustodians makes the custodians probe say it is not configured.
	noCustodians bool
}

// newFixture wires the router with the real OPA engine and the real JWT
// verifier; only the readiness probes are plain functions.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	engine, err := policy.Load(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	iss, err := dev.LoadOrCreateIssuer(dir)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := identity.NewFileKeys(dev.JWKSPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	v, err := identity.NewVerifier(dev.IssuerName, dev.Audience, keys)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{issuer: iss, logs: &bytes.Buffer{}, metrics: NewMetrics("test")}
	f.handler = NewRouter(Deps{
		Logger:  slog.New(slog.NewJSONHandler(f.logs, nil)),
		Authn:   v,
		Authz:   engine,
		Metrics: f.metrics,
		Ready: []Check{
			{Name: "postgres", Probe: func(context.Context) error {
				if f.pgDown {
					return errors.New("connection refused")
				}
				return nil
			}},
			{Name: "vault", Probe: func(context.Context) error { return nil }},
			{Name: "custodians", Probe: func(context.Context) error {
				if f.noCustodians {
					return fmt.Errorf("%w: --custodians", ErrNotConfigured)
				}
				return nil
			}},
		},
	})
	return f
}

func (f *fixture) do(t *testing.T, method, path, token string) (*http.Response, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	f.handler.ServeHTTP(rec, req)
	resp := rec.Result()
	body, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("%s %s: bad JSON %q: %v", method, path, body, err)
		}
	}
	return resp, m
}

func errorCode(m map[string]any) string {
	e, _ := m["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func TestWhoami(t *testing.T) {
	f := newFixture(t)
	resp, body := f.do(t, "GET", "/v1/whoami", "")
	if resp.StatusCode != 401 || errorCode(body) != "unauthenticated" || resp.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("no token: %d %v", resp.StatusCode, body)
	}
	tok, err := f.issuer.Issue("alice", []string{"officer", "auditor"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	resp, body = f.do(t, "GET", "/v1/whoami", tok)
	if resp.StatusCode != 200 || body["subject"] != "alice" {
		t.Fatalf("good token: %d %v", resp.StatusCode, body)
	}
	roles, _ := body["roles"].([]any)
	if len(roles) != 2 || roles[0] != "officer" || roles[1] != "auditor" {
		t.Fatalf("roles = %v", body["roles"])
	}
	resp, body = f.do(t, "GET", "/v1/whoami", "garbage")
	if resp.StatusCode != 401 || errorCode(body) != "unauthenticated" {
		t.Fatalf("bad token: %d %v", resp.StatusCode, body)
	}
	// A token with no role the policy knows is forbidden, not unauthenticated.
	tok, _ = f.issuer.Issue("eve", []string{"visitor"}, time.Hour)
	resp, body = f.do(t, "GET", "/v1/whoami", tok)
	if resp.StatusCode != 403 || errorCode(body) != "forbidden" {
		t.Fatalf("roleless token: %d %v", resp.StatusCode, body)
	}
	if strings.Contains(f.logs.String(), tok) {
		t.Fatal("a bearer token reached the log")
	}
}

func TestBadTokenOnPublicRouteIs401(t *testing.T) {
	f := newFixture(t)
	resp, _ := f.do(t, "GET", "/healthz", "")
	if resp.StatusCode != 200 {
		t.Fatalf("healthz = %d", resp.StatusCode)
	}
	resp, _ = f.do(t, "GET", "/healthz", "not-a-token")
	if resp.StatusCode != 401 {
		t.Fatalf("healthz with bad token = %d", resp.StatusCode)
	}
}

func TestReadyz(t *testing.T) {
	f := newFixture(t)
	resp, body := f.do(t, "GET", "/readyz", "")
	if resp.StatusCode != 200 || body["status"] != "ready" {
		t.Fatalf("readyz = %d %v", resp.StatusCode, body)
	}
	f.pgDown = true
	resp, body = f.do(t, "GET", "/readyz", "")
	if resp.StatusCode != 503 || errorCode(body) != "not_ready" || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("readyz with postgres down = %d %v", resp.StatusCode, body)
	}
	msg := body["error"].(map[string]any)["message"].(string)
	if !strings.Contains(msg, "postgres") || strings.Contains(msg, "vault") || strings.Contains(msg, "custodians") {
		t.Fatalf("readyz message %q should name postgres only", msg)
	}
	if strings.Contains(msg, "connection refused") {
		t.Fatal("readyz leaks the dependency's error text")
	}
	if got := readyDetails(body); len(got) != 1 || got["postgres"] != "down" {
		t.Fatalf("readyz details = %v, want postgres down", got)
	}
}

// TestReadyzNamesWhatIsNotConfigured: a dependency with no configuration
// at all is named apart from one that does not answer.
func TestReadyzNamesWhatIsNotConfigured(t *testing.T) {
	f := newFixture(t)
	f.noCustodians = true
	resp, body := f.do(t, "GET", "/readyz", "")
	msg, _ := body["error"].(map[string]any)["message"].(string)
	if resp.StatusCode != 503 || errorCode(body) != "not_ready" || msg != "custodians not configured" {
		t.Fatalf("readyz without custodians = %d %v", resp.StatusCode, body)
	}
	if got := readyDetails(body); len(got) != 1 || got["custodians"] != "not_configured" {
		t.Fatalf("readyz details = %v, want custodians not_configured", got)
	}
	f.pgDown = true
	resp, body = f.do(t, "GET", "/readyz", "")
	msg, _ = body["error"].(map[string]any)["message"].(string)
	if resp.StatusCode != 503 || msg != "postgres unreachable; custodians not configured" {
		t.Fatalf("readyz with postgres down and no custodians = %d %v", resp.StatusCode, body)
	}
	if got := readyDetails(body); len(got) != 2 || got["postgres"] != "down" || got["custodians"] != "not_configured" {
		t.Fatalf("readyz details = %v", got)
	}
}

// readyDetails maps each dependency a 503 from /readyz names to its status.
func readyDetails(body map[string]any) map[string]string {
	out := map[string]string{}
	e, _ := body["error"].(map[string]any)
	ds, _ := e["details"].([]any)
	for _, d := range ds {
		m, _ := d.(map[string]any)
		dep, _ := m["dependency"].(string)
		st, _ := m["status"].(string)
		out[dep] = st
	}
	return out
}

func TestUnknownRouteAndMethod(t *testing.T) {
	f := newFixture(t)
	for _, path := range []string{"/debug/pprof/", "/debug/vars", "/v1/nope"} {
		resp, body := f.do(t, "GET", path, "")
		if resp.StatusCode != 404 || errorCode(body) != "not_found" {
			t.Errorf("%s = %d %v", path, resp.StatusCode, body)
		}
	}
	resp, body := f.do(t, "DELETE", "/v1/whoami", "")
	if resp.StatusCode != 405 || errorCode(body) != "method_not_allowed" {
		t.Errorf("DELETE whoami = %d %v", resp.StatusCode, body)
	}
}

func TestRequestID(t *testing.T) {
	f := newFixture(t)
	req := httptest.NewRequest("GET", "/healthz", nil)
	req.Header.Set("X-Request-Id", "abc-123")
	rec := httptest.NewRecorder()
	f.handler.ServeHTTP(rec, req)
	if got := rec.Header().Get("X-Request-Id"); got != "abc-123" {
		t.Fatalf("request id not echoed: %q", got)
	}
	req = httptest.NewRequest("GET", "/healthz", nil)
	req.Header.Set("X-Request-Id", "bad id\nwith newline")
	rec = httptest.NewRecorder()
	f.handler.ServeHTTP(rec, req)
	if got := rec.Header().Get("X-Request-Id"); got == "" || strings.Contains(got, " ") {
		t.Fatalf("unsafe request id adopted: %q", got)
	}
	if !strings.Contains(f.logs.String(), `"request_id":"abc-123"`) {
		t.Fatalf("access log lacks the request id: %s", f.logs.String())
	}
}

func TestPanicIs500WithoutInternals(t *testing.T) {
	f := newFixture(t)
	s := &server{log: slog.New(slog.NewJSONHandler(f.logs, nil)), metrics: NewMetrics("test")}
	h := requestID(s.recoverPanic(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		panic("secret internal state 42")
	})))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/x", nil))
	if rec.Code != 500 || strings.Contains(rec.Body.String(), "secret internal state") {
		t.Fatalf("panic response: %d %s", rec.Code, rec.Body.String())
	}
	if !strings.Contains(rec.Body.String(), "internal_error") {
		t.Fatalf("panic response lacks code: %s", rec.Body.String())
	}
}

func TestBodyLimit(t *testing.T) {
	h := limitBody(10)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				writeError(w, 413, codeBodyTooLarge, "too large")
				return
			}
		}
		w.WriteHeader(200)
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/", strings.NewReader(strings.Repeat("x", 11))))
	if rec.Code != 413 {
		t.Fatalf("oversized body = %d", rec.Code)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/", strings.NewReader("small")))
	if rec.Code != 200 {
		t.Fatalf("small body = %d", rec.Code)
	}
}

// TestEveryRouteHasAPolicyRule fails when the router serves a route that
// policy/authz.rego does not name (it would be denied to everyone), or the
// policy names a route that does not exist.
func TestEveryRouteHasAPolicyRule(t *testing.T) {
	f := newFixture(t)
	routes, err := Routes(f.handler)
	if err != nil {
		t.Fatal(err)
	}
	engine, _ := policy.Load(context.Background(), "")
	known, err := engine.AuthzRoutes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(routes)
	if strings.Join(routes, "\n") != strings.Join(known, "\n") {
		t.Fatalf("router routes:\n%s\npolicy routes:\n%s", strings.Join(routes, "\n"), strings.Join(known, "\n"))
	}
}

// TestMetricsNeedACredential: /metrics answers a token of the metrics
// role and no one else on the service's listener (it counts lawful-access
// activity and events, which strangers must not read); the separate
// metrics handler serves the same without a token, for a private listener.
func TestMetricsNeedACredential(t *testing.T) {
	f := newFixture(t)
	f.do(t, "GET", "/healthz", "")
	if resp, _ := f.do(t, "GET", "/metrics", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("/metrics without a token: %d", resp.StatusCode)
	}
	aud, _ := f.issuer.Issue("ann", []string{"auditor", "admin"}, time.Minute)
	if resp, _ := f.do(t, "GET", "/metrics", aud); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("/metrics for an auditor and admin: %d", resp.StatusCode)
	}
	prom, _ := f.issuer.Issue("prometheus", []string{"metrics"}, time.Minute)
	req := httptest.NewRequest("GET", "/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+prom)
	rec := httptest.NewRecorder()
	f.handler.ServeHTTP(rec, req)
	for _, want := range []string{"mediator_http_requests_total", "mediator_build_info", `route="/healthz"`, "mediator_authz_decisions_total"} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	rec = httptest.NewRecorder()
	MetricsHandler(f.metrics).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "mediator_build_info") {
		t.Fatalf("the private listener's handler: %d", rec.Code)
	}
}

// TestAcceptsGzip: entry bundles are compressed only for a client whose
// Accept-Encoding gives gzip a nonzero weight.
func TestAcceptsGzip(t *testing.T) {
	for v, want := range map[string]bool{
		"": false, "gzip": true, "deflate, GZIP": true, "gzip;q=0.5": true, "gzip; q=1": true,
		"gzip;q=0": false, "gzip;q=0.000": false, "identity": false, "gzip;q=x": false,
	} {
		r, _ := http.NewRequest("GET", "/", nil)
		if v != "" {
			r.Header.Set("Accept-Encoding", v)
		}
		if got := acceptsGzip(r); got != want {
			t.Errorf("Accept-Encoding %q: %v, want %v", v, got, want)
		}
	}
}

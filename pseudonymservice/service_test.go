package pseudonymservice

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mediatorhq/mediator/pseudonym"
	"github.com/mediatorhq/mediator/ratelimit"
)

// TestServiceOverHTTP: a caller with its token gets verified pseudonyms
// over HTTP; no token, or another's, gets 401; a caller past its rate
// gets 429 with Retry-After while another caller is still answered; the
// log names callers and counts, never an element or identifier, and the
// metric counts each caller's elements.
func TestServiceOverHTTP(t *testing.T) {
	ctx := context.Background()
	key, err := pseudonym.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	svc, err := NewService(ServiceConfig{Key: key, Limit: ratelimit.Limit{Rate: 1, Burst: 5}, MetricsToken: []byte("the-monitoring-token"),
		Log:     slog.New(slog.NewJSONHandler(&logs, nil)),
		Callers: []Caller{{Name: "gw-1", Token: []byte("token-of-gateway-one")}, {Name: "officers", Token: []byte("token-of-the-officers")}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(svc.Handler())
	defer srv.Close()

	gw := pseudonym.NewClient(key.Public(), pseudonym.HTTPEvaluate(srv.URL, "token-of-gateway-one", nil), -1)
	const canary = "+14155550123"
	ps, err := gw.Pseudonyms(ctx, pseudonym.KindPhone, []string{canary, "+14155550124"})
	if err != nil {
		t.Fatal(err)
	}
	local, _ := pseudonym.NewClient(key.Public(), pseudonym.Local(pseudonym.NewEvaluator(key)), -1).Pseudonyms(ctx, pseudonym.KindPhone, []string{canary})
	if ps[0] != local[0] {
		t.Fatal("the pseudonym over HTTP differs from the one in process")
	}

	for name, token := range map[string]string{"no token": "", "a wrong token": "token-of-gateway-two"} {
		_, err := pseudonym.NewClient(key.Public(), pseudonym.HTTPEvaluate(srv.URL, token, nil), -1).Pseudonyms(ctx, pseudonym.KindPhone, []string{"+1"})
		if err == nil || !strings.Contains(err.Error(), "401") {
			t.Errorf("%s: %v, want 401", name, err)
		}
	}

	// gw-1 used 2 of its burst of 5: 4 more are refused, all of them.
	_, err = gw.Pseudonyms(ctx, pseudonym.KindPhone, []string{"+15", "+16", "+17", "+18"})
	if err == nil || !strings.Contains(err.Error(), "429") {
		t.Fatalf("past the rate: %v, want 429", err)
	}
	if _, err := pseudonym.NewClient(key.Public(), pseudonym.HTTPEvaluate(srv.URL, "token-of-the-officers", nil), -1).Pseudonyms(ctx, pseudonym.KindConversation, []string{"c"}); err != nil {
		t.Fatalf("another caller: %v", err)
	}
	if got := testutil.ToFloat64(svc.elements.WithLabelValues("gw-1")); got != 2 {
		t.Errorf("gw-1's elements: %v, want 2", got)
	}
	if got := testutil.ToFloat64(svc.refused.WithLabelValues("gw-1", "rate_limited")); got != 1 {
		t.Errorf("gw-1 rate limited: %v, want 1", got)
	}

	get := func(path, token string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/metrics", "the-monitoring-token"); code != 200 || !strings.Contains(body, `mediator_pseudonym_elements_total{caller="gw-1"} 2`) {
		t.Errorf("metrics: %d %s", code, body)
	}
	if code, _ := get("/metrics", "token-of-gateway-one"); code != http.StatusUnauthorized {
		t.Errorf("metrics with a caller's token: %d", code)
	}
	req := httptest.NewRequest(http.MethodGet, "/v1/public-key", nil)
	rec := httptest.NewRecorder()
	svc.Handler().ServeHTTP(rec, req)
	if !strings.Contains(rec.Body.String(), key.Public().ID()) {
		t.Errorf("public key answer: %s", rec.Body)
	}

	out := logs.String()
	if !strings.Contains(out, `"caller":"gw-1"`) || !strings.Contains(out, `"elements":2`) {
		t.Errorf("the log does not count gw-1's elements: %s", out)
	}
	for _, secret := range []string{canary, "4155550123", "token-of-gateway-one", ps[0][len(pseudonym.Prefix):]} {
		if strings.Contains(out, secret) {
			t.Errorf("the log holds %q", secret)
		}
	}
	// No element reaches the log: the first bytes of any 32-byte element
	// in base64 would be there.
	if strings.Contains(out, "elements\":[") {
		t.Error("the log holds elements")
	}
}

// TestRotationOverlap: a service holding a new key and the one it
// replaces answers a client that still trusts the old key with the old
// key's pseudonyms (the same as before the rotation) and a client of the
// new roster with the new key's; a client trusting a key the service
// does not hold gets 422 unknown_key, not an evaluation under another
// key.
func TestRotationOverlap(t *testing.T) {
	ctx := context.Background()
	gen := func() *pseudonym.Key {
		k, err := pseudonym.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	oldKey, newKey, stranger := gen(), gen(), gen()
	const id = "chat:887766554433"
	before, err := pseudonym.NewClient(oldKey.Public(), pseudonym.Local(pseudonym.NewEvaluator(oldKey)), -1).
		Pseudonyms(ctx, pseudonym.KindConversation, []string{id})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := NewService(ServiceConfig{Key: newKey, PreviousKey: oldKey, Callers: []Caller{{Name: "gw", Token: []byte("a-token-of-sixteen-bytes")}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(svc.Handler())
	defer srv.Close()
	ask := func(k *pseudonym.Key) ([]string, error) {
		return pseudonym.NewClient(k.Public(), pseudonym.HTTPEvaluate(srv.URL, "a-token-of-sixteen-bytes", nil), -1).
			Pseudonyms(ctx, pseudonym.KindConversation, []string{id})
	}
	old, err := ask(oldKey)
	if err != nil || old[0] != before[0] {
		t.Fatalf("a client of the old key during the overlap: %v %v (before: %v)", old, err, before)
	}
	fresh, err := ask(newKey)
	if err != nil || fresh[0] == old[0] {
		t.Fatalf("a client of the new key: %v %v", fresh, err)
	}
	if _, err := ask(stranger); err == nil || !strings.Contains(err.Error(), "422 unknown_key") {
		t.Fatalf("a client of a key the service does not hold: %v", err)
	}
	if _, err := NewService(ServiceConfig{Key: newKey, PreviousKey: newKey, Callers: []Caller{{Name: "gw", Token: []byte("a-token-of-sixteen-bytes")}}}); err == nil {
		t.Fatal("a service whose previous key is its key in force started")
	}
}

// BenchmarkFirstSeenHTTP is a client's latency for one identifier it has
// not seen, through the service over loopback HTTP (blind, POST, evaluate
// and prove, verify, unblind), with its p50 and p99.
func BenchmarkFirstSeenHTTP(b *testing.B) {
	ctx := context.Background()
	key, err := pseudonym.GenerateKey()
	if err != nil {
		b.Fatal(err)
	}
	svc, err := NewService(ServiceConfig{Key: key, Limit: ratelimit.Limit{Rate: 1e9, Burst: 1e9},
		Callers: []Caller{{Name: "gw", Token: []byte("a-token-of-sixteen-bytes")}}})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(svc.Handler())
	defer srv.Close()
	c := pseudonym.NewClient(key.Public(), pseudonym.HTTPEvaluate(srv.URL, "a-token-of-sixteen-bytes", nil), -1)
	var took []time.Duration
	i := 0
	for b.Loop() {
		i++
		t0 := time.Now()
		if _, err := c.Pseudonyms(ctx, pseudonym.KindPhone, []string{"+1415" + strconv.Itoa(i)}); err != nil {
			b.Fatal(err)
		}
		took = append(took, time.Since(t0))
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(took[len(took)*99/100].Microseconds()), "p99-µs")
}

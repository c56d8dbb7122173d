package identity

import (
	"context"
	"crypto/ed25519"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/mediatorhq/mediator/dev"
)

// jwksServer serves a dev issuer's JWKS, and can be made to stall (hang
// until released) or fail; it counts requests.
type jwksServer struct {
	jwks   []byte
	stall  atomic.Bool
	fail   atomic.Bool
	hits   atomic.Int64
	unhang chan struct{}
}

func (s *jwksServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.hits.Add(1)
	if s.stall.Load() {
		select {
		case <-s.unhang:
		case <-r.Context().Done():
		}
		return
	}
	if s.fail.Load() {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	w.Write(s.jwks)
}

// clock is a settable time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }

// TestURLKeysNeverSerializeOnTheProvider plays an identity provider that
// hangs: callers with a stale set are answered at once from the last good
// set, one fetch runs (never ten), the set is refused past its maximum
// age, and an unknown kid starts a refetch at most once per interval.
func TestURLKeysNeverSerializeOnTheProvider(t *testing.T) {
	dir := t.TempDir()
	iss, err := dev.LoadOrCreateIssuer(dir)
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := os.ReadFile(dev.JWKSPath(dir))
	srv := &jwksServer{jwks: jwks, unhang: make(chan struct{})}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	var release sync.Once
	unhang := func() { release.Do(func() { close(srv.unhang) }) }
	defer unhang()
	c := &clock{t: time.Now()}
	keys := NewURLKeys(ts.URL)
	keys.now = c.now
	v, err := NewVerifier(dev.IssuerName, dev.Audience, keys)
	if err != nil {
		t.Fatal(err)
	}
	v.now = c.now
	tok, _ := iss.Issue("alice", []string{"auditor"}, 24*time.Hour)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("the first verification: %v", err)
	}

	// Stale, and the provider hangs: ten callers at once.
	c.add(keys.Refresh + time.Second)
	srv.stall.Store(true)
	var wg sync.WaitGroup
	var slowest atomic.Int64
	for range 10 {
		wg.Go(func() {
			t0 := time.Now()
			if _, err := v.Verify(context.Background(), tok); err != nil {
				t.Errorf("a caller with a stale set: %v", err)
			}
			if d := int64(time.Since(t0)); d > slowest.Load() {
				slowest.Store(d)
			}
		})
	}
	wg.Wait()
	if d := time.Duration(slowest.Load()); d > 200*time.Millisecond {
		t.Errorf("a caller waited %s on a hanging provider", d)
	}
	time.Sleep(50 * time.Millisecond)
	if n := srv.hits.Load(); n != 2 {
		t.Errorf("the provider was asked %d times, want 2 (the first fetch and one refresh)", n)
	}

	// Past the maximum age with the provider failing: fail closed.
	srv.fail.Store(true)
	srv.stall.Store(false)
	unhang()
	time.Sleep(50 * time.Millisecond)
	c.add(keys.MaxAge)
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, ErrKeysTooOld) {
		t.Fatalf("past the maximum age: %v", err)
	}

	// The provider is back: after the backoff a fetch succeeds. A failing
	// fetch may still be running and set a new backoff when it ends, so
	// the clock moves past the longest backoff on every try.
	srv.fail.Store(false)
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.add(2 * jwksMaxBackoff)
		if _, err := v.Verify(context.Background(), tok); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the keys were not refreshed once the provider was back")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Unknown kids: one refetch per interval, however many tokens.
	before := srv.hits.Load()
	_, other, _ := ed25519.GenerateKey(nil)
	now := c.now()
	forged := sign(t, other, "rotated-kid", jose.EdDSA, jwt.Claims{Issuer: dev.IssuerName, Audience: jwt.Audience{dev.Audience}, Subject: "mallory",
		Expiry: jwt.NewNumericDate(now.Add(time.Hour)), NotBefore: jwt.NewNumericDate(now.Add(-time.Minute))}, []string{"admin"})
	for range 5 {
		v.Verify(context.Background(), forged)
	}
	time.Sleep(50 * time.Millisecond)
	if n := srv.hits.Load() - before; n != 1 {
		t.Errorf("unknown kids started %d refetches within the interval, want 1", n)
	}
}

// TestKeysReadyFollowsTheKeySet: readiness says what a token check would
// meet. A provider that never answered, or whose last good set is past its
// maximum age, is not ready; a set within its age is, whether or not the
// provider answers now.
func TestKeysReadyFollowsTheKeySet(t *testing.T) {
	dir := t.TempDir()
	if _, err := dev.LoadOrCreateIssuer(dir); err != nil {
		t.Fatal(err)
	}
	jwks, _ := os.ReadFile(dev.JWKSPath(dir))
	srv := &jwksServer{jwks: jwks, unhang: make(chan struct{})}
	srv.fail.Store(true)
	ts := httptest.NewServer(srv)
	defer ts.Close()
	c := &clock{t: time.Now()}
	keys := NewURLKeys(ts.URL)
	keys.now = c.now
	v, err := NewVerifier(dev.IssuerName, dev.Audience, keys)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := v.KeysReady(ctx); err == nil {
		t.Fatal("ready with a provider that never answered")
	}

	srv.fail.Store(false)
	c.add(2 * jwksMaxBackoff) // past the first failure's backoff
	if err := v.KeysReady(ctx); err != nil {
		t.Fatalf("not ready once the provider answered: %v", err)
	}

	// The provider fails: ready while the set is younger than MaxAge.
	srv.fail.Store(true)
	c.add(keys.MaxAge - time.Minute)
	if err := v.KeysReady(ctx); err != nil {
		t.Fatalf("not ready with a set within its maximum age: %v", err)
	}
	time.Sleep(50 * time.Millisecond) // the refresh it started fails
	c.add(time.Minute)
	if err := v.KeysReady(ctx); !errors.Is(err, ErrKeysTooOld) {
		t.Fatalf("past the maximum age with no refresh: %v, want ErrKeysTooOld", err)
	}

	// A JWKS file: ready while it is there, not once it is gone.
	fileKeys, err := NewFileKeys(dev.JWKSPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	fv, _ := NewVerifier(dev.IssuerName, dev.Audience, fileKeys)
	if err := fv.KeysReady(ctx); err != nil {
		t.Fatalf("a JWKS file: %v", err)
	}
	os.Remove(dev.JWKSPath(dir))
	if err := fv.KeysReady(ctx); err == nil {
		t.Fatal("ready with the JWKS file gone")
	}
}

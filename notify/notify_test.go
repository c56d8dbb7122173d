package notify

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mediatorhq/mediator/wire"
)

// receiver is a webhook endpoint that verifies each delivery as the docs
// tell receivers to, and keeps what it got.
type receiver struct {
	mu     sync.Mutex
	got    []map[string]any
	bad    int
	fail   int // answer 500 to this many deliveries first
	secret []byte
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.fail > 0 {
		rc.fail--
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	if err := Verify(rc.secret, r.Header.Get(SignatureHeader), body, time.Now(), 5*time.Minute); err != nil {
		rc.bad++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var m map[string]any
	json.Unmarshal(body, &m)
	m["_event_id_header"] = r.Header.Get(EventIDHeader)
	rc.got = append(rc.got, m)
}

func (rc *receiver) events() []map[string]any {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]map[string]any(nil), rc.got...)
}

func secretFile(t *testing.T, secret string) string {
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestDeliveriesAreSignedRetriedAndNeverBlock: a receiver that fails
// twice gets the event on the third try, signed so that it verifies; a
// receiver that hangs delays neither Notify nor the other receiver.
func TestDeliveriesAreSignedRetriedAndNeverBlock(t *testing.T) {
	secret := strings.Repeat("s", 40)
	good := &receiver{secret: []byte(secret), fail: 2}
	gs := httptest.NewServer(good)
	defer gs.Close()
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	defer hang.Close()
	defer close(release)

	n, err := New(Config{Hooks: []Hook{{URL: hang.URL, SecretFile: secretFile(t, secret)}, {URL: gs.URL, SecretFile: secretFile(t, secret)}},
		FirstRetry: 10 * time.Millisecond, Client: &http.Client{Timeout: 30 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go n.Run(ctx)
	start := time.Now()
	for i := 0; i < 3; i++ {
		n.Notify(ctx, wire.Event{Type: wire.EventRequestFiled, RequestID: "7c3f8a9e-0000-4000-8000-00000000000" + string(rune('1'+i)), Status: "pending", OccurredAt: time.Now()})
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("Notify took %s with a receiver that hangs", d)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(good.events()) < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	got := good.events()
	if len(got) != 3 || good.bad != 0 {
		t.Fatalf("the good receiver got %d events, %d with bad signatures", len(got), good.bad)
	}
	if got[0]["type"] != wire.EventRequestFiled || got[0]["id"] != got[0]["_event_id_header"] || got[0]["status"] != "pending" {
		t.Fatalf("event: %v", got[0])
	}
}

func TestVerifyRefusesTamperingAndReplays(t *testing.T) {
	secret := []byte(strings.Repeat("k", 32))
	body := []byte(`{"type":"access_request.filed"}`)
	now := time.Now()
	h := Sign(secret, now, body)
	if err := Verify(secret, h, body, now, time.Minute); err != nil {
		t.Fatalf("a genuine delivery: %v", err)
	}
	for name, c := range map[string]struct {
		secret []byte
		header string
		body   []byte
		now    time.Time
	}{
		"another body":   {secret, h, []byte(`{"type":"roster.adopted"}`), now},
		"another secret": {[]byte(strings.Repeat("x", 32)), h, body, now},
		"an old replay":  {secret, h, body, now.Add(10 * time.Minute)},
		"no header":      {secret, "", body, now},
		"garbage":        {secret, "t=x,v1=zz", body, now},
	} {
		if err := Verify(c.secret, c.header, c.body, c.now, time.Minute); !errors.Is(err, ErrSignature) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestShortSecretsAreRefused(t *testing.T) {
	if _, err := New(Config{Hooks: []Hook{{URL: "https://example.invalid/hook", SecretFile: secretFile(t, "short")}}}); err == nil {
		t.Fatal("a 5-byte secret was accepted")
	}
}

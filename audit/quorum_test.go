package audit

import (
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/mediatorhq/mediator/witness"
)

// TestWitnessQuorumFollowsTheLatestRound: the log reports the witness
// quorum as its checkpoint job last found it: fine before any round (an
// empty log) and while the quorum cosigns, ErrWitnessQuorum once a round
// finds fewer, fine again once they are back.
func TestWitnessQuorumFollowsTheLatestRound(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	skey, vkey, _ := note.GenerateKey(rand.Reader, testOrigin)
	key, err := ParseCheckpointKey(skey, testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	logVerifier, _ := note.NewVerifier(vkey)
	var down atomic.Bool
	policy := WitnessPolicy{Quorum: 2}
	for _, name := range []string{"witness.test/a", "witness.test/b"} {
		seed := make([]byte, 32)
		rand.Read(seed)
		signer, wvkey, err := witness.NewSigner(name, seed)
		if err != nil {
			t.Fatal(err)
		}
		wv, _ := witness.NewVerifier(wvkey)
		inner := witness.New(signer, &memWitnessStore{m: map[string]witness.Checkpoint{}}, witness.Log{Origin: testOrigin, Verifiers: []note.Verifier{logVerifier}}).Handler()
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if down.Load() && name == "witness.test/b" {
				http.Error(w, "down", http.StatusServiceUnavailable)
				return
			}
			inner.ServeHTTP(w, r)
		}))
		t.Cleanup(srv.Close)
		policy.Witnesses = append(policy.Witnesses, Witness{Name: name, URL: srv.URL, Verifier: wv})
	}
	l, closeLog, err := Open(ctx, Config{Pool: f.pool, Origin: testOrigin, Key: key, CheckpointInterval: 50 * time.Millisecond, Witnesses: policy})
	if err != nil {
		t.Fatal(err)
	}
	defer closeLog(ctx)
	until := func(what string, ok func(error) bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			err := l.WitnessQuorum(ctx)
			if ok(err) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: WitnessQuorum = %v", what, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	down.Store(true) // no round asks them while the log is empty
	time.Sleep(200 * time.Millisecond)
	if err := l.WitnessQuorum(ctx); err != nil {
		t.Fatalf("an empty log: %v", err)
	}

	if _, err := l.Append(ctx, entries(0, 10, "q")); err != nil {
		t.Fatal(err)
	}
	until("one of two witnesses down", func(err error) bool { return errors.Is(err, ErrWitnessQuorum) })

	down.Store(false)
	until("both witnesses back", func(err error) bool { return err == nil })
	if cp, err := l.LatestCheckpoint(ctx); err != nil || cp.Size != 10 {
		t.Fatalf("published once the quorum cosigned: %d %v", cp.Size, err)
	}

	// No witness configured: never a quorum to miss.
	g := newFixture(t)
	bare, closeBare, err := Open(ctx, Config{Pool: g.pool, Origin: testOrigin, Key: key, CheckpointInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer closeBare(ctx)
	if _, err := bare.Append(ctx, entries(0, 3, "q")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if err := bare.WitnessQuorum(ctx); err != nil {
		t.Fatalf("no witnesses configured: %v", err)
	}
}

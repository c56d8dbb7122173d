package audit

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/mediatorhq/mediator/test/harness"
	"github.com/mediatorhq/mediator/witness"
)

// TestWitnessQuorumFollowsTheLatestRound: the log reports the witness
// quorum as its checkpoint job last found it: fine before any round (an
// empty log) and while the quorum cosigns, ErrWitnessQuorum once a round
// finds fewer, fine again once they are back.
func TestWitnessQuorumFollowsTheLatestRound(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	key, vkey := newLogKey(t)
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
		inner := witness.New(signer, harness.NewWitnessStore(), witness.Log{Origin: testOrigin, Verifiers: []note.Verifier{logVerifier}}).Handler()
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

// TestPublicationFollowsNestedGroups: a C2SP tlog-policy quorum of
// groups, "any of the custodians and all of external", decides
// publication: with both custodians cosigning but the external witness
// down nothing is published, though two cosignatures exceed the fewest
// the policy can be met with; with one custodian and the external witness
// it is. A policy that lists logs but not this one's key is refused.
func TestPublicationFollowsNestedGroups(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	key, vkey := newLogKey(t)
	text, down := startWitnesses(t, vkey, "custodian.a", "custodian.b", "external.c")
	text = "log " + vkey + "\n" + text
	text += "group custodians any A B\ngroup external all C\ngroup both all custodians external\nquorum both\n"
	policy, err := ParseWitnessPolicy([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if policy.MinCosigners() != 2 {
		t.Fatalf("the fewest cosigners: %d, want 2", policy.MinCosigners())
	}
	l, closeLog, err := Open(ctx, Config{Pool: f.pool, Origin: testOrigin, Key: key, CheckpointInterval: 50 * time.Millisecond, Witnesses: policy})
	if err != nil {
		t.Fatal(err)
	}
	defer closeLog(ctx)
	down["external.c"].Store(true)
	if _, err := l.Append(ctx, entries(0, 10, "g")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := l.WitnessQuorum(ctx)
		if errors.Is(err, ErrWitnessQuorum) && strings.Contains(err.Error(), "2 cosigned") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("both custodians, no external: WitnessQuorum = %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := l.LatestCheckpoint(ctx); !errors.Is(err, ErrNotFound) {
		t.Fatalf("published without the external group: %v", err)
	}
	down["external.c"].Store(false)
	down["custodian.a"].Store(true)
	deadline = time.Now().Add(5 * time.Second)
	for {
		cp, err := l.LatestCheckpoint(ctx)
		if err == nil && cp.Size == 10 {
			if _, ok := policy.Satisfied([]byte(cp.Note)); !ok {
				t.Fatal("the published note does not satisfy the policy")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not published with the external witness back: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	_, otherKey, _ := note.GenerateKey(rand.Reader, testOrigin)
	wrong, err := ParseWitnessPolicy([]byte(strings.Replace(text, "log "+vkey, "log "+otherKey, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Open(ctx, Config{Pool: f.pool, Origin: testOrigin, Key: key, CheckpointInterval: time.Second, Witnesses: wrong}); err == nil || !strings.Contains(err.Error(), "not this log's key") {
		t.Fatalf("a policy for another log: %v", err)
	}
}

// startWitnesses starts a witness of the log with verifier key vkey for
// each name, each answering 503 while its flag is set, and returns their
// tlog-policy witness lines (named A, B, C… by position) and the flags.
func startWitnesses(t *testing.T, vkey string, names ...string) (string, map[string]*atomic.Bool) {
	t.Helper()
	logVerifier, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	down := map[string]*atomic.Bool{}
	text := ""
	for i, name := range names {
		seed := make([]byte, 32)
		rand.Read(seed)
		signer, wvkey, err := witness.NewSigner(name, seed)
		if err != nil {
			t.Fatal(err)
		}
		inner := witness.New(signer, harness.NewWitnessStore(), witness.Log{Origin: testOrigin, Verifiers: []note.Verifier{logVerifier}}).Handler()
		flag := &atomic.Bool{}
		down[name] = flag
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if flag.Load() {
				http.Error(w, "down", http.StatusServiceUnavailable)
				return
			}
			inner.ServeHTTP(w, r)
		}))
		t.Cleanup(srv.Close)
		text += fmt.Sprintf("witness %c %s %s\n", 'A'+i, wvkey, srv.URL)
	}
	return text, down
}

// newLogKey returns a fresh checkpoint key of the test log and its
// verifier key.
func newLogKey(t testing.TB) (CheckpointKey, string) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ParseCheckpointKey(skey, testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	return key, vkey
}

package audit

import (
	"context"
	"crypto/rand"
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

// TestPublishedOnlyWithTheWitnessQuorum: with two witnesses and a quorum
// of two, the log serves a checkpoint only once both cosigned it, with
// both cosignatures on the note; while one is down, new checkpoints are
// signed but the served one stays where it was; when it is back, serving
// resumes at the newest.
func TestPublishedOnlyWithTheWitnessQuorum(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	skey, vkey, _ := note.GenerateKey(rand.Reader, testOrigin)
	key, err := ParseCheckpointKey(skey, testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	logVerifier, _ := note.NewVerifier(vkey)
	var down atomic.Bool
	var policy WitnessPolicy
	policy.Quorum = 2
	var verifiers []note.Verifier
	for i, name := range []string{"witness.test/a", "witness.test/b"} {
		seed := make([]byte, 32)
		rand.Read(seed)
		signer, wvkey, err := witness.NewSigner(name, seed)
		if err != nil {
			t.Fatal(err)
		}
		wv, _ := witness.NewVerifier(wvkey)
		verifiers = append(verifiers, wv)
		h := witness.New(signer, harness.NewWitnessStore(), witness.Log{Origin: testOrigin, Verifiers: []note.Verifier{logVerifier}}).Handler()
		if i == 1 {
			inner := h
			h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if down.Load() {
					http.Error(w, "down", http.StatusServiceUnavailable)
					return
				}
				inner.ServeHTTP(w, r)
			})
		}
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		policy.Witnesses = append(policy.Witnesses, Witness{Name: name, URL: srv.URL, Verifier: wv})
	}
	l, closeLog, err := Open(ctx, Config{Pool: f.pool, Origin: testOrigin, Key: key, CheckpointInterval: 50 * time.Millisecond, Witnesses: policy})
	if err != nil {
		t.Fatal(err)
	}
	defer closeLog(ctx)
	served := func(want int64) string {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			cp, err := l.LatestCheckpoint(ctx)
			if err == nil && cp.Size == want {
				return cp.Note
			}
			if time.Now().After(deadline) {
				t.Fatalf("the served checkpoint is %d (%v), want %d", cp.Size, err, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if _, err := l.Append(ctx, entries(0, 10, "w")); err != nil {
		t.Fatal(err)
	}
	n := served(10)
	opened, err := note.Open([]byte(n), note.VerifierList(append([]note.Verifier{logVerifier}, verifiers...)...))
	if err != nil || len(opened.Sigs) != 3 {
		t.Fatalf("the served note: %v, %d signatures\n%s", err, len(opened.Sigs), n)
	}

	// One witness down: checkpoints go on being signed, not published.
	down.Store(true)
	if _, err := l.Append(ctx, entries(10, 5, "w")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		latest, err := f.store.latestStored(ctx)
		if err == nil && latest.Size == 15 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint signed at 15")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	if cp, _ := l.LatestCheckpoint(ctx); cp.Size != 10 {
		t.Fatalf("published %d without the quorum", cp.Size)
	}
	// Back: the newest checkpoint is cosigned and published.
	down.Store(false)
	served(15)

	// audit verify with the policy: the newest checkpoint meets it, and a
	// cosignature row someone wrote is named.
	rep, err := f.store.verify(ctx, logVerifier)
	if err != nil || !rep.OK() {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	if err := f.store.checkWitnesses(ctx, rep, policy, logVerifier); err != nil || !rep.OK() || rep.Witnessed < 2 {
		t.Fatalf("witnesses: %+v %v", rep, err)
	}
	if _, err := f.pool.Exec(ctx, `INSERT INTO audit_cosignatures (tree_size, witness, line) VALUES (10, 'witness.test/c', '— witness.test/c AAAA
')`); err != nil {
		t.Fatal(err)
	}
	stricter := policy
	_, extra, _ := witness.NewSigner("witness.test/c", make([]byte, 32))
	ev, _ := witness.NewVerifier(extra)
	stricter.Witnesses = append(append([]Witness(nil), policy.Witnesses...), Witness{Name: "witness.test/c", URL: "http://127.0.0.1:1", Verifier: ev})
	stricter.Quorum = 3
	rep, _ = f.store.verify(ctx, logVerifier)
	if err := f.store.checkWitnesses(ctx, rep, stricter, logVerifier); err != nil || rep.OK() ||
		!strings.Contains(strings.Join(rep.Problems, "\n"), "checkpoint 10: the stored cosignature of witness witness.test/c does not verify") ||
		!strings.Contains(strings.Join(rep.Problems, "\n"), "the newest: cosigned by 2 witnesses, short of the policy's quorum 3 of 3") {
		t.Fatalf("a forged cosignature and a stricter policy: %+v %v", rep, err)
	}

	// A bundle carries the cosigned checkpoint; a stricter policy refuses it.
	var buf strings.Builder
	if _, err := l.WriteBundle(ctx, &buf, Query{AfterSeq: -1}); err != nil {
		t.Fatal(err)
	}
	if rep, err := VerifyBundleWitnessed(strings.NewReader(buf.String()), policy, logVerifier); err != nil || !rep.OK() {
		t.Fatalf("the bundle under the policy: %+v %v", rep, err)
	}
	if rep, err := VerifyBundleWitnessed(strings.NewReader(buf.String()), stricter, logVerifier); err != nil || rep.OK() {
		t.Fatalf("the bundle under a stricter policy: %+v %v", rep, err)
	}
}

func TestParseWitnessPolicy(t *testing.T) {
	seed := make([]byte, 32)
	_, vkey, err := witness.NewSigner("custodian-1", seed)
	if err != nil {
		t.Fatal(err)
	}
	good := `{"quorum":1,"witnesses":[{"name":"custodian-1","url":"http://127.0.0.1:1","verifier_key":"` + vkey + `"}]}`
	if p, err := ParseWitnessPolicy([]byte(good)); err != nil || p.MinCosigners() != 1 || len(p.Witnesses) != 1 {
		t.Fatalf("%+v %v", p, err)
	}
	for name, bad := range map[string]string{
		"quorum too large": `{"quorum":2,"witnesses":[{"name":"custodian-1","url":"http://127.0.0.1:1","verifier_key":"` + vkey + `"}]}`,
		"quorum zero":      `{"quorum":0,"witnesses":[{"name":"custodian-1","url":"http://127.0.0.1:1","verifier_key":"` + vkey + `"}]}`,
		"another name":     `{"quorum":1,"witnesses":[{"name":"custodian-2","url":"http://127.0.0.1:1","verifier_key":"` + vkey + `"}]}`,
		"not a key":        `{"quorum":1,"witnesses":[{"name":"custodian-1","url":"http://127.0.0.1:1","verifier_key":"x"}]}`,
		"unknown field":    `{"quorum":1,"k":2,"witnesses":[]}`,
	} {
		if _, err := ParseWitnessPolicy([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

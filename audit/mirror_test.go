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

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/mod/sumdb/note"

	"github.com/mediatorhq/mediator/mirror"
	"github.com/mediatorhq/mediator/witness"
)

// startMirror starts a mirror of the test log (verifier key vkey) on a
// database of its own, answering 503 while the returned flag is set, and
// returns its tlog-policy witness line (named M) and its database.
func startMirror(t *testing.T, vkey string) (string, *atomic.Bool, *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	logVerifier, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	seed := make([]byte, 32)
	rand.Read(seed)
	signer, mvkey, err := witness.NewSigner("regulator.test/mirror", seed)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, env.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	m, err := mirror.Open(ctx, pool, mirror.Options{Origin: testOrigin, LogVerifiers: []note.Verifier{logVerifier}, Signer: signer, PublicReads: true})
	if err != nil {
		t.Fatal(err)
	}
	down := &atomic.Bool{}
	inner := m.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		inner.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return fmt.Sprintf("witness M %s %s\n", mvkey, srv.URL), down, pool
}

// TestPublicationWaitsForTheMirror: with a policy that requires the
// regulator's mirror, a checkpoint is published only once the mirror
// holds every entry of it and cosigned; while the mirror is down the log
// signs checkpoints but publishes none newer, and the witness answers
// show it; back up, the mirror catches up and publication resumes.
func TestPublicationWaitsForTheMirror(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	key, vkey := newLogKey(t)
	witnesses, _ := startWitnesses(t, vkey, "custodian.a")
	mirrorLine, down, mirrorDB := startMirror(t, vkey)
	policy, err := ParseWitnessPolicy([]byte("log " + vkey + "\n" + witnesses + mirrorLine +
		"group regulator all M\ngroup both all A regulator\nquorum both\n"))
	if err != nil {
		t.Fatal(err)
	}
	metrics := NewMetrics(prometheus.NewRegistry())
	l, closeLog, err := Open(ctx, Config{Pool: f.pool, Origin: testOrigin, Key: key, CheckpointInterval: 50 * time.Millisecond, Witnesses: policy, Metrics: metrics})
	if err != nil {
		t.Fatal(err)
	}
	defer closeLog(ctx)
	mirrored := func() int64 {
		var n int64
		if err := mirrorDB.QueryRow(ctx, "SELECT count(*) FROM mirror_entries").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	published := func(size int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			cp, err := l.LatestCheckpoint(ctx)
			if err == nil && cp.Size == size {
				if !strings.Contains(cp.Note, "— regulator.test/mirror ") {
					t.Fatalf("published without the mirror's cosignature:\n%s", cp.Note)
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("not published at %d: %v, %+v", size, err, cp)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if _, err := l.Append(ctx, entries(0, 1000, "m")); err != nil {
		t.Fatal(err)
	}
	published(1000)
	if n := mirrored(); n != 1000 {
		t.Fatalf("the mirror holds %d entries of a published 1000", n)
	}

	down.Store(true)
	if _, err := l.Append(ctx, entries(1000, 700, "m")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var signed int64
		if err := f.pool.QueryRow(ctx, "SELECT max(tree_size) FROM audit_checkpoints").Scan(&signed); err != nil {
			t.Fatal(err)
		}
		unavailable := testutil.ToFloat64(metrics.witnessAnswers.WithLabelValues("regulator.test/mirror", "unavailable"))
		if signed == 1700 && unavailable > 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("with the mirror down: signed %d, %v unavailable answers", signed, unavailable)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if cp, err := l.LatestCheckpoint(ctx); err != nil || cp.Size != 1000 {
		t.Fatalf("published while the required mirror was down: %+v, %v", cp, err)
	}
	if err := l.WitnessQuorum(ctx); !errors.Is(err, ErrWitnessQuorum) {
		t.Fatalf("WitnessQuorum with the mirror down = %v", err)
	}

	down.Store(false)
	published(1700)
	if n := mirrored(); n != 1700 {
		t.Fatalf("the mirror holds %d entries of a published 1700", n)
	}
}

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
	down := &atomic.Bool{}
	line, pool := startMirrorWith(t, vkey, func(inner http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if down.Load() {
				http.Error(w, "down", http.StatusServiceUnavailable)
				return
			}
			inner.ServeHTTP(w, r)
		})
	})
	return line, down, pool
}

// startMirrorWith starts a mirror as startMirror does, its handler
// wrapped by wrap.
func startMirrorWith(t *testing.T, vkey string, wrap func(http.Handler) http.Handler) (string, *pgxpool.Pool) {
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
	srv := httptest.NewServer(wrap(m.Handler()))
	t.Cleanup(srv.Close)
	return fmt.Sprintf("witness M %s %s\n", mvkey, srv.URL), pool
}

// TestASlowMirrorHoldsBackNoOne: with a policy that needs witness A only,
// a mirror whose add-entries does not answer for as long as the test
// holds it back does not hold back the checkpoints signed after it, nor
// their publication with A's cosignature; and its upload is not cut short
// by the rounds that go on meanwhile: once let go, the mirror cosigns the
// checkpoint it was receiving.
func TestASlowMirrorHoldsBackNoOne(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	key, vkey := newLogKey(t)
	witnesses, _ := startWitnesses(t, vkey, "custodian.a")
	hold := make(chan struct{})
	var held atomic.Int32
	mirrorLine, mirrorDB := startMirrorWith(t, vkey, func(inner http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/add-entries") {
				held.Add(1)
				<-hold
			}
			inner.ServeHTTP(w, r)
		})
	})
	policy, err := ParseWitnessPolicy([]byte("log " + vkey + "\n" + witnesses + mirrorLine + "quorum A\n"))
	if err != nil {
		t.Fatal(err)
	}
	metrics := NewMetrics(prometheus.NewRegistry())
	l, closeLog, err := Open(ctx, Config{Pool: f.pool, Origin: testOrigin, Key: key, CheckpointInterval: 50 * time.Millisecond, Witnesses: policy, Metrics: metrics})
	if err != nil {
		t.Fatal(err)
	}
	defer closeLog(ctx)
	defer func() {
		select {
		case <-hold:
		default:
			close(hold)
		}
	}()
	published := func(size int64) {
		t.Helper()
		// A round gives up on the mirror after 2 s, and the rounds after it
		// do not wait for an upload in flight; without that, a round
		// waited for its own 10 s bound and nothing newer was signed.
		for deadline := time.Now().Add(8 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if cp, err := l.LatestCheckpoint(ctx); err == nil && cp.Size == size {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("publication of %d entries with A's cosignature waited for the held mirror", size)
			}
		}
	}
	if _, err := l.Append(ctx, entries(0, 300, "s")); err != nil {
		t.Fatal(err)
	}
	published(300)
	for held.Load() == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := l.Append(ctx, entries(300, 200, "s")); err != nil {
		t.Fatal(err)
	}
	published(500)
	if held.Load() != 1 {
		t.Fatalf("%d add-entries requests reached the held mirror; want the one upload, not a new one per round", held.Load())
	}
	close(hold)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var n, cosigned int64
		if err := mirrorDB.QueryRow(ctx, "SELECT count(*) FROM mirror_entries").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if err := f.pool.QueryRow(ctx, "SELECT count(*) FROM audit_cosignatures WHERE witness = 'regulator.test/mirror' AND tree_size = 300").Scan(&cosigned); err != nil {
			t.Fatal(err)
		}
		// The upload counts its answer just after it stores the line. A
		// round after the held one may already have sent the mirror the
		// next 200 entries.
		counted := testutil.ToFloat64(metrics.witnessAnswers.WithLabelValues("regulator.test/mirror", "cosigned"))
		if n >= 300 && cosigned == 1 && counted >= 1 {
			break
		}
		if time.Now().After(deadline) {
			var results []string
			for _, r := range []string{"cosigned", "mirror_behind", "unavailable", "refused", "conflict"} {
				results = append(results, fmt.Sprintf("%s=%v", r, testutil.ToFloat64(metrics.witnessAnswers.WithLabelValues("regulator.test/mirror", r))))
			}
			t.Fatalf("after the hold: the mirror holds %d entries, its cosignature of 300 stored %d times; answers %v", n, cosigned, results)
		}
	}
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

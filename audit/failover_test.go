package audit

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/note"

	"github.com/mediatorhq/mediator/dev/servers"
	"github.com/mediatorhq/mediator/migrations"
	"github.com/mediatorhq/mediator/pgsession"
	"github.com/mediatorhq/mediator/test/harness"
	"github.com/mediatorhq/mediator/witness"
)

// TestALostTailHaltsTheLog plays a misconfigured deployment: the standby
// replicates asynchronously and was behind when the primary died. The
// witness had cosigned 15 entries; the promoted standby holds 10. A
// mediator that starts on it (with no memory of what it signed) must find
// out from the witness, halt the log, append nothing and sign nothing: no
// fork of what the witness cosigned is ever signed.
func TestALostTailHaltsTheLog(t *testing.T) {
	ctx := context.Background()
	primary, standby, _ := startPrimaryAndStandby(t, "lost_tail")
	multi := fmt.Sprintf("postgres://postgres@127.0.0.1:%d,127.0.0.1:%d/lost_tail?sslmode=disable&connect_timeout=2&target_session_attrs=read-write",
		primary.Port(), standby.Port())

	skey, vkey, _ := note.GenerateKey(rand.Reader, testOrigin)
	key, _ := ParseCheckpointKey(skey, testOrigin)
	logVerifier, _ := note.NewVerifier(vkey)
	seed := make([]byte, 32)
	rand.Read(seed)
	wsigner, wvkey, _ := witness.NewSigner("witness.test/a", seed)
	wv, _ := witness.NewVerifier(wvkey)
	wstore := harness.NewWitnessStore()
	srv := httptest.NewServer(witness.New(wsigner, wstore, witness.Log{Origin: testOrigin, Verifiers: []note.Verifier{logVerifier}}).Handler())
	t.Cleanup(srv.Close)
	policy := WitnessPolicy{Quorum: 1, Witnesses: []Witness{{Name: "witness.test/a", URL: srv.URL, Verifier: wv}}}

	openLog := func(reg prometheus.Registerer) (*Log, func(context.Context) error, *pgxpool.Pool) {
		t.Helper()
		cfg, err := pgxpool.ParseConfig(multi)
		if err != nil {
			t.Fatal(err)
		}
		pgsession.Configure(cfg.ConnConfig)
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		l, closeLog, err := Open(ctx, Config{Pool: pool, Origin: testOrigin, Key: key, CheckpointInterval: 50 * time.Millisecond,
			LeaderInterval: 100 * time.Millisecond, Witnesses: policy, Metrics: NewMetrics(reg)})
		if err != nil {
			t.Fatal(err)
		}
		return l, closeLog, pool
	}
	witnessed := func() int64 {
		c, _, _ := wstore.Latest(ctx, testOrigin)
		return c.Size
	}
	published := func(l *Log, want int64) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if cp, err := l.LatestCheckpoint(ctx); err == nil && cp.Size == want && witnessed() == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("no checkpoint of %d entries published; the witness holds %d", want, witnessed())
			}
		}
	}

	l, closeLog, pool := openLog(nil)
	if _, err := l.Append(ctx, entries(0, 10, "t")); err != nil {
		t.Fatal(err)
	}
	published(l, 10)
	waitReplayed(t, ctx, primary, standby)

	// The standby falls behind (here: it is stopped), the primary goes on,
	// and the witness cosigns 15 entries the standby never receives.
	standby.Down()
	if _, err := l.Append(ctx, entries(10, 5, "t")); err != nil {
		t.Fatal(err)
	}
	published(l, 15)

	// The primary is lost with the mediator; the standby is promoted.
	primary.Kill()
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	_ = closeLog(cctx)
	cancel()
	pool.Close()
	if err := standby.Up(ctx); err != nil {
		t.Fatal(err)
	}
	if err := standby.Promote(ctx); err != nil {
		t.Fatal(err)
	}

	reg := prometheus.NewRegistry()
	l2, closeLog2, pool2 := openLog(reg)
	defer pool2.Close()
	defer closeLog2(ctx)
	// Appends may race the checkpointer's first round; whatever lands
	// before the halt, nothing is signed over it.
	_, _ = l2.Append(ctx, entries(100, 3, "after"))
	halted := func() bool { return gauge(t, reg, "mediator_audit_halted") == 1 }
	for deadline := time.Now().Add(10 * time.Second); !halted(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the log was not halted on a tail the witness had cosigned")
		}
	}
	var h *HaltError
	if _, err := l2.Append(ctx, entries(200, 1, "after")); !errors.As(err, &h) || !errors.Is(err, ErrHalted) || h.TreeSize < 10 || h.SignedSize != 15 {
		t.Fatalf("an append to the halted log: %v (%+v)", err, h)
	}
	time.Sleep(300 * time.Millisecond) // several checkpoint rounds
	var signed int64
	if err := pool2.QueryRow(ctx, "SELECT coalesce(max(tree_size), 0) FROM audit_checkpoints").Scan(&signed); err != nil {
		t.Fatal(err)
	}
	if signed != 10 || witnessed() != 15 {
		t.Fatalf("after the lost tail: the database's newest checkpoint is %d (want 10: nothing signed), the witness holds %d (want 15)", signed, witnessed())
	}
	if cp, err := l2.LatestCheckpoint(ctx); err != nil || cp.Size != 10 {
		t.Fatalf("published after the lost tail: %d %v", cp.Size, err)
	}
	// The service's role may not lift the halt: only the schema's owner.
	if _, err := pool2.Exec(ctx, "SET ROLE mediator_runtime; DELETE FROM audit_halt"); err == nil {
		t.Fatal("the runtime role deleted the halt")
	}
	// A superuser who deletes it lifts nothing: the next round asks the
	// witness again and halts again.
	if _, err := pool2.Exec(ctx, "RESET ROLE; DELETE FROM audit_halt"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var n int
		if err := pool2.QueryRow(ctx, "SELECT count(*) FROM audit_halt").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the halt a superuser deleted did not come back")
		}
	}
	if err := pool2.QueryRow(ctx, "SELECT coalesce(max(tree_size), 0) FROM audit_checkpoints").Scan(&signed); err != nil || signed != 10 {
		t.Fatalf("signed after the halt was deleted: %d %v", signed, err)
	}
}

// TestOneWitnessCannotHaltTheLog plays one custodian whose witness lies:
// it answers every checkpoint with a size far beyond the log (a 409 with
// no proof). With a policy of 2 of 3 witnesses, the log is not halted, and
// goes on publishing with the two honest ones.
func TestOneWitnessCannotHaltTheLog(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	key, vkey := newLogKey(t)
	honest, _ := startWitnesses(t, vkey, "custodian.a", "custodian.b")
	seed := make([]byte, 32)
	rand.Read(seed)
	_, liarKey, _ := witness.NewSigner("custodian.liar", seed)
	liar := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/x.tlog.size")
		w.WriteHeader(http.StatusConflict)
		fmt.Fprintln(w, 1_000_000_000)
	}))
	t.Cleanup(liar.Close)
	policy, err := ParseWitnessPolicy([]byte("log " + vkey + "\n" + honest + "witness L " + liarKey + " " + liar.URL + "\n" +
		"group two 2 A B L\nquorum two\n"))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	l, closeLog, err := Open(ctx, Config{Pool: f.pool, Origin: testOrigin, Key: key, CheckpointInterval: 50 * time.Millisecond,
		Witnesses: policy, Metrics: NewMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	defer closeLog(ctx)
	for i, want := range []int64{10, 20} {
		if _, err := l.Append(ctx, entries(i*10, 10, "liar")); err != nil {
			t.Fatalf("append with a lying witness: %v", err)
		}
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if cp, err := l.LatestCheckpoint(ctx); err == nil && cp.Size == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("not published at %d with the two honest witnesses", want)
			}
		}
	}
	var n int
	if err := f.pool.QueryRow(ctx, "SELECT count(*) FROM audit_halt").Scan(&n); err != nil || n != 0 {
		t.Fatalf("one lying witness halted the log: %d rows, %v", n, err)
	}
	if gauge(t, reg, "mediator_audit_halted") != 0 {
		t.Fatal("halted gauge set by one lying witness")
	}
}

// startPrimaryAndStandby starts a private PostgreSQL primary with database
// name migrated, and an asynchronous streaming standby of it; it returns
// both and the database's URL on the primary.
func startPrimaryAndStandby(t *testing.T, name string) (primary, standby *servers.Postgres, dsn string) {
	t.Helper()
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	primary, err := servers.StartPostgres(ctx, log, servers.PostgresOptions{NoLocal: true, IgnoreEnv: true})
	if err != nil {
		t.Fatalf("a private primary: %v", err)
	}
	t.Cleanup(primary.Stop)
	if dsn, err = primary.CreateDatabase(ctx, name); err != nil {
		t.Fatal(err)
	}
	if err := migrations.Apply(ctx, dsn, log); err != nil {
		t.Fatal(err)
	}
	if standby, err = servers.StartStandby(ctx, log, primary); err != nil {
		t.Fatalf("an asynchronous standby: %v", err)
	}
	t.Cleanup(standby.Stop)
	return primary, standby, dsn
}

// waitReplayed waits until standby has replayed everything primary wrote.
func waitReplayed(t *testing.T, ctx context.Context, primary, standby *servers.Postgres) {
	t.Helper()
	p, err := pgx.Connect(ctx, primary.AdminURL)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(ctx)
	s, err := pgx.Connect(ctx, standby.AdminURL)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	var lsn string
	if err := p.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var done bool
		if err := s.QueryRow(ctx, "SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", lsn).Scan(&done); err != nil {
			t.Fatal(err)
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the standby did not catch up")
		}
	}
}

// gauge reads one unlabelled gauge from reg.
func gauge(t *testing.T, reg prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return -1
}

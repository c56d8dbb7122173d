package audit

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
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
	log := slog.New(slog.DiscardHandler)
	primary, err := servers.StartPostgres(ctx, log, servers.PostgresOptions{NoLocal: true, IgnoreEnv: true})
	if err != nil {
		t.Fatalf("a private primary: %v", err)
	}
	t.Cleanup(primary.Stop)
	dsn, err := primary.CreateDatabase(ctx, "lost_tail")
	if err != nil {
		t.Fatal(err)
	}
	db, err := migrations.Open(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrations.Up(ctx, db, log); err != nil {
		t.Fatal(err)
	}
	db.Close()
	standby, err := servers.StartStandby(ctx, log, primary)
	if err != nil {
		t.Fatalf("an asynchronous standby: %v", err)
	}
	t.Cleanup(standby.Stop)
	multi := fmt.Sprintf("postgres://postgres@127.0.0.1:%d,127.0.0.1:%d/lost_tail?sslmode=disable&connect_timeout=2&target_session_attrs=read-write",
		primary.Port(), standby.Port())

	skey, vkey, _ := note.GenerateKey(rand.Reader, testOrigin)
	key, _ := ParseCheckpointKey(skey, testOrigin)
	logVerifier, _ := note.NewVerifier(vkey)
	seed := make([]byte, 32)
	rand.Read(seed)
	wsigner, wvkey, _ := witness.NewSigner("witness.test/a", seed)
	wv, _ := witness.NewVerifier(wvkey)
	wstore := &memWitnessStore{m: map[string]witness.Checkpoint{}}
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

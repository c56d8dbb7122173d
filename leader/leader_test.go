package leader

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mediatorhq/mediator/test/harness"
)

var env *harness.Env

func TestMain(m *testing.M) { harness.MainPostgres(m, &env) }

// TestOneLeadsAndAnotherTakesOver: of two processes' Runs on one database,
// exactly one runs the job; when the leader's session ends (as with a
// failover, or a process that died) the other takes over within a few
// intervals, and the first stops its job within one (the overlap the
// package comment allows); when the leader stops, the other takes over
// with no overlap at all.
func TestOneLeadsAndAnotherTakesOver(t *testing.T) {
	dsn := env.NewDatabase(t)
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	const interval = 50 * time.Millisecond
	var running atomic.Int32
	var overlap atomic.Bool
	leading := make([]atomic.Bool, 2)
	ctxs := make([]context.CancelFunc, 2)
	var wg sync.WaitGroup
	for i := range 2 {
		ctx, cancel := context.WithCancel(context.Background())
		ctxs[i] = cancel
		wg.Go(func() {
			Run(ctx, Config{Conn: cfg, Key: 42, Name: "test", Interval: interval, Logger: slog.New(slog.DiscardHandler),
				OnChange: func(held bool) { leading[i].Store(held) }},
				func(ctx context.Context) {
					if running.Add(1) > 1 {
						overlap.Store(true)
					}
					<-ctx.Done()
					running.Add(-1)
				})
		})
	}
	defer func() {
		for _, c := range ctxs {
			c()
		}
		wg.Wait()
	}()
	who := func(not int) int {
		t.Helper()
		for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			for i := range leading {
				if i != not && leading[i].Load() && running.Load() == 1 {
					return i
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("no leader other than %d within 2s", not)
			}
		}
	}
	first := who(-1)
	time.Sleep(5 * interval)
	if leading[1-first].Load() || overlap.Load() {
		t.Fatal("both lead")
	}

	// The leader's session is ended from the server's side.
	admin, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(context.Background(),
		"SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND objid = 42 AND granted"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	second := who(first)
	if d := time.Since(start); d > 20*interval {
		t.Fatalf("took over after %s", d)
	}
	// The first, its session gone, no longer leads; stopping the second
	// hands the job back.
	time.Sleep(5 * interval)
	if leading[first].Load() || running.Load() != 1 {
		t.Fatalf("the first still leads without its session (%d jobs run)", running.Load())
	}
	overlap.Store(false)
	ctxs[second]()
	who(second)
	if overlap.Load() {
		t.Fatal("two jobs ran at once")
	}
}

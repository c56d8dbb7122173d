// Package leader chooses one process, among those sharing a PostgreSQL
// database, to run a job: the one holding a session advisory lock on a
// connection of its own. When that process dies, PostgreSQL ends its
// session and frees the lock, and another takes it within one retry
// interval. When the database fails over, every session ends with the old
// primary; the lock is taken again on the new one.
//
// Leadership here is an economy, not a safety property: a connection can
// fail on the holder's side before the server notices, so for a moment
// two processes may both run the job. Jobs run under it must stay safe
// when run twice at once (the checkpointer agrees by tree size).
package leader

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
)

// Config configures Run.
type Config struct {
	// Conn is the connection configuration for the lock's own session
	// (copied; the pool's connections are never used, since a pool may
	// close or replace them).
	Conn *pgx.ConnConfig
	// Key is the advisory lock's key: one per job.
	Key int64
	// Name names the job in logs.
	Name string
	// Interval is how often a follower tries to take the lock and the
	// leader checks its session. Takeover happens within about this.
	Interval time.Duration
	Logger   *slog.Logger
	// OnChange, if set, is called with true when this process takes the
	// lock and false when it loses or leaves it (metrics).
	OnChange func(held bool)
}

// Run runs job whenever this process holds the lock, until ctx ends. job's
// context ends when the lock's session fails or ctx ends; Run waits for job
// to return, then tries to take the lock again.
func Run(ctx context.Context, cfg Config, job func(ctx context.Context)) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(cfg.Interval)
	defer t.Stop()
	var conn *pgx.Conn // a follower's session, kept between its tries
	defer func() {
		if conn != nil {
			_ = conn.Close(context.WithoutCancel(ctx))
		}
	}()
	for {
		held, err := tryLock(ctx, cfg, &conn)
		if err != nil && ctx.Err() == nil {
			log.Debug("leader: lock not taken", "job", cfg.Name, "err", err)
		}
		if held {
			log.Info("leader: this process leads", "job", cfg.Name)
			if cfg.OnChange != nil {
				cfg.OnChange(true)
			}
			lead(ctx, cfg, log, conn, job) // closes conn
			conn = nil
			if cfg.OnChange != nil {
				cfg.OnChange(false)
			}
			log.Info("leader: this process no longer leads", "job", cfg.Name)
			// It tries again a whole interval from now, so that a
			// follower, which tries every interval on a session it
			// kept, takes over first: the process whose session just
			// failed is the one most likely to fail again.
			t.Reset(cfg.Interval)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// tryLock takes the lock without waiting on *conn's session, opening one
// when there is none; a session that failed is closed and dropped, to be
// opened again on the next try (after a failover, on the new primary).
func tryLock(ctx context.Context, cfg Config, conn **pgx.Conn) (bool, error) {
	cctx, cancel := context.WithTimeout(ctx, cfg.Interval+5*time.Second)
	defer cancel()
	if *conn == nil {
		c, err := pgx.ConnectConfig(cctx, cfg.Conn.Copy())
		if err != nil {
			return false, fmt.Errorf("leader: connect: %w", err)
		}
		*conn = c
	}
	var held bool
	if err := (*conn).QueryRow(cctx, "SELECT pg_try_advisory_lock($1)", cfg.Key).Scan(&held); err != nil {
		_ = (*conn).Close(context.WithoutCancel(ctx))
		*conn = nil
		return false, fmt.Errorf("leader: try lock: %w", err)
	}
	return held, nil
}

// lead runs job while conn's session answers, then closes conn (which
// frees the lock if the session still lives).
func lead(ctx context.Context, cfg Config, log *slog.Logger, conn *pgx.Conn, job func(context.Context)) {
	jctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); job(jctx) }()
	t := time.NewTicker(cfg.Interval)
	defer t.Stop()
	for alive := true; alive; {
		select {
		case <-ctx.Done():
			alive = false
		case <-done:
			alive = false
		case <-t.C:
			pctx, cancel := context.WithTimeout(ctx, cfg.Interval+2*time.Second)
			err := conn.Ping(pctx)
			cancel()
			if err != nil && ctx.Err() == nil {
				log.Warn("leader: the lock's session failed", "job", cfg.Name, "err", err)
				alive = false
			}
		}
	}
	stop()
	<-done
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_ = conn.Close(cctx)
}

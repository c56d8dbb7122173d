// Package harness gives a test binary the real PostgreSQL and Vault that
// package dev finds or starts, and a fresh database per test.
package harness

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mediatorhq/mediator/dev/servers"
)

// Env is the real PostgreSQL and Vault that one test binary shares. Start it
// in TestMain; each test then takes a fresh database of its own.
type Env struct {
	PG    *servers.Postgres
	Vault *servers.Vault
	Log   *slog.Logger
}

// setupTimeout covers a cold Vault build (about 10 minutes on 2 cores) with
// room to spare; later runs take seconds.
const setupTimeout = 30 * time.Minute

// Start finds or starts PostgreSQL and, if withVault, Vault, logging to
// stderr which ones are in use so a test run shows it talks to real servers.
func Start(withVault bool) (*Env, error) {
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	pg, err := servers.StartPostgres(ctx, log, servers.PostgresOptions{})
	if err != nil {
		return nil, err
	}
	env := &Env{PG: pg, Log: log}
	if withVault {
		if env.Vault, err = servers.StartVault(ctx, log, servers.VaultOptions{}); err != nil {
			pg.Stop()
			return nil, err
		}
	}
	return env, nil
}

// Main is a TestMain body: it starts PostgreSQL and Vault, runs the tests,
// stops what it started and exits. If a dependency cannot start, the run
// fails with the reason; nothing is skipped.
func Main(m *testing.M, env **Env) { run(m, env, true) }

// MainPostgres is Main for packages that need only PostgreSQL.
func MainPostgres(m *testing.M, env **Env) { run(m, env, false) }

func run(m *testing.M, env **Env, withVault bool) {
	e, err := Start(withVault)
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: test dependencies did not start: %v\n", err)
		os.Exit(1)
	}
	*env = e
	code := m.Run()
	e.Close()
	os.Exit(code)
}

// Close stops whatever Start started.
func (e *Env) Close() {
	if e.Vault != nil {
		e.Vault.Stop()
	}
	e.PG.Stop()
}

// NewDatabase creates a database for t alone and drops it when t ends. It
// returns a URL that connects to it as a superuser.
func (e *Env) NewDatabase(t testing.TB) string {
	t.Helper()
	name := "mediator_test_" + strings.ToLower(rand.Text()[:12])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dsn, err := e.PG.CreateDatabase(ctx, name)
	if err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := e.PG.DropDatabase(ctx, name); err != nil {
			t.Errorf("drop test database: %v", err)
		}
	})
	return dsn
}

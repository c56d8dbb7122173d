// Package testdb gives a test a fresh PostgreSQL database with every
// migration applied, on the server the test harness found or started. It is
// apart from test/harness because the migrations' own tests use the
// harness.
package testdb

import (
	"context"
	"log/slog"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediatorhq/mediator/migrations"
	"github.com/mediatorhq/mediator/pgsession"
	"github.com/mediatorhq/mediator/test/harness"
)

// Pool creates a database for t alone, migrates it to this binary's schema
// and returns a pool on it (as a superuser), closed and dropped when t ends.
func Pool(t testing.TB, env *harness.Env) *pgxpool.Pool {
	t.Helper()
	ctx := context.Background()
	dsn := env.NewDatabase(t)
	db, err := migrations.Open(dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := migrations.Up(ctx, db, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatalf("migrate test database: %v", err)
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	pgsession.Configure(cfg.ConnConfig) // plan as the service does
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

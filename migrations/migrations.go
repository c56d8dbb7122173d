// Package migrations holds the mediator's SQL schema as numbered goose
// migrations, embedded in the binary and applied by `mediator migrate`.
// Released migrations are not edited; changes are new files. The one
// exception, 00002's creation of mediator_runtime (made conditional so an
// owner without CREATEROLE migrates), changes nothing for a database it
// already ran on: goose records versions, not checksums.
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib" // also registers the "pgx" database/sql driver
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed *.sql
var files embed.FS

// ErrBehind is wrapped by Check when the database lacks migrations this
// binary has.
var ErrBehind = errors.New("database schema is behind this binary")

// ErrAhead is wrapped by Check when the database has migrations this binary
// does not know, i.e. it was migrated by a newer mediator.
var ErrAhead = errors.New("database schema is newer than this binary")

// Open opens dsn for migrations through pgx's database/sql driver.
func Open(dsn string) (*sql.DB, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("migrations: open: %w", err)
	}
	return db, nil
}

func provider(db *sql.DB) (*goose.Provider, error) {
	// A session advisory lock makes concurrent `mediator migrate` runs (two
	// replicas starting at once) apply each migration exactly once.
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return nil, fmt.Errorf("migrations: locker: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, files, goose.WithSessionLocker(locker))
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	return p, nil
}

// Up applies every pending migration in order, each in its own transaction,
// and returns the versions it applied.
func Up(ctx context.Context, db *sql.DB, log *slog.Logger) ([]int64, error) {
	p, err := provider(db)
	if err != nil {
		return nil, err
	}
	results, err := p.Up(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrations: up: %w", err)
	}
	applied := make([]int64, 0, len(results))
	for _, r := range results {
		applied = append(applied, r.Source.Version)
		log.Info("migration applied", "version", r.Source.Version, "file", r.Source.Path, "duration_ms", float64(r.Duration.Microseconds())/1000)
	}
	return applied, nil
}

// Versions returns the database's schema version and the newest version this
// binary carries.
func Versions(ctx context.Context, db *sql.DB) (current, latest int64, err error) {
	p, err := provider(db)
	if err != nil {
		return 0, 0, err
	}
	current, latest, err = p.GetVersions(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("migrations: versions: %w", err)
	}
	return current, latest, nil
}

// Check returns nil when the database is exactly at this binary's latest
// version, and an error wrapping ErrBehind or ErrAhead otherwise. `serve`
// refuses to start unless Check passes.
func Check(ctx context.Context, db *sql.DB) error {
	current, latest, err := Versions(ctx, db)
	if err != nil {
		return err
	}
	switch {
	case current < latest:
		return fmt.Errorf("%w: database is at version %d, this binary needs %d; run `mediator migrate`", ErrBehind, current, latest)
	case current > latest:
		return fmt.Errorf("%w: database is at version %d, this binary knows up to %d; deploy the newer binary", ErrAhead, current, latest)
	}
	return nil
}

// Apply applies every pending migration to the database at dsn and logs
// the version it is at afterwards: what `mediator migrate` and `mediator
// dev` do.
func Apply(ctx context.Context, dsn string, log *slog.Logger) error {
	db, err := Open(dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	applied, err := Up(ctx, db, log)
	if err != nil {
		return err
	}
	current, _, err := Versions(ctx, db)
	if err != nil {
		return err
	}
	log.Info("schema is current", "version", current, "applied_now", len(applied))
	return nil
}

// CheckPool is Check over a pgx pool, bounded by timeout: the start-up
// check of every command that reads or writes the schema.
func CheckPool(ctx context.Context, pool *pgxpool.Pool, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	return Check(ctx, db)
}

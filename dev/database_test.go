package dev

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mediatorhq/mediator/dev/servers"
)

// TestStopDropsOnlyTheDatabaseDevCreated: on a shared server, the database
// dev creates is dropped when it stops, unless Keep; a kept one is dev's
// still, and dropped by the next dev without Keep; a database dev found
// there without having created it is never dropped, nor the one
// DATABASE_URL names.
func TestStopDropsOnlyTheDatabaseDevCreated(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pg, err := servers.StartPostgres(ctx, nil, servers.PostgresOptions{IgnoreEnv: true})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Stop()
	exists := func(name string) bool {
		t.Helper()
		conn, err := pgx.Connect(ctx, pg.AdminURL)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var ok bool
		if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&ok); err != nil {
			t.Fatal(err)
		}
		return ok
	}
	// run is one dev instance's life on the server, as far as its
	// database goes.
	run := func(state string, keep bool) {
		t.Helper()
		in := &Instance{StateDir: state, Postgres: pg, keep: keep}
		if err := in.openDatabase(ctx); err != nil {
			t.Fatal(err)
		}
		conn, err := pgx.Connect(ctx, in.DatabaseURL) // a connection left open, as a crashed client's
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		in.dropDatabase()
	}

	state := t.TempDir()
	name := databaseFor(state)
	t.Cleanup(func() { pg.DropDatabase(context.Background(), name) })
	run(state, false)
	if exists(name) {
		t.Fatal("the database dev created is there after it stopped")
	}

	run(state, true)
	if !exists(name) {
		t.Fatal("--keep: the database is gone")
	}
	run(state, false)
	if exists(name) {
		t.Fatal("a database a dev with --keep created is left by the next dev without it")
	}

	// A database of that name dev did not create (no marker) stays.
	other := t.TempDir()
	otherName := databaseFor(other)
	t.Cleanup(func() { pg.DropDatabase(context.Background(), otherName) })
	if _, err := pg.CreateDatabase(ctx, otherName); err != nil {
		t.Fatal(err)
	}
	run(other, false)
	if !exists(otherName) {
		t.Fatal("dev dropped a database it did not create")
	}
	// Nor is one on another server with the same name: the marker names
	// the server.
	os.WriteFile(filepath.Join(other, databaseMarker), []byte("elsewhere:5432/"+otherName+"\n"), 0o600)
	run(other, false)
	if !exists(otherName) {
		t.Fatal("dev dropped a database its marker places on another server")
	}

	// DATABASE_URL's database is used as it is, and never dropped.
	url := &servers.Postgres{AdminURL: pg.AdminURL, Source: "DATABASE_URL"}
	in := &Instance{StateDir: other, Postgres: url}
	if err := in.openDatabase(ctx); err != nil || in.DatabaseURL != pg.AdminURL || in.ownDatabase != "" {
		t.Fatalf("DATABASE_URL: %q owned %q, %v", in.DatabaseURL, in.ownDatabase, err)
	}
}

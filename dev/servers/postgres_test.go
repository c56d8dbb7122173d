package servers

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestPrivateCluster exercises the path a machine without a running
// PostgreSQL takes: initdb, a postmaster of our own, a database, and a stop
// that leaves nothing answering.
func TestPrivateCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pg, err := StartPostgres(ctx, nil, PostgresOptions{NoLocal: true, IgnoreEnv: true})
	if err != nil {
		t.Fatal(err)
	}
	if pg.Source != "initdb" {
		t.Fatalf("source = %q", pg.Source)
	}
	dsn, err := pg.CreateDatabase(ctx, "harness_check")
	if err != nil {
		pg.Stop()
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		pg.Stop()
		t.Fatal(err)
	}
	var one int
	err = conn.QueryRow(ctx, "SELECT 1").Scan(&one)
	conn.Close(ctx)
	if err != nil || one != 1 {
		pg.Stop()
		t.Fatalf("query: %v", err)
	}
	pg.Stop()
	if err := ping(ctx, pg.AdminURL); err == nil {
		t.Fatal("the private cluster still answers after Stop")
	}
}

func TestDatabaseURL(t *testing.T) {
	p := &Postgres{AdminURL: "postgres://u:p@127.0.0.1:5/postgres?sslmode=disable"}
	got, err := p.DatabaseURL("x")
	if err != nil || got != "postgres://u:p@127.0.0.1:5/x?sslmode=disable" {
		t.Fatalf("DatabaseURL = %q, %v", got, err)
	}
}

package loadgen

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// CopyBaseline measures raw PostgreSQL COPY of the same rows the run wrote:
// it reads back the last n audit entries and writes them with a single
// COPY in one transaction into a scratch table with the same columns, keys
// and indexes (but no triggers, and hashes copied rather than computed),
// then drops it. It returns rows per second: what the disk and PostgreSQL
// allow for these rows, the side of the ratio ingest is measured against
// (issue 24). It needs a role that may create tables.
func CopyBaseline(ctx context.Context, dsn string, n int) (float64, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0, fmt.Errorf("load: baseline: %w", err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT seq, leaf, hashes, kind, event_id, submitter, conversation_id, occurred_at, ingested_at
		FROM audit_entries ORDER BY seq DESC LIMIT $1`, n)
	if err != nil {
		return 0, fmt.Errorf("load: baseline: read rows: %w", err)
	}
	data, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([]any, error) { return r.Values() })
	if err != nil {
		return 0, fmt.Errorf("load: baseline: read rows: %w", err)
	}
	const table = "loadgen_copy_baseline"
	if _, err := conn.Exec(ctx, "DROP TABLE IF EXISTS "+table+"; CREATE TABLE "+table+" (LIKE audit_entries INCLUDING ALL)"); err != nil {
		return 0, fmt.Errorf("load: baseline: create table: %w", err)
	}
	defer conn.Exec(context.Background(), "DROP TABLE IF EXISTS "+table)
	cols := []string{"seq", "leaf", "hashes", "kind", "event_id", "submitter", "conversation_id", "occurred_at", "ingested_at"}
	start := time.Now()
	tx, err := conn.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{table}, cols, pgx.CopyFromRows(data)); err != nil {
		return 0, fmt.Errorf("load: baseline: copy: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("load: baseline: commit: %w", err)
	}
	return float64(len(data)) / time.Since(start).Seconds(), nil
}

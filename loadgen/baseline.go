package loadgen

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// baselineColumns are the columns of audit_entries the baseline copies.
const baselineColumns = "seq, leaf, hashes, kind, event_id, submitter, conversation_id, occurred_at, ingested_at"

// CopyBaseline measures raw PostgreSQL COPY of the same rows the run wrote:
// it exports the last n audit entries, in seq order as ingest wrote them,
// with a binary COPY TO into a temporary file, then times a single binary
// COPY FROM of that file, in one transaction, into a scratch table with the
// same columns, keys and indexes (but no triggers), as psql's \copy would,
// and drops the table. It returns rows per second: what the disk and
// PostgreSQL allow for these rows, the side of the ratio ingest is
// measured against (issue 24). The timed part encodes nothing: the bytes
// are PostgreSQL's own. It needs a role that may create tables.
func CopyBaseline(ctx context.Context, dsn string, n int) (float64, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0, fmt.Errorf("load: baseline: %w", err)
	}
	defer conn.Close(ctx)
	f, err := os.CreateTemp("", "loadgen-copy-baseline-*.bin")
	if err != nil {
		return 0, fmt.Errorf("load: baseline: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	export := "COPY (SELECT * FROM (SELECT " + baselineColumns + " FROM audit_entries ORDER BY seq DESC LIMIT " +
		strconv.Itoa(n) + ") last ORDER BY seq) TO STDOUT (FORMAT binary)"
	tag, err := conn.PgConn().CopyTo(ctx, f, export)
	if err != nil {
		return 0, fmt.Errorf("load: baseline: export rows: %w", err)
	}
	rows := tag.RowsAffected()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, fmt.Errorf("load: baseline: %w", err)
	}
	const table = "loadgen_copy_baseline"
	if _, err := conn.Exec(ctx, "DROP TABLE IF EXISTS "+table+"; CREATE TABLE "+table+" (LIKE audit_entries INCLUDING ALL)"); err != nil {
		return 0, fmt.Errorf("load: baseline: create table: %w", err)
	}
	defer conn.Exec(context.Background(), "DROP TABLE IF EXISTS "+table)
	start := time.Now()
	if _, err := conn.Exec(ctx, "BEGIN"); err != nil {
		return 0, fmt.Errorf("load: baseline: begin: %w", err)
	}
	if _, err := conn.PgConn().CopyFrom(ctx, f, "COPY "+table+" ("+baselineColumns+") FROM STDIN (FORMAT binary)"); err != nil {
		_, _ = conn.Exec(context.Background(), "ROLLBACK")
		return 0, fmt.Errorf("load: baseline: copy: %w", err)
	}
	if _, err := conn.Exec(ctx, "COMMIT"); err != nil {
		return 0, fmt.Errorf("load: baseline: commit: %w", err)
	}
	return float64(rows) / time.Since(start).Seconds(), nil
}

// HashCopyBaseline measures what PostgreSQL delivers of the hashes tiles
// are made of: it times one binary COPY TO, discarded, of the leaf hashes
// of the first n entries in seq order (the bytes of n/256 level-0 tiles)
// and returns hash bytes per second, the side of the ratio tile serving
// is measured against (issue 25).
func HashCopyBaseline(ctx context.Context, dsn string, n int64) (float64, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0, fmt.Errorf("load: hash baseline: %w", err)
	}
	defer conn.Close(ctx)
	start := time.Now()
	tag, err := conn.PgConn().CopyTo(ctx, io.Discard, "COPY (SELECT substring(hashes FROM 1 FOR 32) FROM audit_entries WHERE seq < "+
		strconv.FormatInt(n, 10)+" ORDER BY seq) TO STDOUT (FORMAT binary)")
	if err != nil {
		return 0, fmt.Errorf("load: hash baseline: %w", err)
	}
	return float64(tag.RowsAffected()*32) / time.Since(start).Seconds(), nil
}

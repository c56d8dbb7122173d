package audit

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Recorder writes a package's rows and their audit entry in one
// transaction of its own, for stores whose every write is logged (access,
// governance).
type Recorder struct {
	Pool *pgxpool.Pool
	Log  TxAppender
	// Unavailable wraps every failure of the transaction itself (begin,
	// append, commit), so the caller's users are told the database is
	// unavailable and that nothing was written.
	Unavailable error
}

// Record appends e and runs write with e's seq in one new transaction,
// and commits: the rows write makes and their entry commit together or
// not at all. An error of write is returned as it is, and nothing is
// written.
func (r Recorder) Record(ctx context.Context, e Entry, write func(tx pgx.Tx, seq int64) error) (int64, error) {
	tx, err := r.Pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("%w: begin: %v", r.Unavailable, err)
	}
	defer tx.Rollback(ctx) // no-op after commit
	appended, err := r.Log.AppendTx(ctx, tx, []Entry{e})
	if err != nil {
		return 0, fmt.Errorf("%w: %v", r.Unavailable, err)
	}
	seq := appended[0].Seq
	if err := write(tx, seq); err != nil {
		return 0, err
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("%w: commit: %v", r.Unavailable, err)
	}
	return seq, nil
}

// uniqueViolation is PostgreSQL's SQLSTATE for a duplicate key.
const uniqueViolation = "23505"

// Conflict maps the error of a row's write: a duplicate key (by its
// SQLSTATE, never its text) becomes conflict, anything else a failure
// wrapped in Unavailable.
func (r Recorder) Conflict(err, conflict error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == uniqueViolation {
		return conflict
	}
	return fmt.Errorf("%w: %v", r.Unavailable, err)
}

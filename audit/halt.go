package audit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrHalted means the log is halted: the database holds less of the log
// than was signed (a lost tail), so nothing is appended and no checkpoint
// signed until an operator recovers the lost entries and removes the halt
// (docs/operations.md, "The log lost its tail"). A *HaltError carries the
// details; errors.Is(err, ErrHalted) matches it.
var ErrHalted = errors.New("audit: the log is halted")

// HaltError is the recorded halt.
type HaltError struct {
	Reason string
	// TreeSize is how many entries the database held when it was found,
	// SignedSize how many a checkpoint the log signed covered.
	TreeSize, SignedSize int64
	FoundAt              time.Time
}

func (e *HaltError) Error() string {
	return fmt.Sprintf("audit: the log is halted since %s: %s (the database held %d entries; %d were signed)",
		e.FoundAt.UTC().Format(time.RFC3339), e.Reason, e.TreeSize, e.SignedSize)
}

// Is reports whether target is ErrHalted.
func (e *HaltError) Is(target error) bool { return target == ErrHalted }

// sqlHalt reads the halt row, if any.
const sqlHalt = "SELECT reason, tree_size, signed_size, found_at FROM audit_halt"

// querier is what both a pool and a transaction offer.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// checkHalt returns the recorded halt as a *HaltError, or nil if the log
// is not halted.
func checkHalt(ctx context.Context, q querier) error {
	rows, err := q.Query(ctx, sqlHalt)
	return haltFrom(rows, err)
}

// haltFrom returns the halt that rows of sqlHalt (or the error of their
// query) hold, as checkHalt does.
func haltFrom(rows pgx.Rows, err error) error {
	if err != nil {
		return fmt.Errorf("audit: read the halt: %w", err)
	}
	h, err := pgx.CollectOneRow(rows, func(r pgx.CollectableRow) (*HaltError, error) {
		var h HaltError
		return &h, r.Scan(&h.Reason, &h.TreeSize, &h.SignedSize, &h.FoundAt)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("audit: read the halt: %w", err)
	}
	return h
}

// recordHalt writes the halt row unless one is there, and returns the one
// in force.
func (s *store) recordHalt(ctx context.Context, reason string, treeSize, signedSize int64) error {
	if _, err := s.pool.Exec(ctx, `INSERT INTO audit_halt (reason, tree_size, signed_size) VALUES ($1, $2, $3)
		ON CONFLICT (singleton) DO NOTHING`, reason, treeSize, signedSize); err != nil {
		return fmt.Errorf("audit: record the halt (%s): %w", reason, err)
	}
	if err := checkHalt(ctx, s.pool); err != nil {
		return err
	}
	return fmt.Errorf("audit: the halt row is gone right after it was written (%s)", reason)
}

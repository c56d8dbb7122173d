package mirror

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/mediatorhq/mediator/witness"
)

// pendingStore keeps the pending checkpoints for the recorder that
// handles add-checkpoint: Latest is the largest, Put adds one. Every one
// stays, so add-entries may name any as upload_end.
type pendingStore struct{ m *Mirror }

func (s pendingStore) Latest(ctx context.Context, _ string) (witness.Checkpoint, bool, error) {
	cp, err := s.m.latestPending(ctx)
	if errors.Is(err, pgx.ErrNoRows) {
		return witness.Checkpoint{}, false, nil
	}
	return witness.Checkpoint{Size: cp.size, Root: cp.root}, err == nil, err
}

func (s pendingStore) Put(ctx context.Context, _ string, prev *witness.Checkpoint, next witness.Checkpoint) error {
	return pgx.BeginFunc(ctx, s.m.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", commitLock); err != nil {
			return err
		}
		var size int64
		var root []byte
		err := tx.QueryRow(ctx, "SELECT tree_size, root_hash FROM mirror_pending ORDER BY tree_size DESC LIMIT 1").Scan(&size, &root)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			if prev != nil {
				return witness.ErrChanged
			}
		case err != nil:
			return err
		case prev == nil || prev.Size != size || tlog.Hash(root) != prev.Root:
			return witness.ErrChanged
		}
		_, err = tx.Exec(ctx, "INSERT INTO mirror_pending (tree_size, root_hash, note) VALUES ($1, $2, $3) ON CONFLICT (tree_size) DO NOTHING",
			next.Size, next.Root[:], next.Note)
		return err
	})
}

// checkpoint is a pending or mirror checkpoint as stored.
type checkpoint struct {
	size int64
	root tlog.Hash
	note string
}

func (m *Mirror) latestPending(ctx context.Context) (checkpoint, error) {
	var cp checkpoint
	var root []byte
	err := m.pool.QueryRow(ctx, sqlLatestPending).Scan(&cp.size, &root, &cp.note)
	copy(cp.root[:], root)
	return cp, err
}

// pendingAt returns the pending checkpoint of size n, or pgx.ErrNoRows.
func (m *Mirror) pendingAt(ctx context.Context, n int64) (checkpoint, error) {
	cp := checkpoint{size: n}
	var root []byte
	err := m.pool.QueryRow(ctx, sqlPendingAt, n).Scan(&root, &cp.note)
	copy(cp.root[:], root)
	return cp, err
}

// mirrored returns the mirror checkpoint: its size and the note with the
// mirror's cosignature ("", 0 before the first).
func (m *Mirror) mirrored(ctx context.Context, q querier) (int64, string, error) {
	var size int64
	var signed string
	err := q.QueryRow(ctx, sqlMirrored).Scan(&size, &signed)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, "", nil
	}
	if err != nil {
		return 0, "", fmt.Errorf("mirror: read its checkpoint: %w", err)
	}
	return size, signed, nil
}

// next returns the mirror's next entry: the first index it does not hold.
// Entries are committed in order, so it is one past the largest.
func (m *Mirror) next(ctx context.Context, q querier) (int64, error) {
	var n int64
	err := q.QueryRow(ctx, sqlNext).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("mirror: read its next entry: %w", err)
	}
	return n, nil
}

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

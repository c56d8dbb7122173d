package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/mediatorhq/mediator/packedhash"
)

// ErrRestoreRoot: the restored entries do not make the tree of the
// checkpoint they were restored under.
var ErrRestoreRoot = errors.New("audit: the restored entries do not make the checkpoint's tree")

// restoreBatch is how many entries one COPY of a restore writes.
const restoreBatch = 8192

// Restore writes the entries [0, size) of a copy of the log into tx's
// audit_entries, which must be empty, and checks that they make the tree
// of root. next returns the copy's leaves in order, some at a time, and
// io.EOF after the last. Every stored hash and indexed column is
// recomputed from the leaves: nothing else of the copy is trusted. Each
// leaf's seq must be its index. Memory is bounded by one batch and the
// tree's right edge. On any error the caller rolls tx back and nothing is
// written.
func Restore(ctx context.Context, tx pgx.Tx, size int64, root tlog.Hash, next func(context.Context) ([][]byte, error)) error {
	var hasRows bool
	if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM audit_entries)").Scan(&hasRows); err != nil {
		return fmt.Errorf("audit: restore: %w", err)
	}
	if hasRows {
		return errors.New("audit: restore: audit_entries is not empty; a restore only fills an empty or recreated table")
	}
	edge := edgeHashes{}
	rows := make([][]any, 0, restoreBatch)
	flush := func() error {
		if len(rows) == 0 {
			return nil
		}
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"audit_entries"},
			[]string{"seq", "leaf", "hashes", "kind", "event_id", "submitter", "conversation_id", "occurred_at", "ingested_at"},
			pgx.CopyFromRows(rows))
		rows = rows[:0]
		if err != nil {
			return fmt.Errorf("audit: restore: write entries: %w", err)
		}
		return nil
	}
	n := int64(0)
	for n < size {
		leaves, err := next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("audit: restore: read the copy at %d: %w", n, err)
		}
		for _, leaf := range leaves {
			if n >= size {
				return fmt.Errorf("audit: restore: the copy has more than %d entries", size)
			}
			row, err := restoredRow(n, leaf, edge)
			if err != nil {
				return err
			}
			rows = append(rows, row)
			n++
			if len(rows) == restoreBatch {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	if n != size {
		return fmt.Errorf("audit: restore: the copy ends at %d of %d entries", n, size)
	}
	if err := flush(); err != nil {
		return err
	}
	got, err := tlog.TreeHash(size, edge)
	if err != nil {
		return fmt.Errorf("audit: restore: %w", err)
	}
	if got != root {
		return fmt.Errorf("%w: %d entries hash to %x, the checkpoint says %x", ErrRestoreRoot, size, got, root)
	}
	return nil
}

// restoredRow is entry seq's audit_entries row, made from its leaf as the
// appender makes it; edge supplies and remembers the tree's right edge.
func restoredRow(seq int64, leaf []byte, edge edgeHashes) ([]any, error) {
	f, _, err := ParseLeaf(leaf)
	if err != nil {
		return nil, fmt.Errorf("audit: restore: entry %d: %w", seq, err)
	}
	if f.Seq != seq || f.Kind == "" {
		return nil, fmt.Errorf("audit: restore: entry %d has seq %d and kind %q", seq, f.Seq, f.Kind)
	}
	ingested, err := time.Parse(time.RFC3339Nano, f.IngestedAt)
	if err != nil {
		return nil, fmt.Errorf("audit: restore: entry %d: ingested_at: %w", seq, err)
	}
	var occurred time.Time
	if f.OccurredAt != nil {
		if occurred, err = time.Parse(time.RFC3339Nano, *f.OccurredAt); err != nil {
			return nil, fmt.Errorf("audit: restore: entry %d: occurred_at: %w", seq, err)
		}
	}
	hs, err := tlog.StoredHashes(seq, leaf, edge)
	if err != nil {
		return nil, fmt.Errorf("audit: restore: hash entry %d: %w", seq, err)
	}
	edge.keep(seq+1, tlog.StoredHashIndex(0, seq), hs)
	packed := make([]byte, 0, len(hs)*tlog.HashSize)
	for _, h := range hs {
		packed = append(packed, h[:]...)
	}
	return []any{seq, leaf, packed, f.Kind, nullable(f.EventID), f.Submitter,
		nullable(f.ConversationID), nullableTime(occurred), ingested}, nil
}

// edgeHashes holds the right edge of a tree being rebuilt in order: all
// that appending the next entry reads (packedhash.RightEdge).
type edgeHashes map[int64]tlog.Hash

// keep adds the hashes stored from index base and forgets every hash
// that is no longer on the right edge of a tree of size n.
func (e edgeHashes) keep(n, base int64, hs []tlog.Hash) {
	for i, h := range hs {
		e[base+int64(i)] = h
	}
	if len(e) < 4*64 {
		return
	}
	want := map[int64]bool{}
	for _, idx := range packedhash.RightEdge(n) {
		want[idx] = true
	}
	for idx := range e {
		if !want[idx] {
			delete(e, idx)
		}
	}
}

// ReadHashes implements tlog.HashReader over the edge.
func (e edgeHashes) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, idx := range indexes {
		h, ok := e[idx]
		if !ok {
			return nil, fmt.Errorf("audit: restore: hash %d is not on the right edge", idx)
		}
		out[i] = h
	}
	return out, nil
}

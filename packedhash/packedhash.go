// Package packedhash reads the hashes of an RFC 6962 tree stored the way
// the log and its mirror store them: each entry's row holds, packed, the
// hashes that appending it completed, in the order
// golang.org/x/mod/sumdb/tlog.StoredHashes returns them (the leaf hash, then
// each subtree root the entry closes). The tree costs no rows of its own,
// and every stored hash is one primary-key lookup away.
package packedhash

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/tlog"
)

// Querier is what a read needs: a pool, a connection or a transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Owner returns the index of the entry whose row holds stored hash idx,
// and its position there. Appending entry s stores the hashes of levels
// 0…k at consecutive indexes from StoredHashIndex(0, s), and the level-l
// node n is completed by entry ((n+1)<<l) - 1.
func Owner(idx int64) (entry int64, pos int) {
	level, n := tlog.SplitStoredHashIndex(idx)
	return ((n + 1) << level) - 1, level
}

// Table is a table of packed hashes: ReadSQL selects the entry index and
// its packed hashes for the indexes in the bigint array $1, by primary key.
type Table struct {
	ReadSQL string
	// What names the table in errors ("audit", "mirror").
	What string
}

// Read reads stored hashes by index in one query, in the order asked.
func (t Table) Read(ctx context.Context, q Querier, indexes []int64) ([]tlog.Hash, error) {
	rows, err := q.Query(ctx, t.ReadSQL, entriesOf(indexes))
	if err != nil {
		return nil, fmt.Errorf("%s: read hashes: %w", t.What, err)
	}
	return t.collect(rows, indexes)
}

// Queue queues on b the one query Read would send; once b's results are
// read, *out holds the hashes, in the order asked, or the read's error is
// b's.
func (t Table) Queue(b *pgx.Batch, indexes []int64, out *[]tlog.Hash) {
	b.Queue(t.ReadSQL, entriesOf(indexes)).Query(func(rows pgx.Rows) error {
		hs, err := t.collect(rows, indexes)
		*out = hs
		return err
	})
}

// QueueGuess is Queue for a read that may ask for more than the table
// holds, such as the right edge of a size the caller only expects: if the
// rows lack a hash asked for, *out stays nil and b does not fail.
func (t Table) QueueGuess(b *pgx.Batch, indexes []int64, out *[]tlog.Hash) {
	b.Queue(t.ReadSQL, entriesOf(indexes)).Query(func(rows pgx.Rows) error {
		hs, err := t.collect(rows, indexes)
		if errors.Is(err, errMissing) {
			return nil
		}
		*out = hs
		return err
	})
}

// errMissing is collect's error for a stored hash the rows lack.
var errMissing = errors.New("missing")

// entriesOf returns the entries whose rows hold the stored hashes.
func entriesOf(indexes []int64) []int64 {
	entries := make([]int64, len(indexes))
	for i, idx := range indexes {
		entries[i], _ = Owner(idx)
	}
	return entries
}

// collect takes the stored hashes from rows of (entry, packed hashes).
func (t Table) collect(rows pgx.Rows, indexes []int64) ([]tlog.Hash, error) {
	type entryHashes struct {
		Entry  int64
		Hashes []byte
	}
	stored, err := pgx.CollectRows(rows, pgx.RowToStructByPos[entryHashes])
	if err != nil {
		return nil, fmt.Errorf("%s: read hashes: %w", t.What, err)
	}
	packed := make(map[int64][]byte, len(stored))
	for _, e := range stored {
		packed[e.Entry] = e.Hashes
	}
	out := make([]tlog.Hash, len(indexes))
	for i, idx := range indexes {
		entry, pos := Owner(idx)
		b := packed[entry]
		if len(b) < (pos+1)*tlog.HashSize {
			return nil, fmt.Errorf("%s: stored hash %d (entry %d) is %w", t.What, idx, entry, errMissing)
		}
		copy(out[i][:], b[pos*tlog.HashSize:])
	}
	return out, nil
}

// Reader returns a tlog.HashReader over t through q; each ReadHashes call
// is one query.
func (t Table) Reader(ctx context.Context, q Querier) tlog.HashReader {
	return tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		return t.Read(ctx, q, indexes)
	})
}

// Batch is the HashReader an append uses: hashes written earlier in the
// batch, the right edge of the tree preloaded in one query, and, should the
// tree code ever ask for anything else, a read from the table.
type Batch struct {
	ctx   context.Context
	q     Querier
	table Table
	m     map[int64]tlog.Hash
}

// RightEdge returns the stored hash indexes of the roots of the complete
// subtrees of a tree of size n: exactly the hashes that appending entries
// n, n+1, … reads before the batch's own.
func RightEdge(n int64) []int64 {
	var edge []int64
	for l := 0; n>>l > 0; l++ {
		if (n>>l)&1 == 1 {
			edge = append(edge, tlog.StoredHashIndex(l, (n>>l)-1))
		}
	}
	return edge
}

// NewBatchWithEdge returns a Batch for appending to a tree of size n in
// t whose right edge, the hashes of RightEdge(n) in order, the caller
// read already.
func NewBatchWithEdge(ctx context.Context, q Querier, t Table, n int64, edge []tlog.Hash) *Batch {
	b := &Batch{ctx: ctx, q: q, table: t, m: make(map[int64]tlog.Hash)}
	for i, idx := range RightEdge(n) {
		b.m[idx] = edge[i]
	}
	return b
}

// NewBatch returns a Batch for appending to a tree of size n in t, with
// its right edge preloaded.
func NewBatch(ctx context.Context, q Querier, t Table, n int64) (*Batch, error) {
	b := &Batch{ctx: ctx, q: q, table: t, m: make(map[int64]tlog.Hash)}
	edge := RightEdge(n)
	if len(edge) == 0 {
		return b, nil
	}
	hs, err := t.Read(ctx, q, edge)
	if err != nil {
		return nil, err
	}
	for i, idx := range edge {
		b.m[idx] = hs[i]
	}
	return b, nil
}

// Append computes the stored hashes of entry n with data, remembers them
// and returns them packed, as the entry's row holds them.
func (b *Batch) Append(n int64, data []byte) ([]byte, tlog.Hash, error) {
	return b.AppendHash(n, tlog.RecordHash(data))
}

// AppendHash is Append for an entry whose record hash h is known.
func (b *Batch) AppendHash(n int64, h tlog.Hash) ([]byte, tlog.Hash, error) {
	hs, err := tlog.StoredHashesForRecordHash(n, h, b)
	if err != nil {
		return nil, tlog.Hash{}, err
	}
	base := tlog.StoredHashIndex(0, n)
	packed := make([]byte, 0, len(hs)*tlog.HashSize)
	for i, h := range hs {
		b.m[base+int64(i)] = h
		packed = append(packed, h[:]...)
	}
	return packed, hs[0], nil
}

// ReadHashes implements tlog.HashReader.
func (b *Batch) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	var missing []int64
	for i, idx := range indexes {
		if h, ok := b.m[idx]; ok {
			out[i] = h
		} else {
			missing = append(missing, idx)
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	hs, err := b.table.Read(b.ctx, b.q, missing)
	if err != nil {
		return nil, err
	}
	for i, idx := range missing {
		b.m[idx] = hs[i]
	}
	for i, idx := range indexes {
		out[i] = b.m[idx]
	}
	return out, nil
}

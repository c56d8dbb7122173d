package audit

import (
	"context"
	"fmt"
	"math"
	"slices"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// checkpointPage is how many checkpoint rows one read of a checkpoint
// stream takes: verification holds at most this many at once, whatever
// the number of checkpoints.
const checkpointPage = 1000

// checkpointStream reads the checkpoint rows with after < tree_size ≤
// upTo in tree-size order, a page at a time.
type checkpointStream struct {
	ctx   context.Context
	s     *store
	after int64 // the largest tree size read so far
	upTo  int64
	page  []Checkpoint
	done  bool
}

// streamCheckpoints streams the checkpoints above after, up to upTo.
func (s *store) streamCheckpoints(ctx context.Context, after, upTo int64) *checkpointStream {
	return &checkpointStream{ctx: ctx, s: s, after: after, upTo: upTo}
}

// next returns the next checkpoint row, or ok false at the end.
func (cs *checkpointStream) next() (Checkpoint, bool, error) {
	if len(cs.page) == 0 && !cs.done {
		rows, err := cs.s.pool.Query(cs.ctx, "SELECT tree_size, root_hash, note, created_at FROM audit_checkpoints WHERE tree_size > $1 AND tree_size <= $2 ORDER BY tree_size LIMIT $3",
			cs.after, cs.upTo, checkpointPage)
		if err != nil {
			return Checkpoint{}, false, fmt.Errorf("audit: read checkpoints: %w", err)
		}
		page, err := pgx.CollectRows(rows, scanCheckpoint)
		if err != nil {
			return Checkpoint{}, false, fmt.Errorf("audit: read checkpoints: %w", err)
		}
		cs.page, cs.done = page, len(page) < checkpointPage
	}
	if len(cs.page) == 0 {
		return Checkpoint{}, false, nil
	}
	c := cs.page[0]
	cs.page = cs.page[1:]
	cs.after = c.Size
	return c, true, nil
}

// newestCheckpointSize is the largest stored checkpoint's tree size, or
// math.MinInt64 when none is stored: what a verification checks the
// checkpoints up to, so that those signed while it runs are left for the
// next.
func (s *store) newestCheckpointSize(ctx context.Context) (int64, error) {
	var n *int64
	if err := s.pool.QueryRow(ctx, "SELECT max(tree_size) FROM audit_checkpoints").Scan(&n); err != nil {
		return 0, fmt.Errorf("audit: read checkpoints: %w", err)
	}
	if n == nil {
		return math.MinInt64, nil
	}
	return *n, nil
}

// checkpointCheck checks a stream of checkpoints against the tree
// verification recomputes, as it reaches each one's size, holding only
// the one before (for the consistency proof between them).
type checkpointCheck struct {
	s         *store
	rep       *Report
	verifiers []note.Verifier
	stream    *checkpointStream

	cur  Checkpoint // the next checkpoint to check, when has
	has  bool
	read int

	ours     int      // checkpoints naming the log's origin
	found    []string // other origins named, in order of first appearance
	problems []string // held back until it is known whether the origin is the log's

	prev    Checkpoint // the last checkpoint that verified, when hasPrev
	hasPrev bool
}

// advance reads the next checkpoint into cur.
func (k *checkpointCheck) advance() error {
	c, ok, err := k.stream.next()
	if err != nil {
		return err
	}
	k.cur, k.has = c, ok
	if !ok {
		return nil
	}
	k.read++
	switch o, ok := noteOrigin(c.Note); {
	case !ok: // malformed: a problem whatever the origin
	case o == k.rep.Origin:
		k.ours++
	case !slices.Contains(k.found, o):
		k.found = append(k.found, o)
	}
	return nil
}

// checkAt checks cur against the recomputed tree of size entries (its
// hashes in edge), and reads the next checkpoint.
func (k *checkpointCheck) checkAt(ctx context.Context, size int64, edge *edge) error {
	var rec *tlog.Hash
	if k.cur.Size == size {
		root, err := tlog.TreeHash(size, edge)
		if err != nil {
			return fmt.Errorf("audit: verify: root at %d: %w", size, err)
		}
		rec = &root
	}
	k.check(ctx, k.cur, rec)
	return k.advance()
}

func (k *checkpointCheck) bad(format string, args ...any) {
	if len(k.problems) < 100 {
		k.problems = append(k.problems, fmt.Sprintf(format, args...))
	}
}

// check checks c's origin, signature and root against rec, the
// recomputed root at its size (nil when the log has no tree of that
// size), and its consistency with the checkpoint before.
func (k *checkpointCheck) check(ctx context.Context, c Checkpoint, rec *tlog.Hash) {
	origin := k.rep.Origin
	if o, ok := noteOrigin(c.Note); ok && o != origin {
		k.bad("checkpoint %d: names origin %q, not the log's %q: it is not this log's checkpoint", c.Size, o, origin)
		return
	}
	size, root, err := OpenCheckpoint([]byte(c.Note), origin, k.verifiers...)
	switch {
	case err != nil:
		k.bad("checkpoint %d: %v", c.Size, err)
		return
	case size != c.Size || root != c.Root:
		k.bad("checkpoint %d: its signed note is for tree size %d with another root (replaced)", c.Size, size)
		return
	case rec == nil && c.Size < 1:
		k.bad("checkpoint %d: no tree has that size", c.Size)
		return
	case rec == nil:
		k.bad("checkpoint %d: the log has only %d entries", c.Size, k.rep.TreeSize)
		return
	case *rec != root:
		k.bad("checkpoint %d: signed root differs from the recomputed tree (forked or tampered)", c.Size)
		return
	}
	if k.hasPrev {
		p, err := tlog.ProveTree(c.Size, k.prev.Size, k.s.HashReader(ctx))
		if err != nil {
			k.bad("checkpoints %d→%d: no consistency proof: %v", k.prev.Size, c.Size, err)
		} else if err := tlog.CheckTree(p, c.Size, root, k.prev.Size, k.prev.Root); err != nil {
			k.bad("checkpoints %d→%d: not consistent: %v", k.prev.Size, c.Size, err)
		}
	}
	k.prev, k.hasPrev = c, true
	k.rep.CheckpointSize = c.Size
}

// finish checks the checkpoints beyond the entries read, and adds the
// checkpoints' problems to the report. When no checkpoint names the
// log's origin and some name another, it sets rep.OriginMismatch instead:
// that is how a verifier configured for another log (or with the default
// origin) sees this one, not a sign of tampering. A checkpoint naming
// another origin among checkpoints naming the log's is a problem.
func (k *checkpointCheck) finish(ctx context.Context) (*Report, error) {
	for k.has {
		k.check(ctx, k.cur, nil)
		if err := k.advance(); err != nil {
			return nil, err
		}
	}
	rep := k.rep
	rep.Checkpoints = k.read
	if len(k.found) > 0 && k.ours == 0 {
		rep.OriginMismatch = &OriginMismatch{Expected: rep.Origin, Found: k.found}
		rep.CheckpointSize = 0
		return rep, nil
	}
	for _, p := range k.problems {
		rep.bad(-1, "%s", p)
	}
	return rep, nil
}

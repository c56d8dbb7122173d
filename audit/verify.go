package audit

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Report is the outcome of a verification. OK is true only when nothing at
// all was wrong.
type Report struct {
	// Entries counts the entries checked: in a database, those read in
	// seq order up to the first gap; in a bundle, its entries.
	Entries     int64
	Checkpoints int
	// Witnessed counts checkpoints that meet a witness policy, when one
	// was checked.
	Witnessed int
	// FirstBadSeq is the lowest seq found wrong (an edited, missing or
	// misplaced entry, or one whose stored hashes differ), or -1.
	FirstBadSeq int64
	// FirstBadProblem is the problem found at FirstBadSeq, or "".
	FirstBadProblem string
	Problems        []string

	// Origin is the origin the checkpoints were checked against.
	Origin string
	// TreeSize and Root are the tree the entries make: in a database,
	// the tree recomputed from its Entries; in a bundle, its checkpoint's.
	// Root is zero for an empty tree.
	TreeSize int64
	Root     tlog.Hash
	// CheckpointSize is the size of the largest checkpoint whose
	// signature and root verified, or 0 when none did.
	CheckpointSize int64
	// OriginMismatch is set when no checkpoint names Origin and some
	// name another (rows that are no note at all aside): the verifier
	// was configured for another log (its origin or key), and no
	// checkpoint was checked. It is not by itself evidence of
	// tampering, and OK is false.
	OriginMismatch *OriginMismatch

	// FromSize is, for an incremental verification (VerifyFrom), the
	// size of the tree verified before: Entries counts only the entries
	// after it, and Checkpoints only the checkpoints above it. It is 0
	// for a full verification.
	FromSize int64
	// Consistency is, for an incremental verification, "ok" when a
	// consistency proof from the tree verified before to the newest
	// checkpoint (CheckpointSize) checked, "failed" when it did not or
	// could not be made; "" for a full verification.
	Consistency string

	// EventIDs counts the entries read that have an event id: each was
	// checked against every other entry of the tree, read now or, for an
	// incremental verification, in the index of the tree verified
	// before. DuplicateEventIDs counts the entries found to log an
	// event id their submitter logged at a lower seq (each is also a
	// problem). EventIDIndex is the index written (VerifyOptions).
	EventIDs          int64
	DuplicateEventIDs int
	EventIDIndex      *IDIndex

	// Tiles counts the stored full tiles (audit_tiles; a level-0 tile's
	// parts in audit_leaf_tile_parts count as one) and partial tiles
	// (audit_partial_tiles) compared with the recomputed hashes.
	Tiles int

	// checkpointsUpTo is the newest checkpoint's size when verification
	// began: those signed later are left for the next run.
	checkpointsUpTo int64
}

// OK reports whether verification found nothing wrong, with the origin
// expected.
func (r *Report) OK() bool { return len(r.Problems) == 0 && r.OriginMismatch == nil }

func (r *Report) bad(seq int64, format string, args ...any) {
	text := fmt.Sprintf(format, args...)
	if seq >= 0 && (r.FirstBadSeq < 0 || seq < r.FirstBadSeq) {
		r.FirstBadSeq = seq
		r.FirstBadProblem = text
	}
	const maxProblems = 100
	if len(r.Problems) < maxProblems {
		r.Problems = append(r.Problems, text)
	}
}

// OriginMismatch is a configuration error, not a finding about the log:
// the checkpoints (or a bundle's checkpoint) name another origin than the
// one the verification was given, so they are another log's, or the
// verifier's --log-origin or key is not the service's.
type OriginMismatch struct {
	Expected string   // the origin given
	Found    []string // the origins the checkpoints name, in order of first appearance
}

// Error says "origin X expected, Y found".
func (m *OriginMismatch) Error() string {
	return fmt.Sprintf("origin %s expected, %s found", m.Expected, strings.Join(m.Found, ", "))
}

// noteOrigin is a checkpoint note's first line, its origin, and whether
// there is one: a text without a line is no note at all.
func noteOrigin(signed string) (string, bool) {
	origin, _, ok := strings.Cut(signed, "\n")
	return origin, ok
}

// VerifyOptions configure VerifyWith.
type VerifyOptions struct {
	// Origin is the log's origin: every checkpoint must name it. ""
	// means the first verifier's name.
	Origin string
	// Progress, when set, is told how far the entries are verified.
	Progress Progress
	// EventIDIndex, when not "", is where the verification writes the
	// event-id index of the entries below the checkpoint it verified up
	// to, when it passes: the file EventIDIndex.<hash> (Report's
	// EventIDIndex names it). The next verification from that
	// checkpoint reads it (VerifiedTree.EventIDs) to check its new
	// entries' event ids against every earlier entry's. The files of
	// sorted ids a verification of more than a million entries needs
	// meanwhile go in the same directory; without EventIDIndex, in the
	// system's temporary directory.
	EventIDIndex string
}

// Progress is told how many entries are verified so far (done), of the
// entries the log held when verification began (total; the log may grow
// meanwhile, so done can pass it). VerifyWith calls it from the goroutine
// that called it, after each page of entries and once when the entries
// are done; it must return quickly, for verification waits for it.
type Progress func(done, total int64)

// verifyPage is how many entries verification checks between two calls
// of its Progress.
const verifyPage = 10000

// Verify checks the log's tables in pool as verify does: what a
// database holds, published or not. It is how `mediator audit verify`
// checks a deployment.
func Verify(ctx context.Context, pool *pgxpool.Pool, verifiers ...note.Verifier) (*Report, error) {
	return newStore(pool).verify(ctx, verifiers...)
}

// VerifyWith is Verify against the origin opts names, telling
// opts.Progress how far it has come.
func VerifyWith(ctx context.Context, pool *pgxpool.Pool, opts VerifyOptions, verifiers ...note.Verifier) (*Report, error) {
	return newStore(pool).verifyWith(ctx, opts, verifiers...)
}

// verify is verifyWith under the first verifier's name, without progress.
func (s *store) verify(ctx context.Context, verifiers ...note.Verifier) (*Report, error) {
	return s.verifyWith(ctx, VerifyOptions{}, verifiers...)
}

// verifyWith recomputes every leaf hash and stored hash from the entries
// in PostgreSQL and compares them with what is stored; checks that seq is
// gapless and that each leaf's seq, and every column searches and exports
// filter on (kind, event id, conversation id, occurred_at, ingested_at),
// match its row; checks every stored checkpoint's origin (opts.Origin),
// signature (by any of verifiers, the log's current and past keys, named
// by the log's origin) and root against the recomputed tree; and checks a
// consistency proof between consecutive checkpoints. It holds O(log n)
// hashes and at most checkpointPage checkpoints in memory, whatever the
// log's size. Reading the next page, parsing and hashing leaves (in
// parallel) and building the tree (in order) overlap.
func (s *store) verifyWith(ctx context.Context, opts VerifyOptions, verifiers ...note.Verifier) (*Report, error) {
	return s.verifyRange(ctx, opts, nil, verifiers...)
}

// verifyRange is verifyWith over the entries from from.Size on, on top of
// the tree from names (verified before), or over every entry when from is
// nil. From a tree, it checks only the checkpoints above from.Size, and
// first that the stored hashes still make from.Root at from.Size (its
// right edge, which the new entries' hashes build on).
func (s *store) verifyRange(ctx context.Context, opts VerifyOptions, from *VerifiedTree, verifiers ...note.Verifier) (*Report, error) {
	if len(verifiers) == 0 {
		return nil, fmt.Errorf("audit: verify: no verifier key")
	}
	rep := &Report{FirstBadSeq: -1, Origin: opts.Origin}
	if rep.Origin == "" {
		rep.Origin = verifiers[0].Name()
	}
	// Checkpoints signed while this runs are left for the next run: the
	// entries they cover may come after the entries read.
	upTo, err := s.newestCheckpointSize(ctx)
	if err != nil {
		return nil, err
	}
	rep.checkpointsUpTo = upTo
	var start int64
	after := int64(math.MinInt64)
	edge := newEdge()
	if from != nil {
		start, after = from.Size, from.Size
		rep.FromSize = from.Size
		if ok, err := s.startEdge(ctx, rep, from, edge, verifiers); err != nil {
			return nil, err
		} else if !ok {
			rep.Entries, rep.TreeSize, rep.Root = 0, from.Size, from.Root
			return rep, nil
		}
	}
	cps := &checkpointCheck{s: s, rep: rep, verifiers: verifiers, stream: s.streamCheckpoints(ctx, after, upTo)}
	if err := cps.advance(); err != nil {
		return nil, err
	}
	progress := opts.Progress
	var total int64
	if progress != nil {
		if err := s.pool.QueryRow(ctx, "SELECT coalesce(max(seq) + 1, 0) FROM audit_entries").Scan(&total); err != nil {
			return nil, fmt.Errorf("audit: verify: count entries: %w", err)
		}
		total = max(total-start, 0)
		progress(0, total)
	}

	// The pipeline's own context stops its reading early; the checkpoint
	// checks go on under ctx.
	pctx, cancel := context.WithCancel(ctx)
	pipe := s.startVerifyPipeline(pctx, start-1)
	defer func() {
		cancel()
		pipe.stop()
	}()

	var idDir string
	if opts.EventIDIndex != "" {
		idDir = filepath.Dir(opts.EventIDIndex)
	}
	ids := newIDCollector(idDir)
	defer ids.close()
	rows := &rowCheck{rep: rep, edge: edge, tiles: &tileCheck{store: s, rep: rep}, cps: cps, ids: ids}
	if err := rows.tiles.prefill(ctx, start); err != nil {
		return nil, err
	}
	end, err := rows.readAll(ctx, pipe, cancel, start, progress, total)
	if err != nil {
		return nil, err
	}
	s.treeDone(rep, start, end, edge, progress, total)
	if rep, err = s.finishRange(ctx, cps, from); err != nil || rep.OriginMismatch != nil {
		return rep, err
	}
	var prevIDs *IDIndex
	if from != nil {
		prevIDs = from.EventIDs
	}
	return rep, s.checkEventIDs(ctx, rep, ids, prevIDs, start, opts.EventIDIndex)
}

// readAll checks every entry pipe reads, from start on, in seq order, and
// returns the size of the tree they make: where the table ends, or the
// first missing entry, which it reports, stopping the pipeline (cancel).
// It tells progress after each page of entries.
func (rc *rowCheck) readAll(ctx context.Context, pipe *verifyPipeline, cancel context.CancelFunc, start int64, progress Progress, total int64) (int64, error) {
	expect := start
	nextProgress := start + verifyPage
	for batch := range pipe.ordered {
		batch.done.Wait()
		for i := range batch.rows {
			r := &batch.rows[i]
			if r.seq != expect {
				// Entries between expect and r.seq are missing. The tree can
				// no longer be recomputed past the gap.
				rc.rep.bad(expect, "seq %d: entry missing (next entry is seq %d)", expect, r.seq)
				cancel()
				pipe.stop()
				return expect, nil
			}
			if err := rc.check(ctx, r); err != nil {
				return 0, err
			}
			expect++
		}
		pipe.release(batch)
		if progress != nil && expect >= nextProgress {
			progress(expect-start, total)
			nextProgress = expect + verifyPage
		}
	}
	if err := <-pipe.readErr; err != nil {
		return 0, err
	}
	return expect, nil
}

// rowCheck checks each entry verification reads, in seq order.
type rowCheck struct {
	rep   *Report
	edge  *edge
	tiles *tileCheck
	cps   *checkpointCheck
	ids   *idCollector
}

// check records what the hashers found wrong with r, recomputes its
// stored hashes on the edge, compares the stored tiles it completes, and
// checks every checkpoint its tree size reaches.
func (rc *rowCheck) check(ctx context.Context, r *verifyRow) error {
	switch r.problem {
	case problemJSON:
		rc.rep.bad(r.seq, "seq %d: leaf is not valid JSON", r.seq)
	case problemSeq:
		rc.rep.bad(r.seq, "seq %d: leaf says seq %d", r.seq, r.leafSeq)
	case problemColumn:
		rc.rep.bad(r.seq, "seq %d: the row's %s differs from its leaf (searches and exports filter on it)", r.seq, r.column)
	}
	if r.hasID {
		if err := rc.ids.add(r.idKey, r.seq); err != nil {
			return err
		}
	}
	hashes, err := rc.edge.add(rc.rep, r)
	if err != nil {
		return err
	}
	if err := rc.tiles.add(ctx, r.seq, hashes); err != nil {
		return err
	}
	size := r.seq + 1
	if size%edgeTrimEvery == 0 {
		rc.edge.trim(size)
	}
	for rc.cps.has && rc.cps.cur.Size <= size {
		if err := rc.cps.checkAt(ctx, size, rc.edge); err != nil {
			return err
		}
	}
	return nil
}

// treeDone records that the entries from start up to size were read: their count,
// the tree they make and its root, and tells progress.
func (s *store) treeDone(rep *Report, start, size int64, edge *edge, progress Progress, total int64) {
	rep.Entries, rep.TreeSize = size-start, size
	if size > 0 {
		if root, err := tlog.TreeHash(size, edge); err == nil {
			rep.Root = root
		}
	}
	if progress != nil {
		progress(size-start, total)
	}
}

// edgeTrimEvery is how often (in entries) the recomputed hashes are
// trimmed to the tree's right edge: seldom enough to cost nothing, often
// enough to keep memory small.
const edgeTrimEvery = 4096

// edge holds recomputed stored hashes, trimmed to the right edge of the tree
// so memory stays O(log n).
type edge struct{ m map[int64]tlog.Hash }

func newEdge() *edge { return &edge{m: make(map[int64]tlog.Hash)} }

// trim keeps only the roots of the complete subtrees of a tree of size n.
func (e *edge) trim(n int64) {
	keep := make(map[int64]bool, 64)
	for l := 0; n>>l > 0; l++ {
		if (n>>l)&1 == 1 {
			keep[tlog.StoredHashIndex(l, (n>>l)-1)] = true
		}
	}
	for k := range e.m {
		if !keep[k] {
			delete(e.m, k)
		}
	}
}

// add recomputes the stored hashes of entry r (its leaf hash made) on top
// of the edge, adds them to it, compares them with the row's, and returns
// them.
func (e *edge) add(rep *Report, r *verifyRow) ([]tlog.Hash, error) {
	stored, err := tlog.StoredHashesForRecordHash(r.seq, r.leafHash, e)
	if err != nil {
		return nil, fmt.Errorf("audit: verify: hash seq %d: %w", r.seq, err)
	}
	base := tlog.StoredHashIndex(0, r.seq)
	if len(r.hashes) != len(stored)*tlog.HashSize {
		rep.bad(r.seq, "seq %d: holds %d bytes of stored hashes, want %d", r.seq, len(r.hashes), len(stored)*tlog.HashSize)
	}
	for j, h := range stored {
		e.m[base+int64(j)] = h
		if len(r.hashes) >= (j+1)*tlog.HashSize && tlog.Hash(r.hashes[j*tlog.HashSize:]) != h {
			rep.bad(r.seq, "seq %d: stored hash %d differs from the recomputed one", r.seq, base+int64(j))
		}
	}
	return stored, nil
}

// ReadHashes implements tlog.HashReader over the recomputed edge.
func (e *edge) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, idx := range indexes {
		h, ok := e.m[idx]
		if !ok {
			return nil, fmt.Errorf("audit: verify: hash %d not on the recomputed edge", idx)
		}
		out[i] = h
	}
	return out, nil
}

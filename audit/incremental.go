package audit

import (
	"context"
	"encoding/base64"
	"errors"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// VerifiedTree is a tree an earlier verification found sound and signed:
// its size and root.
type VerifiedTree struct {
	Size int64
	Root tlog.Hash
	// EventIDs is the event-id index of the tree's entries that the
	// verification which found it sound wrote. VerifyFrom refuses a
	// tree without one: its new entries' event ids could not be checked
	// against the tree's.
	EventIDs *IDIndex
}

// VerifyFrom is VerifyWith from a tree verified before (from, as a
// VerifyState saved it): it recomputes and checks only the entries from
// from.Size on, building on the stored hashes of the tree's right edge,
// which must still make from.Root; checks the checkpoints above
// from.Size as VerifyWith does; and checks, with tlog, a consistency
// proof from the tree to the newest checkpoint. A rewrite of entries
// below from.Size, of leaves and hashes alike, makes that proof (and the
// right edge) fail; a log shorter than from.Size, or whose newest
// checkpoint is smaller, fails. It holds O(log n) hashes and at most
// checkpointPage checkpoints in memory.
func VerifyFrom(ctx context.Context, pool *pgxpool.Pool, opts VerifyOptions, from VerifiedTree, verifiers ...note.Verifier) (*Report, error) {
	if from.Size < 1 {
		return nil, errors.New("audit: verify: a verified tree has at least one entry")
	}
	if from.EventIDs == nil || from.EventIDs.Size != from.Size || from.EventIDs.path == "" {
		return nil, ErrNoIDIndex
	}
	return newStore(pool).verifyRange(ctx, opts, &from, verifiers...)
}

// startEdge loads into edge the stored hashes of the right edge of the
// tree of from.Size entries and checks that they make from.Root. It
// reports false, and the problem in rep, when the log is shorter than the
// tree or its hashes are no longer the tree's.
func (s *store) startEdge(ctx context.Context, rep *Report, from *VerifiedTree, edge *edge, verifiers []note.Verifier) (bool, error) {
	n, err := s.Size(ctx)
	if err != nil {
		return false, err
	}
	if n < from.Size {
		rep.bad(-1, "the log holds %d entries, fewer than the %d verified before: it was truncated or rolled back", n, from.Size)
		rep.Consistency = "failed"
		return false, nil
	}
	var idx []int64
	for l := 0; from.Size>>l > 0; l++ {
		if (from.Size>>l)&1 == 1 {
			idx = append(idx, tlog.StoredHashIndex(l, (from.Size>>l)-1))
		}
	}
	hs, err := readHashes(ctx, s.pool, idx)
	if err == nil {
		for i, h := range hs {
			edge.m[idx[i]] = h
		}
		if root, terr := tlog.TreeHash(from.Size, edge); terr != nil || root != from.Root {
			err = errors.New("they make another root")
		}
	}
	if err != nil {
		rep.bad(-1, "the stored hashes of the tree of %d entries verified before (root %s) are not that tree's (%v): entries below %d were rewritten or removed since",
			from.Size, b64(from.Root), err, from.Size)
		// Still say whether the newest checkpoint is consistent with it.
		return false, s.proveFrom(ctx, rep, from, verifiers)
	}
	return true, nil
}

// finishRange finishes the checkpoints and, for an incremental
// verification, checks the consistency proof from the tree verified
// before.
func (s *store) finishRange(ctx context.Context, cps *checkpointCheck, from *VerifiedTree) (*Report, error) {
	rep, err := cps.finish(ctx)
	if err != nil || from == nil || rep.OriginMismatch != nil {
		return rep, err
	}
	return rep, s.proveFrom(ctx, rep, from, cps.verifiers)
}

// proveFrom checks a consistency proof, made from the stored hashes, from
// the tree verified before to the newest checkpoint (as it was when
// verification began), whose signature it checks with verifiers. It sets
// rep.Consistency.
func (s *store) proveFrom(ctx context.Context, rep *Report, from *VerifiedTree, verifiers []note.Verifier) error {
	rep.Consistency = "failed"
	upTo := rep.checkpointsUpTo
	if upTo < from.Size {
		rep.bad(-1, "the newest checkpoint is of tree size %d, smaller than the %d verified before: the log's checkpoints were rolled back or removed", max(upTo, 0), from.Size)
		return nil
	}
	c, err := s.checkpointAt(ctx, upTo)
	if err != nil {
		return err
	}
	size, root, err := OpenCheckpoint([]byte(c.Note), rep.Origin, verifiers...)
	if err != nil || size != c.Size || root != c.Root {
		rep.bad(-1, "no consistency proof from tree size %d: the newest checkpoint %d does not verify", from.Size, c.Size)
		return nil
	}
	// The proof is made of the stored hashes; so is the newest tree's
	// root, which must be the signed one (for equal sizes the proof is
	// empty, and this is the whole check).
	p, err := tlog.ProveTree(c.Size, from.Size, s.HashReader(ctx))
	if err == nil {
		err = tlog.CheckTree(p, c.Size, root, from.Size, from.Root)
	}
	if err == nil {
		var stored tlog.Hash
		if stored, err = tlog.TreeHash(c.Size, s.HashReader(ctx)); err == nil && stored != root {
			err = errors.New("the stored hashes make another root")
		}
	}
	if err != nil {
		rep.bad(-1, "consistency proof from the tree verified before (size %d, root %s) to checkpoint %d fails (%v): entries below %d were rewritten since they were verified, or the log forked",
			from.Size, b64(from.Root), c.Size, err, from.Size)
		return nil
	}
	if c.Size == from.Size {
		rep.CheckpointSize = c.Size
	}
	rep.Consistency = "ok"
	return nil
}

func b64(h tlog.Hash) string { return base64.StdEncoding.EncodeToString(h[:]) }

package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	tlogfmt "github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Checkpoint is a signed checkpoint as stored.
type Checkpoint struct {
	Size      int64
	Root      tlog.Hash
	Note      string // the signed note: checkpoint body, blank line, signature lines
	CreatedAt time.Time
}

// LatestCheckpoint returns the checkpoint of the largest tree, or
// ErrNotFound when none has been signed yet.
func (s *Store) LatestCheckpoint(ctx context.Context) (Checkpoint, error) {
	rows, err := s.pool.Query(ctx, "SELECT tree_size, root_hash, note, created_at FROM audit_checkpoints ORDER BY tree_size DESC LIMIT 1")
	if err != nil {
		return Checkpoint{}, fmt.Errorf("audit: latest checkpoint: %w", err)
	}
	c, err := pgx.CollectOneRow(rows, scanCheckpoint)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, ErrNotFound
	}
	if err != nil {
		return c, fmt.Errorf("audit: latest checkpoint: %w", err)
	}
	return c, nil
}

// scanCheckpoint reads a row of (tree_size, root_hash, note, created_at).
func scanCheckpoint(row pgx.CollectableRow) (Checkpoint, error) {
	var c Checkpoint
	var root []byte
	if err := row.Scan(&c.Size, &root, &c.Note, &c.CreatedAt); err != nil {
		return c, err
	}
	copy(c.Root[:], root) // a wrong length shows as a root the signed note does not name
	return c, nil
}

// SignCheckpoint returns the signed note for a tree: a C2SP tlog-checkpoint
// body (origin, size, base64 root) signed by signer.
func SignCheckpoint(origin string, size int64, root tlog.Hash, signer note.Signer) (string, error) {
	body := tlogfmt.Checkpoint{Origin: origin, Size: uint64(size), Hash: root[:]}.Marshal()
	signed, err := note.Sign(&note.Note{Text: string(body)}, signer)
	if err != nil {
		return "", fmt.Errorf("audit: sign checkpoint: %w", err)
	}
	return string(signed), nil
}

// OpenCheckpoint verifies a signed checkpoint note with any one of
// verifiers (the log's current and past keys, all named by its origin) and
// parses it. The origin must be the log's.
func OpenCheckpoint(signed []byte, origin string, verifiers ...note.Verifier) (size int64, root tlog.Hash, err error) {
	if len(verifiers) == 0 {
		return 0, root, errors.New("audit: checkpoint: no verifier key")
	}
	var cp *tlogfmt.Checkpoint
	for _, v := range verifiers {
		if cp, _, _, err = tlogfmt.ParseCheckpoint(signed, origin, v); err == nil {
			break
		}
	}
	if err != nil {
		return 0, root, fmt.Errorf("audit: checkpoint: %w", err)
	}
	if len(cp.Hash) != tlog.HashSize {
		return 0, root, errors.New("audit: checkpoint root has the wrong length")
	}
	copy(root[:], cp.Hash)
	return int64(cp.Size), root, nil
}

// Checkpointer signs and stores a checkpoint whenever the tree has grown,
// checking every interval. Several processes may run one on the same
// database: the tree size is the checkpoint's key, so they agree.
type Checkpointer struct {
	Store    *Store
	Signer   note.Signer
	Origin   string
	Interval time.Duration
	Log      *slog.Logger
	// OnCheckpoint, if set, is called after each stored checkpoint (metrics).
	OnCheckpoint func(Checkpoint)
	// OnInconsistent, if set, is called when the tree no longer extends the
	// latest signed checkpoint (metrics, alerts).
	OnInconsistent func(error)
}

// ErrInconsistent means the stored tree does not extend the latest signed
// checkpoint: stored entries or hashes were changed after it was signed.
// No checkpoint is signed over such a tree.
var ErrInconsistent = errors.New("audit: the stored tree does not extend the latest signed checkpoint")

// checkpointTimeout bounds one round (tree hash, signature, insert); Vault
// signing is the slow part.
const checkpointTimeout = 10 * time.Second

// Run checkpoints until ctx ends.
func (c *Checkpointer) Run(ctx context.Context) {
	t := time.NewTicker(c.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			rctx, cancel := context.WithTimeout(ctx, checkpointTimeout)
			if _, err := c.Once(rctx); err != nil && ctx.Err() == nil {
				c.Log.Error("checkpoint failed", "err", err)
			}
			cancel()
		}
	}
}

// Once signs and stores a checkpoint if the tree has grown past the latest
// one, and only if the grown tree provably extends it: a consistency proof
// from the stored hashes must check against the latest signed root, so the
// service never signs a rewritten history. It reports whether it stored one.
func (c *Checkpointer) Once(ctx context.Context) (bool, error) {
	size, err := c.Store.Size(ctx)
	if err != nil {
		return false, err
	}
	if size == 0 {
		return false, nil
	}
	latest, err := c.Store.LatestCheckpoint(ctx)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return false, err
	}
	if err == nil && latest.Size >= size {
		return false, nil
	}
	root, err := c.Store.TreeHash(ctx, size)
	if err != nil {
		return false, err
	}
	if latest.Size > 0 {
		proof, err := c.Store.ConsistencyProof(ctx, latest.Size, size)
		if err != nil {
			return false, err
		}
		if err := tlog.CheckTree(proof, size, root, latest.Size, latest.Root); err != nil {
			err = fmt.Errorf("%w (from %d to %d entries): %v", ErrInconsistent, latest.Size, size, err)
			if c.OnInconsistent != nil {
				c.OnInconsistent(err)
			}
			return false, err
		}
	}
	signed, err := SignCheckpoint(c.Origin, size, root, c.Signer)
	if err != nil {
		return false, err
	}
	var created time.Time
	err = c.Store.pool.QueryRow(ctx,
		`INSERT INTO audit_checkpoints (tree_size, root_hash, note) VALUES ($1, $2, $3)
		 ON CONFLICT (tree_size) DO NOTHING RETURNING created_at`, size, root[:], signed).Scan(&created)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil // another process signed this size first
	}
	if err != nil {
		return false, fmt.Errorf("audit: store checkpoint: %w", err)
	}
	if c.OnCheckpoint != nil {
		c.OnCheckpoint(Checkpoint{Size: size, Root: root, Note: signed, CreatedAt: created})
	}
	return true, nil
}

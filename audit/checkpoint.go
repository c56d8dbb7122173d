package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
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

// checkpoints returns up to limit stored checkpoint rows, largest tree
// first, as stored: checked for nothing.
func (s *store) checkpoints(ctx context.Context, limit int) ([]Checkpoint, error) {
	rows, err := s.pool.Query(ctx, "SELECT tree_size, root_hash, note, created_at FROM audit_checkpoints ORDER BY tree_size DESC LIMIT $1", limit)
	if err != nil {
		return nil, fmt.Errorf("audit: checkpoints: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanCheckpoint)
	if err != nil {
		return nil, fmt.Errorf("audit: checkpoints: %w", err)
	}
	return out, nil
}

// publishable returns up to limit checkpoint rows with at least quorum
// cosignature rows, largest tree first, as stored: checked for nothing.
func (s *store) publishable(ctx context.Context, quorum, limit int) ([]Checkpoint, error) {
	rows, err := s.pool.Query(ctx, `SELECT c.tree_size, c.root_hash, c.note, c.created_at FROM audit_checkpoints c
		WHERE $1 = 0 OR (SELECT count(*) FROM audit_cosignatures s WHERE s.tree_size = c.tree_size) >= $1
		ORDER BY c.tree_size DESC LIMIT $2`, quorum, limit)
	if err != nil {
		return nil, fmt.Errorf("audit: checkpoints: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanCheckpoint)
	if err != nil {
		return nil, fmt.Errorf("audit: checkpoints: %w", err)
	}
	return out, nil
}

// checkpointAt returns the row at tree size size.
func (s *store) checkpointAt(ctx context.Context, size int64) (Checkpoint, error) {
	rows, err := s.pool.Query(ctx, "SELECT tree_size, root_hash, note, created_at FROM audit_checkpoints WHERE tree_size = $1", size)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("audit: checkpoint: %w", err)
	}
	c, err := pgx.CollectOneRow(rows, scanCheckpoint)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, ErrNotFound
	}
	if err != nil {
		return c, fmt.Errorf("audit: checkpoint: %w", err)
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

// checkpointer signs and stores a checkpoint whenever the tree has grown,
// checking every interval. Several processes may run one on the same
// database: the tree size is the checkpoint's key, so they agree.
//
// It does not trust its table. Before it builds on the latest stored
// checkpoint it opens that checkpoint's note with its own verifier, and it
// remembers the last checkpoint it signed itself. It refuses, counts
// (OnRefused) and logs each of these, and never signs over them:
//
//   - RefusedUnsigned: a row whose note does not verify with the log's key,
//     or names another size or root than its columns;
//   - RefusedAhead: a row whose size is ahead of the tree;
//   - RefusedRolledBack: the last checkpoint it signed is gone from the
//     table (it builds on the one it remembers);
//   - RefusedNotExtending: the latest signed row does not extend the last
//     root it signed itself;
//   - RefusedConflict: the row at the size it just signed names another
//     root.
type checkpointer struct {
	store  *store
	Signer note.Signer
	// Verifiers check the log's own signatures: Signer's, and its earlier
	// keys' (after a rotation).
	Verifiers []note.Verifier
	Origin    string
	Interval  time.Duration
	Log       *slog.Logger
	// OnCheckpoint, if set, is called after each stored checkpoint (metrics).
	OnCheckpoint func(Checkpoint)
	// OnInconsistent, if set, is called when the tree no longer extends the
	// latest signed checkpoint (metrics, alerts).
	OnInconsistent func(error)
	// OnRefused, if set, is called for each stored row the checkpointer
	// refuses to build on, with the reason (metrics, alerts).
	OnRefused func(reason string)
	// Witnesses, if it names any, are asked to cosign every checkpoint
	// (C2SP tlog-witness); a checkpoint is published once Quorum of them
	// did. Until then the latest one is asked again every round.
	Witnesses WitnessPolicy
	// OnWitness, if set, is called with each witness's answer: cosigned,
	// conflict, refused, unavailable (metrics).
	OnWitness func(witness, result string)
	// OnPublished, if set, is called when a checkpoint reaches the quorum.
	OnPublished func(Checkpoint)

	wcOnce sync.Once
	wc     *witnessClient

	mu    sync.Mutex
	last  *Checkpoint  // the last checkpoint this process signed or verified as its own
	round witnessRound // what the latest round of asking the witnesses found
}

// witnessRound is what one round of asking the witnesses found.
type witnessRound struct {
	asked    bool  // a round has asked them (none does while the log is empty)
	size     int64 // the size of the checkpoint it offered them
	cosigned int   // how many of the policy's witnesses have cosigned it
	met      bool  // whether they make the policy's quorum
}

// Reasons the checkpointer refuses a stored checkpoint row.
const (
	RefusedUnsigned     = "unsigned"
	RefusedAhead        = "ahead_of_tree"
	RefusedRolledBack   = "rolled_back"
	RefusedNotExtending = "not_extending"
	RefusedConflict     = "conflict"
)

// ErrInconsistent means the stored tree does not extend the latest signed
// checkpoint: stored entries or hashes were changed after it was signed.
// No checkpoint is signed over such a tree.
var ErrInconsistent = errors.New("audit: the stored tree does not extend the latest signed checkpoint")

// ErrRefusedCheckpoint: a stored checkpoint row the checkpointer will not
// build on; nothing is signed this round.
var ErrRefusedCheckpoint = errors.New("audit: a stored checkpoint is refused")

// checkpointTimeout bounds one round (tree hash, signature, insert); Vault
// signing is the slow part.
const checkpointTimeout = 10 * time.Second

// Run checkpoints until ctx ends.
func (c *checkpointer) Run(ctx context.Context) {
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

// maxRefusedRows bounds how many refused rows one round reads past before
// it gives up finding a checkpoint it can build on.
const maxRefusedRows = 64

// refuse reports a refused row.
func (c *checkpointer) refuse(reason string, row Checkpoint, detail string) {
	c.Log.Error("stored checkpoint refused", "reason", reason, "tree_size", row.Size, "detail", detail)
	if c.OnRefused != nil {
		c.OnRefused(reason)
	}
}

// anchor returns the checkpoint the next one must extend: the latest
// stored row that is the log's own signature over what its columns say and
// is not ahead of the tree, refusing every row above it; and, once this
// process has signed, no older than what it signed itself. found is false
// when there is none (an empty table).
func (c *checkpointer) anchor(ctx context.Context, size int64) (cp Checkpoint, found bool, err error) {
	rows, err := c.store.checkpoints(ctx, maxRefusedRows)
	if err != nil {
		return Checkpoint{}, false, err
	}
	for _, row := range rows {
		if row.Size > size {
			c.refuse(RefusedAhead, row, fmt.Sprintf("the tree has %d entries", size))
			continue
		}
		if err := c.verify(row); err != nil {
			c.refuse(RefusedUnsigned, row, err.Error())
			continue
		}
		cp, found = row, true
		break
	}
	c.mu.Lock()
	last := c.last
	c.mu.Unlock()
	if last == nil {
		if !found && len(rows) > 0 {
			// Rows exist and none is this log's: signing afresh would
			// build on nothing. After a key rotation, the previous key
			// must be configured.
			return Checkpoint{}, false, fmt.Errorf("%w: none of the latest %d stored checkpoints is signed by this log's keys (after a rotation, configure the previous key)",
				ErrRefusedCheckpoint, len(rows))
		}
		return cp, found, nil
	}
	if !found || cp.Size < last.Size {
		c.refuse(RefusedRolledBack, *last, "the checkpoint this process signed is not in the table; building on it")
		return *last, true, nil
	}
	if cp.Size > last.Size || cp.Root != last.Root {
		proof, err := c.store.ConsistencyProof(ctx, last.Size, cp.Size)
		if err != nil {
			return Checkpoint{}, false, err
		}
		if err := tlog.CheckTree(proof, cp.Size, cp.Root, last.Size, last.Root); err != nil {
			c.refuse(RefusedNotExtending, cp, err.Error())
			return Checkpoint{}, false, fmt.Errorf("%w: the checkpoint at %d does not extend the one this process signed at %d", ErrRefusedCheckpoint, cp.Size, last.Size)
		}
	}
	return cp, true, nil
}

// verify checks that row's note is the log's own signature over exactly
// the size and root in its columns.
func (c *checkpointer) verify(row Checkpoint) error {
	size, root, err := OpenCheckpoint([]byte(row.Note), c.Origin, c.Verifiers...)
	if err != nil {
		return err
	}
	if size != row.Size || root != row.Root {
		return fmt.Errorf("its note names size %d, its columns %d", size, row.Size)
	}
	return nil
}

// Once signs and stores a checkpoint if the tree has grown past the latest
// one it can build on (anchor), and only if the grown tree provably extends
// it: a consistency proof from the stored hashes must check against that
// root, so the service never signs a rewritten history. It reports whether
// it stored one.
func (c *checkpointer) Once(ctx context.Context) (bool, error) {
	size, err := c.store.Size(ctx)
	if err != nil {
		return false, err
	}
	if size == 0 {
		return false, nil
	}
	latest, found, err := c.anchor(ctx, size)
	if err != nil {
		return false, err
	}
	if found && latest.Size >= size {
		c.remember(latest)
		return false, c.witness(ctx, latest)
	}
	root, err := c.store.TreeHash(ctx, size)
	if err != nil {
		return false, err
	}
	if found {
		proof, err := c.store.ConsistencyProof(ctx, latest.Size, size)
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
	err = c.store.pool.QueryRow(ctx,
		`INSERT INTO audit_checkpoints (tree_size, root_hash, note) VALUES ($1, $2, $3)
		 ON CONFLICT (tree_size) DO NOTHING RETURNING created_at`, size, root[:], signed).Scan(&created)
	if errors.Is(err, pgx.ErrNoRows) {
		// Another process signed this size first, or someone wrote a row
		// there: it must be the log's signature over this same root.
		row, rerr := c.store.checkpointAt(ctx, size)
		if rerr != nil {
			return false, rerr
		}
		if verr := c.verify(row); verr != nil || row.Root != root {
			c.refuse(RefusedConflict, row, "the row at the size just signed names another root or is not signed")
			return false, fmt.Errorf("%w: the row at %d is not this log's checkpoint of its tree", ErrRefusedCheckpoint, size)
		}
		c.remember(row)
		return false, c.witness(ctx, row)
	}
	if err != nil {
		return false, fmt.Errorf("audit: store checkpoint: %w", err)
	}
	cp := Checkpoint{Size: size, Root: root, Note: signed, CreatedAt: created}
	c.remember(cp)
	if c.OnCheckpoint != nil {
		c.OnCheckpoint(cp)
	}
	return true, c.witness(ctx, cp)
}

// ErrWitnessQuorum: the witnesses that cosigned the latest checkpoint are
// fewer than the policy's quorum; it is not published yet.
var ErrWitnessQuorum = errors.New("audit: the latest checkpoint lacks its witnesses' quorum")

// witness has the policy's witnesses cosign cp, unless none are
// configured, and reports ErrWitnessQuorum while it lacks the quorum.
func (c *checkpointer) witness(ctx context.Context, cp Checkpoint) error {
	if len(c.Witnesses.Witnesses) == 0 {
		return nil
	}
	c.wcOnce.Do(func() {
		c.wc = &witnessClient{policy: c.Witnesses, http: &http.Client{}, store: c.store, onResult: c.OnWitness, size: map[string]int64{}, next: map[string]int64{}}
	})
	have, err := c.wc.cosign(ctx, cp)
	if err != nil {
		return err
	}
	met := c.Witnesses.met(func(name string) bool { _, ok := have[name]; return ok })
	c.mu.Lock()
	c.round = witnessRound{asked: true, size: cp.Size, cosigned: len(have), met: met}
	c.mu.Unlock()
	if !met {
		return fmt.Errorf("%w: %d cosigned at size %d; the quorum is %s", ErrWitnessQuorum, len(have), cp.Size, c.Witnesses.Describe())
	}
	if c.OnPublished != nil {
		c.OnPublished(cp)
	}
	return nil
}

// witnessQuorum reports what the latest round found, asking no witness:
// ErrWitnessQuorum when fewer than the quorum had cosigned the checkpoint
// it offered them; nil when the quorum had, when no witness is configured,
// and before any round asked them (the log is empty).
func (c *checkpointer) witnessQuorum() error {
	c.mu.Lock()
	r := c.round
	c.mu.Unlock()
	if len(c.Witnesses.Witnesses) == 0 || !r.asked || r.met {
		return nil
	}
	return fmt.Errorf("%w: %d cosigned in the latest round, at size %d; the quorum is %s", ErrWitnessQuorum, r.cosigned, r.size, c.Witnesses.Describe())
}

// remember keeps cp as the last checkpoint this process stands behind.
func (c *checkpointer) remember(cp Checkpoint) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last == nil || cp.Size >= c.last.Size {
		c.last = &cp
	}
}

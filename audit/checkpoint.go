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

	"github.com/mediatorhq/mediator/job"
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
//
// Nor does it sign over a database that lost its tail: one holding fewer
// entries than a checkpoint it signed, or than a checkpoint witnesses
// making the policy's quorum have cosigned (after a failover to a standby
// that had not received them); one witness alone is not believed.
// Before it signs for the first time in a run, it offers the latest stored
// checkpoint to the witnesses, which answer with their own size when they
// have cosigned more. On a lost tail it halts the log (audit_halt, see
// ErrHalted): no append, no signature, until an operator acts.
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
	// OnHalt, if set, is called each round with whether the log is halted
	// (metrics, alerts).
	OnHalt func(halted bool)

	wcOnce      sync.Once
	wc          *witnessClient
	stopUploads context.CancelFunc

	mu    sync.Mutex
	last  *Checkpoint  // the last checkpoint this process signed or verified as its own
	round witnessRound // what the latest round of asking the witnesses found
	// probed is whether, in this run, the witnesses confirmed that none of
	// them has cosigned more than the database holds.
	probed bool
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

// ErrTailLost means the database holds less of the log than was signed:
// the checkpointer halted the log (ErrHalted) rather than sign a fork.
var ErrTailLost = errors.New("audit: the database lost entries of the log that were signed")

// Run checkpoints until ctx ends. Each run starts by asking the witnesses
// again what they have cosigned (a run starts when this process takes the
// checkpointer's lock, which after a failover is on the new primary).
func (c *checkpointer) Run(ctx context.Context) {
	c.mu.Lock()
	c.probed = false
	c.mu.Unlock()
	round := func() {
		rctx, cancel := context.WithTimeout(ctx, checkpointTimeout)
		defer cancel()
		if _, err := c.Once(rctx); err != nil && ctx.Err() == nil {
			c.Log.Error("checkpoint failed", "err", err)
		}
	}
	// The first round at once: after a failover, the sooner the witnesses
	// are asked, the fewer entries a lost tail lets in before the halt.
	round()
	job.Every(ctx, c.Interval, round)
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
// process has signed, no older than what it signed itself (remembered is
// then true if its row is gone from the table). found is false when there
// is none (an empty table). A tree smaller than what this process signed
// has lost its tail: the log is halted.
func (c *checkpointer) anchor(ctx context.Context, size int64) (cp Checkpoint, found, remembered bool, err error) {
	rows, err := c.store.checkpoints(ctx, maxRefusedRows)
	if err != nil {
		return Checkpoint{}, false, false, err
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
			return Checkpoint{}, false, false, fmt.Errorf("%w: none of the latest %d stored checkpoints is signed by this log's keys (after a rotation, configure the previous key)",
				ErrRefusedCheckpoint, len(rows))
		}
		return cp, found, false, nil
	}
	if size < last.Size {
		return Checkpoint{}, false, false, c.tailLost(ctx, size, last.Size,
			fmt.Sprintf("this process signed a checkpoint of %d entries; the database holds %d", last.Size, size))
	}
	if !found || cp.Size < last.Size {
		c.refuse(RefusedRolledBack, *last, "the checkpoint this process signed is not in the table; building on it")
		return *last, true, true, nil
	}
	if cp.Size > last.Size || cp.Root != last.Root {
		proof, err := c.store.ConsistencyProof(ctx, last.Size, cp.Size)
		if err != nil {
			return Checkpoint{}, false, false, err
		}
		if err := tlog.CheckTree(proof, cp.Size, cp.Root, last.Size, last.Root); err != nil {
			c.refuse(RefusedNotExtending, cp, err.Error())
			return Checkpoint{}, false, false, fmt.Errorf("%w: the checkpoint at %d does not extend the one this process signed at %d", ErrRefusedCheckpoint, cp.Size, last.Size)
		}
	}
	return cp, true, false, nil
}

// tailLost halts the log: the database holds treeSize entries, and a
// checkpoint of signedSize was signed.
func (c *checkpointer) tailLost(ctx context.Context, treeSize, signedSize int64, reason string) error {
	c.Log.Error("the database lost the log's tail; halting the log", "tree_size", treeSize, "signed_size", signedSize, "reason", reason)
	err := c.store.recordHalt(ctx, reason, treeSize, signedSize)
	if c.OnHalt != nil {
		c.OnHalt(true)
	}
	return fmt.Errorf("%w: %s: %w", ErrTailLost, reason, err)
}

// witnessesAhead checks what the witnesses answered a checkpoint of
// offered entries. The log is halted only when witnesses that make the
// policy's quorum have cosigned a larger tree: a published checkpoint the
// database no longer holds. One witness, or any set short of the quorum,
// that says so is not believed: it cannot halt the log on its word (a
// witness's 409 carries a size and no proof), and if it did see a
// checkpoint that never reached the quorum, it refuses what the log signs
// next, which MediatorWitnessRefusedCheckpoint reports. Another process
// may have stored and had that tree cosigned since this one read the
// table (two checkpointers for a moment): the tail is lost only if the
// table still holds no checkpoint of the log's at that size or beyond.
func (c *checkpointer) witnessesAhead(ctx context.Context, treeSize, offered int64) error {
	names, ahead := c.witnessClient().ahead(offered)
	if len(names) == 0 || !c.Witnesses.met(func(name string) bool { return names[name] }) {
		return nil
	}
	rows, err := c.store.checkpoints(ctx, maxRefusedRows)
	if err != nil {
		return err
	}
	for _, row := range rows {
		if row.Size >= ahead && c.verify(row) == nil {
			return fmt.Errorf("audit: the witnesses are at %d entries, past the %d offered, and the table has caught up; next round", ahead, offered)
		}
	}
	return c.tailLost(ctx, treeSize, ahead, fmt.Sprintf("witnesses making the quorum (%s) have cosigned a checkpoint of %d entries; the database's newest has %d",
		c.Witnesses.Describe(), ahead, offered))
}

// probe offers the latest stored checkpoint to the witnesses once per run,
// before this run signs anything: a witness that has cosigned a larger
// tree answers with its size (C2SP tlog-witness, 409), and when witnesses
// making the quorum do, the log is halted (witnessesAhead). Until the
// policy's quorum has cosigned the stored checkpoint, so holds nothing
// newer, nothing is signed.
func (c *checkpointer) probe(ctx context.Context, anchor Checkpoint, found bool, size int64) error {
	c.mu.Lock()
	probed := c.probed
	c.mu.Unlock()
	if probed || len(c.Witnesses.Witnesses) == 0 {
		return nil
	}
	if found {
		// Every witness is asked, even those whose cosignature is
		// stored: what the database says it holds is what is checked.
		cosigned := c.witnessClient().askAll(ctx, anchor, nil)
		if err := c.witnessesAhead(ctx, size, anchor.Size); err != nil {
			return err
		}
		if !c.Witnesses.met(func(name string) bool { _, ok := cosigned[name]; return ok }) {
			return fmt.Errorf("%w: not signing until the witnesses confirm they hold nothing newer than the database's %d entries (%d of them did; the quorum is %s)",
				ErrWitnessQuorum, anchor.Size, len(cosigned), c.Witnesses.Describe())
		}
	}
	// With no checkpoint stored there is nothing to offer: a database that
	// lost every checkpoint is caught by the witnesses, which refuse the
	// next one (docs/operations.md).
	c.mu.Lock()
	c.probed = true
	c.mu.Unlock()
	return nil
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
	if err := checkHalt(ctx, c.store.pool); err != nil {
		if c.OnHalt != nil && errors.Is(err, ErrHalted) {
			c.OnHalt(true)
		}
		return false, err
	}
	if c.OnHalt != nil {
		c.OnHalt(false)
	}
	size, err := c.store.Size(ctx)
	if err != nil {
		return false, err
	}
	if size == 0 {
		return false, nil
	}
	latest, found, remembered, err := c.anchor(ctx, size)
	if err != nil {
		return false, err
	}
	if found && latest.Size >= size {
		c.remember(latest)
		return false, c.witness(ctx, latest)
	}
	if err := c.probe(ctx, latest, found, size); err != nil {
		return false, err
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
			if remembered {
				// The checkpoint this process signed is gone with the
				// entries under it, and others took their places.
				return false, c.tailLost(ctx, size, latest.Size,
					fmt.Sprintf("the checkpoint of %d entries this process signed is not in the database, and its tree does not extend it", latest.Size))
			}
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
	have, err := c.witnessClient().cosign(ctx, cp)
	if err != nil {
		return err
	}
	if err := c.witnessesAhead(ctx, cp.Size, cp.Size); err != nil {
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

// witnessClient returns the client that asks the witnesses, made once.
func (c *checkpointer) witnessClient() *witnessClient {
	c.wcOnce.Do(func() {
		stop, cancel := context.WithCancel(context.Background())
		c.wc = &witnessClient{policy: c.Witnesses, http: &http.Client{}, store: c.store, onResult: c.OnWitness,
			size: map[string]int64{}, next: map[string]int64{}, stop: stop}
		c.stopUploads = cancel
	})
	return c.wc
}

// Close ends the mirrors' uploads running in the background and waits
// for them.
func (c *checkpointer) Close() {
	c.wcOnce.Do(func() {}) // none made after this
	if c.wc != nil {
		c.stopUploads()
		c.wc.uploading.Wait()
	}
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

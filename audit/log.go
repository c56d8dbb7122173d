package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/mediatorhq/mediator/batch"
	"github.com/mediatorhq/mediator/job"
	"github.com/mediatorhq/mediator/leader"
)

// Log is the audit log as the service publishes it: appends through a
// group-commit queue, the latest checkpoint the witnesses cosigned,
// entries, proofs and evidence bundles under it, and the job that signs a
// checkpoint whenever the tree grows. Open starts it; the function Open
// returns stops it. It is safe for concurrent use.
//
// Log is the log's one published face. Rows written into its tables by
// anyone but the service are never served as checkpoints; entries and
// proofs are served as stored, for a client to check against a
// checkpoint it trusts.
type Log struct {
	store *store
	// reader is where reads that may lag go (Config.ReadPool): store
	// itself, or a standby's.
	reader    *store
	key       CheckpointKey
	verifiers []note.Verifier
	origin    string
	witnesses WitnessPolicy
	appends   *batch.Queue[appendRequest, []Appended]
	metrics   *Metrics
	// checkpoints is the checkpoint job, which asks the witnesses.
	checkpoints *checkpointer
	// publishedSize is the size of the largest checkpoint LatestCheckpoint
	// has returned. A published checkpoint stays published (its
	// cosignatures are not withdrawn), so a tile within its tree is served
	// without looking the checkpoint up again.
	publishedSize atomic.Int64
}

// Config configures a Log.
type Config struct {
	Pool *pgxpool.Pool
	// ReadPool, if set, serves the reads that may lag behind the primary:
	// the published checkpoint, entries, searches, proofs, bundles, tiles
	// and tlog-proofs. A standby's pool (target_session_attrs=
	// prefer-standby): it serves the log as far as it has replayed it,
	// and ErrNotReplicated beyond. Appends, the checkpointer and the
	// witnesses use Pool only.
	ReadPool *pgxpool.Pool
	// Origin names the log in its checkpoints; Key's name must be Origin.
	Origin string
	Key    CheckpointKey
	// Witnesses, if it names any, cosign every checkpoint before it is
	// published (served and exported).
	Witnesses WitnessPolicy
	// PreviousKeys are verifier keys that signed this log's checkpoints
	// before a rotation, besides those the key reports itself
	// (PastVerifierKeys): the checkpointer builds on, and the service
	// serves, only checkpoints these or the current key signed.
	PreviousKeys []string
	// CheckpointInterval is how often the tree is checked for growth and,
	// if it grew, a checkpoint signed.
	CheckpointInterval time.Duration
	// LeaderInterval is how often a process that does not run the
	// checkpointer tries to take it over (default one second): several
	// processes on one database run it one at a time (package leader).
	LeaderInterval time.Duration
	Logger         *slog.Logger
	// Metrics, if set, records the log's appends and checkpoints.
	Metrics *Metrics
}

// maxGroupEntries bounds one group transaction: large enough to amortize
// the commit, small enough that one group's latency stays well under a
// second.
const maxGroupEntries = 10000

// groupCommitTimeout bounds one group transaction: far above a healthy
// commit (tens of milliseconds), below the server's write timeout.
const groupCommitTimeout = 30 * time.Second

// finalCheckpointTimeout bounds the checkpoint Close signs over the last
// entries appended before it.
const finalCheckpointTimeout = 10 * time.Second

// ErrClosed is returned by Append after the log was closed.
var ErrClosed = errors.New("audit: log closed")

// Open returns the log on cfg.Pool with its group commit ready and its
// checkpoint job started, and the function that closes it. Close waits for
// every append already queued to commit and be answered, stops the
// checkpoint job, and signs a last checkpoint over what was appended; call
// it after the HTTP server has drained, so that every request being served
// is answered. Appends after Close fail with ErrClosed.
func Open(ctx context.Context, cfg Config) (*Log, func(context.Context) error, error) {
	if cfg.Key == nil || cfg.Key.Name() != cfg.Origin {
		return nil, nil, fmt.Errorf("audit: open: the checkpoint key must be named by the log origin %q", cfg.Origin)
	}
	if cfg.CheckpointInterval <= 0 {
		return nil, nil, errors.New("audit: open: the checkpoint interval must be positive")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	verifiers, err := checkpointVerifiers(cfg.Key, cfg.PreviousKeys)
	if err != nil {
		return nil, nil, err
	}
	if q := cfg.Witnesses.MinCosigners(); q > len(cfg.Witnesses.Witnesses) || q < 0 {
		return nil, nil, ErrNoWitnesses
	}
	if err := cfg.Witnesses.checkForLog(cfg.Key.VerifierKey()); err != nil {
		return nil, nil, fmt.Errorf("audit: open: %w", err)
	}
	l := &Log{store: newStore(cfg.Pool), key: cfg.Key, verifiers: verifiers, origin: cfg.Origin, metrics: cfg.Metrics, witnesses: cfg.Witnesses}
	l.store.filters.onProbes = l.metrics.duplicateProbes
	l.store.onSteps = l.metrics.sequencerSteps
	l.reader = l.store
	if cfg.ReadPool != nil && cfg.ReadPool != cfg.Pool {
		l.reader = newStore(cfg.ReadPool)
	}
	l.appends = &batch.Queue[appendRequest, []Appended]{
		Fn:      l.commitGroup,
		Max:     maxGroupEntries,
		Weight:  func(r appendRequest) int { return len(r.entries) },
		Timeout: groupCommitTimeout,
	}
	cp := &checkpointer{store: l.store, Signer: cfg.Key, Verifiers: verifiers, Origin: cfg.Origin, Interval: cfg.CheckpointInterval, Log: log,
		OnCheckpoint: l.metrics.checkpointSigned, OnInconsistent: func(error) { l.metrics.checkpointInconsistent() },
		OnRefused: l.metrics.checkpointRefused, Witnesses: cfg.Witnesses, OnWitness: l.metrics.witnessAnswer,
		OnPublished: l.metrics.checkpointPublished, OnHalt: l.metrics.halted}
	l.checkpoints = cp
	cpCtx, stopCheckpoints := context.WithCancel(context.WithoutCancel(ctx))
	leaderInterval := cfg.LeaderInterval
	if leaderInterval <= 0 {
		leaderInterval = time.Second
	}
	var leading atomic.Bool
	var wg sync.WaitGroup
	// One process at a time signs checkpoints, asks the witnesses,
	// stores tiles and filters, and summarises the time index: the
	// holder of the checkpointer's lock. Appends from every process are
	// sequenced by the sequencer lock, one transaction at a time.
	wg.Go(func() {
		leader.Run(cpCtx, leader.Config{Conn: cfg.Pool.Config().ConnConfig, Key: checkpointerLock, Name: "checkpointer",
			Interval: leaderInterval, Logger: log, OnChange: func(held bool) { leading.Store(held); l.metrics.leading(held) }},
			func(ctx context.Context) {
				var jobs sync.WaitGroup
				jobs.Go(func() { cp.Run(ctx) })
				jobs.Go(func() { l.storeTiles(ctx, cfg.CheckpointInterval, log) })
				jobs.Go(func() { l.storeFilters(ctx, cfg.CheckpointInterval, log) })
				jobs.Go(func() { l.summarizeTimes(ctx, cfg.CheckpointInterval, log) })
				jobs.Wait()
			})
	})
	closeLog := func(ctx context.Context) error {
		err := l.appends.Close(ctx)
		wasLeading := leading.Load()
		stopCheckpoints()
		wg.Wait()
		defer cp.Close()
		if !wasLeading {
			return err // the process that leads signs over these entries
		}
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalCheckpointTimeout)
		defer cancel()
		if _, cerr := cp.Once(fctx); cerr != nil {
			log.Error("final checkpoint failed", "err", cerr)
		}
		return err
	}
	return l, closeLog, nil
}

// TxAppender returns a TxAppender that shares the log's own appends'
// event-id filters, for rows elsewhere that commit with their entries.
func (l *Log) TxAppender() TxAppender { return l.store.txAppender }

// storeTiles writes the full hash tiles of the latest published tree into
// audit_leaf_tile_parts (level 0, in eight parts) and audit_tiles (levels
// 1 and up), and its partial tiles from level 2 up into
// audit_partial_tiles, every interval until ctx ends, a bounded number at
// a time, so that a proof or a tile reads a row or a few. It catches up after a
// restart, or on a log that grew before the tables existed, at
// maxTilesPerCall tiles a round.
func (l *Log) storeTiles(ctx context.Context, interval time.Duration, log *slog.Logger) {
	var stored int64 // the tree size whose tiles are all stored
	var edges partialTileEdges
	job.Every(ctx, interval, func() {
		cp, err := l.LatestCheckpoint(ctx)
		if err != nil || cp.Size>>TileHeight == stored>>TileHeight {
			return
		}
		n, err := l.store.storeTiles(ctx, cp.Size, &edges)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("storing full tiles failed; they are served from the entries meanwhile", "err", err)
			}
			return
		}
		if n < maxTilesPerCall {
			stored = cp.Size
		}
	})
}

// pastKeys is a CheckpointKey that knows the verifier keys of its earlier
// versions (vaultclient.TransitSigner).
type pastKeys interface {
	PastVerifierKeys() []string
}

// checkpointVerifiers returns the verifiers of the key's own signatures,
// its earlier versions' and previous's.
func checkpointVerifiers(key CheckpointKey, previous []string) ([]note.Verifier, error) {
	vkeys := append([]string{key.VerifierKey()}, previous...)
	if p, ok := key.(pastKeys); ok {
		vkeys = append(vkeys, p.PastVerifierKeys()...)
	}
	var vs []note.Verifier
	for _, vk := range vkeys {
		v, err := note.NewVerifier(vk)
		if err != nil {
			return nil, fmt.Errorf("audit: open: checkpoint verifier key: %w", err)
		}
		if v.Name() != key.Name() {
			return nil, fmt.Errorf("audit: open: checkpoint verifier key %q is not named by the log origin %q", vk, key.Name())
		}
		vs = append(vs, v)
	}
	return vs, nil
}

// WitnessQuorum reports, from the checkpoint job's latest round of asking
// the witnesses (it asks none itself), whether the witness policy's
// quorum has cosigned the checkpoint that round offered them:
// ErrWitnessQuorum when fewer have. It is nil when no witness is
// configured, and before the first round (while the log is empty). A round
// asks only the witnesses that have not cosigned its checkpoint yet, so
// while the log does not grow the answer stands as it was.
func (l *Log) WitnessQuorum(context.Context) error {
	return l.checkpoints.witnessQuorum()
}

// LatestCheckpoint returns the published checkpoint of the largest tree:
// the log's own signature over what its row says, not ahead of the tree,
// and cosigned by the witness policy's quorum, with their cosignature
// lines (C2SP tlog-cosignature) appended to the note. A row someone wrote
// into the table without the log's key is never served, nor a checkpoint
// the witnesses did not cosign. ErrNotFound when there is none.
func (l *Log) LatestCheckpoint(ctx context.Context) (Checkpoint, error) {
	size, err := l.reader.Size(ctx)
	if err != nil {
		return Checkpoint{}, err
	}
	// The newest rows are nearly always the answer: read a few, and read
	// further only when none of them is (monitors and the load generator
	// ask for the checkpoint many times a second).
	for _, limit := range []int{latestFirstRows, maxRefusedRows} {
		rows, err := l.reader.publishable(ctx, l.witnesses.MinCosigners(), limit)
		if err != nil {
			return Checkpoint{}, err
		}
		for _, row := range rows {
			cp, ok, err := l.published(ctx, row, size)
			if err != nil || ok {
				return cp, err
			}
		}
		if len(rows) < limit {
			break
		}
	}
	return Checkpoint{}, ErrNotFound
}

// latestFirstRows is how many of the newest cosigned rows LatestCheckpoint
// reads before it reads maxRefusedRows.
const latestFirstRows = 4

// published reports whether row is a published checkpoint of a tree of at
// most size entries: the log's own signature over what the row says, and
// the witness policy's quorum among its cosignatures, which it returns
// appended to the note.
func (l *Log) published(ctx context.Context, row Checkpoint, size int64) (Checkpoint, bool, error) {
	if row.Size > size {
		return row, false, nil
	}
	n, root, err := OpenCheckpoint([]byte(row.Note), l.origin, l.verifiers...)
	if err != nil || n != row.Size || root != row.Root {
		return row, false, nil
	}
	if len(l.witnesses.Witnesses) == 0 {
		l.notePublished(row.Size)
		return row, true, nil
	}
	lines, err := l.reader.cosignatures(ctx, row.Size)
	if err != nil {
		return row, false, err
	}
	cosigned := row.Note
	for _, w := range l.witnesses.Witnesses {
		cosigned += lines[w.Name]
	}
	if _, ok := l.witnesses.Satisfied([]byte(cosigned)); !ok {
		return row, false, nil
	}
	row.Note = cosigned
	l.notePublished(row.Size)
	return row, true, nil
}

// notePublished records that the checkpoint of size n is published.
func (l *Log) notePublished(n int64) {
	for {
		old := l.publishedSize.Load()
		if n <= old || l.publishedSize.CompareAndSwap(old, n) {
			return
		}
	}
}

// publishedTreeFor returns the size of a published tree that holds the
// tile at level, index and width (level -1 for an entry bundle): the
// remembered published size when it does, else the latest published
// checkpoint's.
func (l *Log) publishedTreeFor(ctx context.Context, level int, index int64, width int) (int64, error) {
	if n := l.publishedSize.Load(); tileInTree(max(level, 0), index, width, n) {
		return n, nil
	}
	cp, err := l.LatestCheckpoint(ctx)
	if err != nil {
		return 0, err
	}
	return cp.Size, nil
}

// WriteBundle writes the evidence bundle of the entries matching q under
// the latest published checkpoint (LatestCheckpoint): header, entries with
// inclusion proofs against it, trailer. ErrNotFound before any checkpoint
// is published. It returns how many entries it wrote.
func (l *Log) WriteBundle(ctx context.Context, w io.Writer, q Query) (int, error) {
	cp, err := l.LatestCheckpoint(ctx)
	if err != nil {
		return 0, err
	}
	return l.reader.writeBundleAt(ctx, w, q, cp)
}

// ErrNotReplicated: the log is read from a standby (Config.ReadPool) that
// has not replayed the entries or tree size asked for yet. A retry
// succeeds once it has; nothing wrong is ever served instead.
var ErrNotReplicated = errors.New("audit: the standby serving reads has not replayed that far yet")

// Entry returns the entry at seq as stored; ErrNotFound past the tree. An
// entry the standby has not replayed yet is read from the primary.
func (l *Log) Entry(ctx context.Context, seq int64) (StoredEntry, error) {
	e, err := l.reader.Entry(ctx, seq)
	if l.standby() && errors.Is(err, ErrNotFound) {
		return l.store.Entry(ctx, seq)
	}
	return e, err
}

// Search returns the entries matching q, at most q.Limit, in seq order:
// with a standby, as far as it has replayed.
func (l *Log) Search(ctx context.Context, q Query) ([]StoredEntry, error) {
	return l.reader.Search(ctx, q)
}

// InclusionProof proves entry seq is in the tree of size treeSize, for any
// size the tree has reached; a client checks it against a checkpoint it
// trusts. ErrBadRange when seq ≥ treeSize or treeSize is past the tree;
// ErrNotReplicated when a standby serves reads and has not replayed
// treeSize entries yet.
func (l *Log) InclusionProof(ctx context.Context, seq, treeSize int64) (tlog.RecordProof, error) {
	p, err := l.reader.InclusionProof(ctx, seq, treeSize)
	return p, l.replicated(err)
}

// ConsistencyProof proves the tree of size from is a prefix of the tree of
// size to, for sizes the tree has reached. ErrBadRange otherwise;
// ErrNotReplicated as for InclusionProof.
func (l *Log) ConsistencyProof(ctx context.Context, from, to int64) (tlog.TreeProof, error) {
	p, err := l.reader.ConsistencyProof(ctx, from, to)
	return p, l.replicated(err)
}

// replicated turns a standby's "not that large" into ErrNotReplicated:
// the primary may well be that large.
func (l *Log) replicated(err error) error {
	if l.standby() && (errors.Is(err, ErrNotFound) || errors.Is(err, ErrMissingEntries)) {
		return fmt.Errorf("%w: %w", ErrNotReplicated, err)
	}
	return err
}

// CosignedSize returns the size of the largest checkpoint witness
// cosigned, or 0 when it cosigned none: what a release can prove to a
// custodian that witnesses the log.
func (l *Log) CosignedSize(ctx context.Context, witness string) (int64, error) {
	return l.store.CosignedSize(ctx, witness)
}

// WitnessNames are the names of the witnesses of the log's policy.
func (l *Log) WitnessNames() []string {
	out := make([]string, len(l.witnesses.Witnesses))
	for i, w := range l.witnesses.Witnesses {
		out[i] = w.Name
	}
	return out
}

// VerifierKey is the note verifier key of the log's checkpoints.
func (l *Log) VerifierKey() string { return l.key.VerifierKey() }

// appendRequest is one caller's entries, canonicalized by the caller before
// they queue, in parallel with other callers.
type appendRequest struct {
	entries  []Entry
	prepared []preparedLeaf
	pre      *precheck
}

// Append appends entries in one transaction with whatever other callers'
// entries are queued with them (group commit): the sequencer lock and the
// commit are paid once per group rather than once per caller. Entries
// whose Submitter and EventID are logged with the same record are not
// appended again and report the original seq; a caller's entries holding
// one logged with a different record are all Refused. It returns only after the transaction holding the entries has
// committed; a failed transaction fails every caller in it, so nothing is
// acknowledged that is not durable.
func (l *Log) Append(ctx context.Context, entries []Entry) ([]Appended, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	start := time.Now()
	prepared, err := prepare(entries)
	if err != nil {
		return nil, err
	}
	pre, err := l.store.precheck(ctx, entries)
	if err != nil {
		return nil, err
	}
	out, err := l.appends.Do(ctx, appendRequest{entries: entries, prepared: prepared, pre: pre})
	if errors.Is(err, batch.ErrClosed) {
		return nil, ErrClosed
	}
	if err != nil {
		return nil, err
	}
	l.metrics.appended(out, time.Since(start))
	return out, nil
}

// commitGroup appends every request's entries in one transaction.
func (l *Log) commitGroup(ctx context.Context, reqs []appendRequest) ([][]Appended, error) {
	n := 0
	for _, r := range reqs {
		n += len(r.entries)
	}
	entries := make([]Entry, 0, n)
	prepared := make([]preparedLeaf, 0, n)
	pre := make([]*precheck, 0, len(reqs))
	sizes := make([]int, 0, len(reqs))
	for _, r := range reqs {
		entries = append(entries, r.entries...)
		prepared = append(prepared, r.prepared...)
		pre = append(pre, r.pre)
		sizes = append(sizes, len(r.entries))
	}
	appended, err := l.store.appendPrepared(ctx, entries, prepared, pre, sizes)
	if err != nil {
		return nil, err
	}
	out := make([][]Appended, len(reqs))
	off := 0
	for i, r := range reqs {
		out[i] = appended[off : off+len(r.entries) : off+len(r.entries)]
		off += len(r.entries)
	}
	return out, nil
}

// HashTile returns the C2SP tlog-tiles hash tile at level and index, width
// hashes wide (TileWidth for a full tile), of the tree of the latest
// published checkpoint (LatestCheckpoint): nothing the witnesses have not
// cosigned is served. ErrNotFound before any checkpoint is published and
// for a tile beyond the published tree. A tile within a tree already
// published is the same bytes in every larger tree, so it is read without
// looking the checkpoint up again.
func (l *Log) HashTile(ctx context.Context, level int, index int64, width int) ([]byte, error) {
	size, err := l.publishedTreeFor(ctx, level, index, width)
	if err != nil {
		return nil, err
	}
	b, err := l.reader.HashTile(ctx, level, index, width, size)
	if errors.Is(err, ErrBadRange) {
		return nil, l.beyond(ctx, level, index, width, fmt.Errorf("%w: the tile is not in the published tree of %d entries", ErrNotFound, size))
	}
	if err != nil && l.standby() {
		// A tile of a tree another standby published, not this one yet.
		return nil, l.notReplayed(ctx, err, size)
	}
	return b, err
}

// EntryBundle returns the C2SP tlog-tiles entry bundle at index, width
// entries wide (TileWidth for a full bundle), of the tree of the latest
// published checkpoint; ErrNotFound as for HashTile.
func (l *Log) EntryBundle(ctx context.Context, index int64, width int) ([]byte, error) {
	size, err := l.publishedTreeFor(ctx, -1, index, width)
	if err != nil {
		return nil, err
	}
	b, err := l.reader.EntryBundle(ctx, index, width, size)
	if errors.Is(err, ErrBadRange) {
		return nil, l.beyond(ctx, 0, index, width, fmt.Errorf("%w: the bundle is not in the published tree of %d entries", ErrNotFound, size))
	}
	if err != nil && l.standby() {
		return nil, l.notReplayed(ctx, err, size)
	}
	return b, err
}

// standby reports whether reads go to a standby (Config.ReadPool).
func (l *Log) standby() bool { return l.reader != l.store }

// notReplayed returns ErrNotReplicated for err when the standby holds
// fewer than size entries, else err.
func (l *Log) notReplayed(ctx context.Context, err error, size int64) error {
	if n, serr := l.reader.Size(ctx); serr == nil && n < size {
		return fmt.Errorf("%w: it holds %d of the %d entries: %w", ErrNotReplicated, n, size, err)
	}
	return err
}

// beyond is notFound for a tile beyond the tree the reader published,
// unless a standby serves reads and the primary's tree holds the tile:
// then the standby has not caught up, and a retry will do.
func (l *Log) beyond(ctx context.Context, level int, index int64, width int, notFound error) error {
	if !l.standby() {
		return notFound
	}
	if n, err := l.store.Size(ctx); err == nil && tileInTree(level, index, width, n) {
		return fmt.Errorf("%w: the primary holds the tile's entries", ErrNotReplicated)
	}
	return notFound
}

// Primary is the log read from the primary only, whatever Config.ReadPool
// says: for a caller that must see what it has just appended, such as a
// release proving its own request to the custodians.
type Primary struct{ l *Log }

// Primary returns the log's primary-only reads.
func (l *Log) Primary() Primary { return Primary{l} }

// WitnessNames are the names of the witnesses of the log's policy.
func (p Primary) WitnessNames() []string { return p.l.WitnessNames() }

// CosignedSize is Log.CosignedSize.
func (p Primary) CosignedSize(ctx context.Context, witness string) (int64, error) {
	return p.l.store.CosignedSize(ctx, witness)
}

// Entry returns the entry at seq as the primary stores it.
func (p Primary) Entry(ctx context.Context, seq int64) (StoredEntry, error) {
	return p.l.store.Entry(ctx, seq)
}

// InclusionProof is Log.InclusionProof, from the primary.
func (p Primary) InclusionProof(ctx context.Context, seq, treeSize int64) (tlog.RecordProof, error) {
	return p.l.store.InclusionProof(ctx, seq, treeSize)
}

package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/mediatorhq/mediator/idfilter"
	"github.com/mediatorhq/mediator/packedhash"
)

// sequencerLock is the PostgreSQL advisory lock key that serialises appends
// across every mediator process on one database, which is what keeps seq
// gapless and the stored tree consistent. ("mediator" in ASCII.)
const sequencerLock int64 = 0x6d65646961746f72

// checkpointerLock is the session advisory lock key held by the one
// process that runs the checkpointer (package leader). ("mediatoc".)
const checkpointerLock int64 = 0x6d65646961746f63

// store is the log's tables in PostgreSQL as they are: it reads and writes
// rows and checks nothing a witness or the checkpointer vouches for. What
// the service publishes goes through Log; store is the unpublished face
// that Log, the checkpointer and the verifier build on. It is safe for
// concurrent use; appends from any number of goroutines and processes are
// serialised by the sequencer lock.
type store struct {
	pool *pgxpool.Pool
	txAppender
	leaves recentLeaves // of this process's committed appends, for the tile job
	// onSteps, if set, is told how long each step of every committed
	// append took (Metrics.sequencerSteps).
	onSteps func([numAppendSteps]time.Duration)
}

// newStore returns a store on pool. The schema comes from migrations.
func newStore(pool *pgxpool.Pool) *store {
	a := newTxAppender()
	a.filters.keepCurrent = true // its appends commit here, so it knows when they did
	return &store{pool: pool, txAppender: a}
}

// TxAppender appends entries to the log inside a transaction its caller
// owns, so that a row elsewhere (an escrow, an access request) and its
// audit entry commit together or not at all. It takes the sequencer lock,
// which the transaction then holds until it ends: keep such transactions
// short. What it appends is durable once the caller commits and is
// published, like every entry, once a checkpoint covering it is cosigned.
type TxAppender interface {
	AppendTx(ctx context.Context, tx pgx.Tx, entries []Entry) ([]Appended, error)
}

// NewTxAppender returns the TxAppender of the log's tables.
// Each keeps its own copy of the closed generations' event-id filters and
// probes the current generation in the database for every id; a process
// that appends through the Log too shares the Log's filters, the current
// generation's included, with Log.TxAppender.
func NewTxAppender() TxAppender { return newTxAppender() }

func newTxAppender() txAppender {
	return txAppender{now: time.Now, filters: &generationFilters{}}
}

// txAppender implements TxAppender; the store embeds it for its own
// transactions.
type txAppender struct {
	now     func() time.Time
	filters *generationFilters
}

// Appended reports where an entry is in the log, or why it is not.
type Appended struct {
	Seq int64
	// Duplicate: the Submitter and EventID were already in the log (or
	// earlier in the batch) with the same record; Seq is the original's.
	Duplicate bool
	// Conflict: the Submitter and EventID were already in the log (or
	// earlier in the batch) with a different record. Nothing of the
	// entry's request was appended (Refused is set on all of them).
	Conflict bool
	// Refused: nothing was appended because an entry of the same request
	// conflicts; Seq is -1.
	Refused bool
}

// appendNow writes entries as one transaction of their own (no group
// commit; Log.Append is the service's road): their leaves and every new
// stored tree hash commit together or not at all. It returns only after the
// commit, so an Appended seq is durable. Entries whose Submitter and EventID
// are already logged with the same record are not appended; they report the
// original seq. If any entry's Submitter and EventID are logged with a
// different record, nothing is appended and every entry reports Refused.
//
// Cost: the precheck (a read only for its filters' maybes), then in one
// transaction a round trip for the lock, the halt, the size and the
// right edge, a read only for the current generation's maybes, one COPY
// and the commit.
func (s *store) appendNow(ctx context.Context, entries []Entry) ([]Appended, error) {
	prepared, err := prepare(entries)
	if err != nil {
		return nil, err
	}
	pre, err := s.precheck(ctx, entries)
	if err != nil {
		return nil, err
	}
	return s.appendPrepared(ctx, entries, prepared, []*precheck{pre}, []int{len(entries)})
}

// prepare canonicalizes every record, so that the serialised section of an
// append holds only splicing, hashing and I/O.
func prepare(entries []Entry) ([]preparedLeaf, error) {
	prepared := make([]preparedLeaf, len(entries))
	for i, e := range entries {
		p, err := prepareLeaf(e.Record)
		if err != nil {
			return nil, err
		}
		prepared[i] = p
	}
	return prepared, nil
}

// appendPrepared appends entries made of requests of the given sizes, in
// order, in one transaction; a request with a conflicting entry is refused
// whole while the others are appended; pre holds each request's precheck.
func (s *store) appendPrepared(ctx context.Context, entries []Entry, prepared []preparedLeaf, pre []*precheck, requests []int) ([]Appended, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	w := newStopwatch()
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{})
	if err != nil {
		return nil, fmt.Errorf("audit: begin: %w", err)
	}
	defer tx.Rollback(ctx) // no-op after commit
	// The log's size is most likely where this process's last append
	// ended: its right edge comes in the same round trip as the size.
	out, from, leaves, err := s.appendInTx(ctx, tx, entries, prepared, pre, requests, s.leaves.end(), w)
	if err != nil {
		return nil, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("audit: commit: %w", err)
	}
	w.lap(stepCommit)
	if s.onSteps != nil {
		s.onSteps(w.spent)
	}
	s.filters.committed(from, from+int64(len(leaves)))
	s.leaves.committed(from, leaves)
	return out, nil
}

// AppendTx implements TxAppender.
func (s txAppender) AppendTx(ctx context.Context, tx pgx.Tx, entries []Entry) ([]Appended, error) {
	prepared, err := prepare(entries)
	if err != nil {
		return nil, err
	}
	// Whether tx commits is its caller's to know: the entries' ids are
	// in this process's filter of the current generation, but the filter
	// reads them back from the table before it relies on them.
	out, _, _, err := s.appendInTx(ctx, tx, entries, prepared, nil, []int{len(entries)}, 0, nil)
	return out, err
}

// The hot queries on audit_entries, named so that the plan test
// (plans_test.go) explains the very text the store runs.
const (
	// sqlTreeSize is the log's size: max(seq) + 1, read from the primary
	// key's last entry.
	sqlTreeSize = "SELECT coalesce(max(seq) + 1, 0) FROM audit_entries"
	// sqlLoggedEventIDs is the duplicate check of an append: the entries
	// logged with each (event id $1[i], submitter $2[i]) in generation
	// $3[i]. One probe of the event-id index (generation, event id hash;
	// migration 00019) per triple, the row's id and submitter rechecked: a
	// LATERAL subquery with a LIMIT is never flattened into a join, so the
	// planner cannot trade the probes for a scan, whatever it believes of
	// the table's size (docs/decisions.md, "Hot queries do not depend on
	// planner statistics"). The index is not unique; the sequencer lock,
	// held around this check and the write, keeps (event id, submitter)
	// unique.
	sqlLoggedEventIDs = `SELECT q.submitter, q.event_id, e.seq, e.leaf, e.ingested_at
		FROM unnest($1::text[], $2::text[], $3::bigint[]) AS q(event_id, submitter, generation)
		CROSS JOIN LATERAL (SELECT seq, leaf, ingested_at FROM audit_entries
			WHERE seq >> 20 = q.generation AND hashtextextended(event_id, 0) = hashtextextended(q.event_id, 0)
				AND event_id = q.event_id AND submitter = q.submitter LIMIT 1) e`
	// sqlReadHashes reads the entries holding stored hashes: the right
	// edge an append preloads, and the hashes of every proof.
	sqlReadHashes = "SELECT seq, hashes FROM audit_entries WHERE seq = ANY($1)"
	// sqlEntry reads one entry by seq.
	sqlEntry = "SELECT seq, leaf FROM audit_entries WHERE seq = $1"
)

// idKey is an event id in its submitter's namespace.
type idKey struct{ submitter, eventID string }

// lockedSize takes the sequencer lock in tx, checks that the log is not
// halted, and reads the log's size, and, when guess is positive, the
// right edge of a tree of guess entries: four statements in one round
// trip, each run once the one before it has, the lock first. edge holds
// the hashes of packedhash.RightEdge(size) when size is guess, and is nil
// otherwise.
func lockedSize(ctx context.Context, tx pgx.Tx, guess int64) (size int64, edge []tlog.Hash, err error) {
	b := &pgx.Batch{}
	b.Queue("SELECT pg_advisory_xact_lock($1)", sequencerLock)
	b.Queue(sqlHalt)
	b.Queue(sqlTreeSize)
	if guess > 0 {
		entryHashes.QueueGuess(b, packedhash.RightEdge(guess), &edge)
	}
	br := tx.SendBatch(ctx, b)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return 0, nil, fmt.Errorf("audit: sequencer lock: %w", err)
	}
	if err := haltFrom(br.Query()); err != nil {
		return 0, nil, err
	}
	if err := br.QueryRow().Scan(&size); err != nil {
		return 0, nil, fmt.Errorf("audit: tree size: %w", err)
	}
	if err := br.Close(); err != nil {
		return 0, nil, err
	}
	if size != guess {
		edge = nil
	}
	return size, edge, nil
}

// logged is an entry already in the log, as the dedup check needs it.
type logged struct {
	seq        int64
	leaf       []byte
	ingestedAt time.Time
}

// appendInTx appends entries made of requests of the given sizes inside
// tx, under the sequencer lock: an entry whose submitter and event id are
// logged with the same record reports the original seq, and a request
// holding one logged with another record is refused whole. The accepted
// entries' leaves and stored hashes are written with one COPY, as entries
// [from, from+len(leaves)), leaves being their leaf hashes. pre holds
// each request's precheck (nil for none); guess is the size the log most
// likely has (0 for no guess). Each step's time goes to w, which may be
// nil.
func (s txAppender) appendInTx(ctx context.Context, tx pgx.Tx, entries []Entry, prepared []preparedLeaf, pre []*precheck, requests []int, guess int64, w *stopwatch) (out []Appended, from int64, leaves []tlog.Hash, err error) {
	keys, preOf := byEntry(entries, requests, pre)
	size, edge, err := lockedSize(ctx, tx, guess)
	if err != nil {
		return nil, 0, nil, err
	}
	w.lap(stepBegin)
	// The current generation's filter first: when the log has just moved
	// on, it becomes the closed generation's.
	cur, err := s.filters.current(ctx, tx, size)
	if err != nil {
		return nil, 0, nil, err
	}
	closed, err := s.filters.closed(ctx, tx, size, s.now())
	if err != nil {
		return nil, 0, nil, err
	}
	existing, distinct, err := s.filters.existingEventIDs(ctx, tx, entries, keys, preOf, generationOf(size), cur, closed, w)
	if err != nil {
		return nil, 0, nil, err
	}
	s.filters.appending(generationOf(size), distinct)
	w.lap(stepDedup)
	var hashes *packedhash.Batch
	if edge != nil {
		hashes = packedhash.NewBatchWithEdge(ctx, tx, entryHashes, size, edge)
	} else if hashes, err = packedhash.NewBatch(ctx, tx, entryHashes, size); err != nil {
		return nil, 0, nil, err
	}
	w.lap(stepPreload)
	g := &group{entries: entries, prepared: prepared, existing: existing, hashes: hashes,
		out: make([]Appended, len(entries)), batch: map[idKey]int{}, pending: map[idKey]int{}, next: size,
		// The batch's own timestamp: the moment the sequencer was ours.
		ingestedAt: s.now().UTC().Truncate(time.Microsecond)}
	start := 0
	for _, n := range requests {
		req := start
		start += n
		if !g.decide(req, req+n) {
			g.refuse(req, req+n)
			continue
		}
		if err := g.place(req, req+n); err != nil {
			return nil, 0, nil, err
		}
	}
	w.lap(stepPlace)
	if len(g.rows) > 0 {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"audit_entries"},
			[]string{"seq", "leaf", "hashes", "kind", "event_id", "submitter", "conversation_id", "occurred_at", "ingested_at"},
			pgx.CopyFromRows(g.rows)); err != nil {
			return nil, 0, nil, fmt.Errorf("audit: write entries: %w", err)
		}
	}
	w.lap(stepWrite)
	return g.out, size, g.leafHashes, nil
}

// group is one transaction's append in progress: which entries are
// duplicates, conflicts or new, and the rows and hashes of the new ones.
type group struct {
	entries    []Entry
	prepared   []preparedLeaf
	existing   map[idKey]logged
	hashes     *packedhash.Batch
	ingestedAt time.Time

	out []Appended
	// batch holds the entries of this group with an event id, by key: the
	// index of the one that is appended. pending holds the ids of the
	// request being decided, which enter batch only once it is accepted.
	batch, pending map[idKey]int
	rows           [][]any
	leafHashes     []tlog.Hash // of the rows, in order
	next           int64       // the seq the next new entry takes
}

// decide marks the duplicates among entries [from, to), one request, and
// reports whether the request may be appended: false when one of its
// event ids is logged, or earlier in the group, with another record.
func (g *group) decide(from, to int) bool {
	ok := true
	clear(g.pending)
	for i := from; i < to; i++ {
		e := g.entries[i]
		if e.EventID == "" {
			continue
		}
		k := idKey{e.Submitter, e.EventID}
		if old, found := g.existing[k]; found {
			if bytes.Equal(g.prepared[i].leaf(old.seq, old.ingestedAt), old.leaf) {
				g.out[i] = Appended{Seq: old.seq, Duplicate: true}
			} else {
				g.out[i], ok = Appended{Seq: -1, Conflict: true}, false
			}
			continue
		}
		j, found := g.batch[k]
		if !found {
			j, found = g.pending[k]
		}
		if !found {
			g.pending[k] = i
			continue
		}
		if bytes.Equal(g.prepared[i].canon, g.prepared[j].canon) {
			g.out[i] = Appended{Seq: -1, Duplicate: true} // its seq is j's, set by place
		} else {
			g.out[i], ok = Appended{Seq: -1, Conflict: true}, false
		}
	}
	return ok
}

// refuse marks every entry of the request [from, to) refused.
func (g *group) refuse(from, to int) {
	for i := from; i < to; i++ {
		g.out[i].Seq, g.out[i].Refused, g.out[i].Duplicate = -1, true, false
	}
}

// place gives each new entry of the accepted request [from, to) the next
// seq, its leaf and stored hashes, and a row to write; duplicates within
// the group take the seq of the entry they repeat.
func (g *group) place(from, to int) error {
	for i := from; i < to; i++ {
		e := g.entries[i]
		if g.out[i].Duplicate {
			if g.out[i].Seq < 0 {
				g.out[i].Seq = g.out[g.batch[idKey{e.Submitter, e.EventID}]].Seq
			}
			continue
		}
		leaf := g.prepared[i].leaf(g.next, g.ingestedAt)
		packed, leafHash, err := g.hashes.Append(g.next, leaf)
		if err != nil {
			return fmt.Errorf("audit: hash entry %d: %w", g.next, err)
		}
		g.rows = append(g.rows, []any{g.next, leaf, packed, e.Kind, nullable(e.EventID), e.Submitter,
			nullable(e.ConversationID), nullableTime(e.OccurredAt), g.ingestedAt})
		g.leafHashes = append(g.leafHashes, leafHash)
		if e.EventID != "" {
			g.batch[idKey{e.Submitter, e.EventID}] = i
		}
		g.out[i] = Appended{Seq: g.next}
		g.next++
	}
	return nil
}

// existingEventIDs reads the logged entries that have the submitter and
// event id of one of entries, whose filter keys are keys, in the
// generations whose filters do not rule it out: the current one (cur, nil
// when this process keeps none or it is behind) and the closed ones that
// the precheck of the entry's request, pre[i], did not cover (pre, or
// pre[i], nil for none); what the prechecks found is in the result too.
// It returns them with the filter keys of the distinct ids it looked for.
// The time until the filters have answered goes to w's filters step.
func (f *generationFilters) existingEventIDs(ctx context.Context, tx pgx.Tx, entries []Entry, keys []idfilter.Key, pre []*precheck, current int64, cur *idfilter.Filter, closed []*idfilter.Filter, w *stopwatch) (map[idKey]logged, []idfilter.Key, error) {
	ids := make([]idKey, 0, len(entries))
	distinct := make([]idfilter.Key, 0, len(entries))
	checked := make([]*precheck, 0, len(entries))
	wanted := make(map[idKey]bool, len(entries))
	found := make(map[idKey]logged, len(entries))
	var last *precheck
	for i, e := range entries {
		var p *precheck
		if i < len(pre) {
			p = pre[i]
		}
		if p != nil && p != last {
			for k, l := range p.found {
				keepEarliest(found, k, l)
			}
			last = p
		}
		k := idKey{e.Submitter, e.EventID}
		if e.EventID != "" && !wanted[k] {
			ids, distinct, checked = append(ids, k), append(distinct, keys[i]), append(checked, p)
			wanted[k] = true
		}
	}
	eventIDs, submitters, generations := f.probes(ids, distinct, checked, current, cur, closed)
	w.lap(stepFilters)
	if len(eventIDs) == 0 {
		return found, distinct, nil
	}
	rows, err := tx.Query(ctx, sqlLoggedEventIDs, loggedEventIDsArgs(eventIDs, submitters, generations)...)
	if err != nil {
		return nil, nil, fmt.Errorf("audit: look up event ids: %w", err)
	}
	if err := collectLogged(rows, found); err != nil {
		return nil, nil, err
	}
	return found, distinct, nil
}

// loggedEventIDsArgs are sqlLoggedEventIDs' arguments: event ids, their
// submitters and the generations to look in, by position.
func loggedEventIDsArgs(ids, submitters []string, generations []int64) []any {
	return []any{ids, submitters, generations}
}

// entryHashes is the log's table of packed hashes (package packedhash).
var entryHashes = packedhash.Table{ReadSQL: sqlReadHashes, What: "audit"}

// readHashes reads stored hashes by index in one query, in the order asked.
func readHashes(ctx context.Context, q packedhash.Querier, indexes []int64) ([]tlog.Hash, error) {
	return entryHashes.Read(ctx, q, indexes)
}

// HashReader returns a tlog.HashReader over the stored hashes. Each
// ReadHashes call is one query.
func (s *store) HashReader(ctx context.Context) tlog.HashReader {
	return entryHashes.Reader(ctx, s.pool)
}

// Size returns the number of entries in the log.
func (s *store) Size(ctx context.Context) (int64, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, sqlTreeSize).Scan(&n); err != nil {
		return 0, fmt.Errorf("audit: size: %w", err)
	}
	return n, nil
}

// ErrNotFound is returned for a seq or tree size the log does not have.
var ErrNotFound = errors.New("audit: not found")

// ErrBadRange is returned for proof arguments that describe no proof.
var ErrBadRange = errors.New("audit: bad range")

// StoredEntry is an entry as stored.
type StoredEntry struct {
	Seq  int64
	Leaf []byte
}

// Entry returns the entry at seq.
func (s *store) Entry(ctx context.Context, seq int64) (StoredEntry, error) {
	var e StoredEntry
	err := s.pool.QueryRow(ctx, sqlEntry, seq).Scan(&e.Seq, &e.Leaf)
	if errors.Is(err, pgx.ErrNoRows) {
		return e, ErrNotFound
	}
	if err != nil {
		return e, fmt.Errorf("audit: read entry %d: %w", seq, err)
	}
	return e, nil
}

// Query selects entries for officers. Zero values mean "any".
type Query struct {
	ConversationID string
	Kind           string
	From, To       time.Time // occurred_at bounds, inclusive from, exclusive to
	AfterSeq       int64     // cursor: entries with seq > AfterSeq; -1 for the start
	Limit          int
}

// searchWhere appends q's conditions to selectFrom and returns the SQL
// and its arguments.
func searchWhere(selectFrom string, q Query) (string, []any) {
	sql := selectFrom + " WHERE seq > $1"
	args := []any{q.AfterSeq}
	add := func(cond string, v any) {
		args = append(args, v)
		sql += fmt.Sprintf(" AND %s $%d", cond, len(args))
	}
	if q.ConversationID != "" {
		// The conversation index is keyed by the pseudonym's hash
		// (migration 00016); the row's own id is compared too, since two
		// pseudonyms may share a hash.
		args = append(args, q.ConversationID)
		n := len(args)
		sql += fmt.Sprintf(" AND hashtextextended(conversation_id, 0) = hashtextextended($%d, 0) AND conversation_id = $%d", n, n)
	}
	if q.Kind != "" {
		add("kind =", q.Kind)
	}
	if !q.From.IsZero() {
		add("occurred_at >=", q.From)
	}
	if !q.To.IsZero() {
		add("occurred_at <", q.To)
	}
	return sql, args
}

// searchPage is the query of one page of Search: q's entries after
// q.AfterSeq, in seq order, at most q.Limit.
func searchPage(q Query) (string, []any) {
	sql, args := searchWhere("SELECT seq, leaf FROM audit_entries", q)
	args = append(args, q.Limit)
	return sql + fmt.Sprintf(" ORDER BY seq LIMIT $%d", len(args)), args
}

// MaxSearchLimit bounds one page of Search.
const MaxSearchLimit = 1000

// Search returns up to q.Limit entries matching q in seq order.
func (s *store) Search(ctx context.Context, q Query) ([]StoredEntry, error) {
	if q.Limit <= 0 || q.Limit > MaxSearchLimit {
		q.Limit = MaxSearchLimit
	}
	sql, args := searchPage(q)
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("audit: search: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[StoredEntry])
	if err != nil {
		return nil, fmt.Errorf("audit: search: %w", err)
	}
	return out, nil
}

// InclusionProof proves that the entry at seq is in the tree of size
// treeSize, from the stored tiles and hashes (proofReader): in one round
// trip, unless a tile it needs is not stored yet.
func (s *store) InclusionProof(ctx context.Context, seq, treeSize int64) (tlog.RecordProof, error) {
	if seq < 0 || treeSize <= seq {
		return nil, ErrBadRange
	}
	r := &proofReader{ctx: ctx, s: s, treeSize: treeSize}
	p, err := tlog.ProveRecord(treeSize, seq, r)
	if err == nil {
		err = r.checkSize()
	}
	if errors.Is(err, ErrNotFound) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("audit: inclusion proof: %w", err)
	}
	return p, nil
}

// ConsistencyProof proves that the tree of size from is a prefix of the
// tree of size to.
func (s *store) ConsistencyProof(ctx context.Context, from, to int64) (tlog.TreeProof, error) {
	if from < 1 || to < from {
		return nil, ErrBadRange
	}
	r := &proofReader{ctx: ctx, s: s, treeSize: to}
	p, err := tlog.ProveTree(to, from, r)
	if err == nil {
		err = r.checkSize()
	}
	if errors.Is(err, ErrNotFound) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("audit: consistency proof: %w", err)
	}
	return p, nil
}

// TreeHash returns the root hash of the tree of size n.
func (s *store) TreeHash(ctx context.Context, n int64) (tlog.Hash, error) {
	if err := s.checkSize(ctx, n); err != nil {
		return tlog.Hash{}, err
	}
	h, err := tlog.TreeHash(n, s.HashReader(ctx))
	if err != nil {
		return tlog.Hash{}, fmt.Errorf("audit: tree hash: %w", err)
	}
	return h, nil
}

func (s *store) checkSize(ctx context.Context, n int64) error {
	size, err := s.Size(ctx)
	if err != nil {
		return err
	}
	if n > size {
		return fmt.Errorf("%w: tree size %d is beyond the log's %d entries", ErrNotFound, n, size)
	}
	return nil
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nullableTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

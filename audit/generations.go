package audit

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mediatorhq/mediator/idfilter"
	"github.com/mediatorhq/mediator/job"
)

// generationBits sizes the log's generations: generation g holds the
// entries g·2²⁰ to (g+1)·2²⁰−1. The event-id index is keyed by generation
// first (migration 00019, `seq >> 20`), so appends write into the current
// generation's part of it only, and its part the duplicate check probes
// for each new event id is at most 2²⁰ entries, whatever the log's size
// (docs/decisions.md, "The duplicate check probes one generation").
const generationBits = 20

// generationOf is the generation of the entry at seq.
func generationOf(seq int64) int64 { return seq >> generationBits }

// The queries on audit_event_filters and the one that builds a filter,
// named so that the plan test explains the text the store runs.
const (
	// sqlReadFilters reads the stored filters of generations $1 that were
	// built from the entries the table holds now: the generation's last
	// leaf is the one the filter was built with.
	sqlReadFilters = `SELECT f.generation, f.filter FROM audit_event_filters f
		WHERE f.generation = ANY($1) AND f.last_leaf = (SELECT sha256(e.leaf) FROM audit_entries e
			WHERE e.seq = ((f.generation + 1) << 20) - 1)`
	// sqlFiltersToStore is, in order, at most $2 of the closed
	// generations below $1 without a stored filter built with their last
	// leaf: none stored yet, or only one built before a restore brought
	// back other entries, or one removed (migration 00020).
	sqlFiltersToStore = `SELECT g FROM generate_series(0, $1::bigint - 1) AS g
		WHERE NOT EXISTS (SELECT 1 FROM audit_event_filters f
			WHERE f.generation = g AND f.last_leaf = (SELECT sha256(e.leaf) FROM audit_entries e
				WHERE e.seq = ((g + 1) << 20) - 1))
		ORDER BY g LIMIT $2`
	// sqlGenerationIDs reads the event ids of a generation's entries, a
	// range of the primary key.
	sqlGenerationIDs = "SELECT submitter, event_id FROM audit_entries WHERE seq >= $1 AND seq < $2 AND event_id IS NOT NULL"
	// sqlStoreFilter stores generation $1's filter $2 once for the hash
	// of its last leaf, entry $3.
	sqlStoreFilter = `INSERT INTO audit_event_filters (generation, filter, last_leaf)
		SELECT $1, $2, sha256(leaf) FROM audit_entries WHERE seq = $3
		ON CONFLICT (generation, last_leaf) DO NOTHING`
)

// generationFilters are the filters of the log's closed generations that
// this process has read from audit_event_filters, and, in a process that
// appends through a Log, a filter of the current generation that it keeps
// itself. A closed generation whose filter is not stored yet is probed in
// the database for every event id, as is the current generation while its
// filter is behind the log. Safe for concurrent use; the sequencer lock
// orders its callers anyway.
type generationFilters struct {
	mu      sync.Mutex
	filters map[int64]*idfilter.Filter
	looked  time.Time // when the table was last read for missing filters

	// stack holds the filters of the generations in stacked side by
	// side (docs/decisions.md, "The duplicate check probes one
	// generation"), and filters holds the stack's own filters of those
	// generations. It is made again when filters holds one it lacks,
	// once a generation, by one caller at a time (stacking), outside
	// the lock.
	stack    *idfilter.Stack
	stacked  []int64
	stacking bool

	// keepCurrent: this process keeps the current generation's filter,
	// cur. cur holds the event ids of every entry of generation curGen
	// below seq curUpTo, and perhaps others: ids of appends that did not
	// commit, or were not known to, are only false maybes. curUpTo moves
	// on only over entries known to be committed: the ones read from the
	// table under the sequencer lock, and the ones of this process's own
	// transactions once they committed (committed).
	keepCurrent bool
	cur         *idfilter.Filter
	curGen      int64
	curUpTo     int64
	// kept marks the closed generations whose filter in filters is the
	// one this process kept while they were current, not one it read.
	kept map[int64]bool

	// onProbes, if set, is told how many event ids each append looked up
	// in the database: in the current generation, and in closed ones (no
	// filter yet, or a maybe). The log counts them in its metrics.
	onProbes func(current, closed int64)
}

// filterLookInterval is how often a closed generation without a filter
// sends the sequencer to the table again: a filter is stored within a
// checkpoint interval or two of its generation's closing.
const filterLookInterval = time.Second

// closed returns the closed generations' filters, generation g at index
// g, nil for one not stored yet, for a log of size entries, read in tx
// when some are missing and the table was not read within
// filterLookInterval.
func (f *generationFilters) closed(ctx context.Context, tx pgx.Tx, size int64, now time.Time) ([]*idfilter.Filter, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	current := generationOf(size)
	var missing []int64
	for g := range current {
		if f.filters[g] == nil {
			missing = append(missing, g)
		}
	}
	if len(missing) > 0 && now.Sub(f.looked) >= filterLookInterval {
		f.looked = now
		rows, err := tx.Query(ctx, sqlReadFilters, missing)
		if err != nil {
			return nil, fmt.Errorf("audit: read event-id filters: %w", err)
		}
		var stored []struct {
			Generation int64
			Filter     []byte
		}
		if stored, err = pgx.CollectRows(rows, pgx.RowToStructByPos[struct {
			Generation int64
			Filter     []byte
		}]); err != nil {
			return nil, fmt.Errorf("audit: read event-id filters: %w", err)
		}
		for _, s := range stored {
			fl, err := idfilter.Parse(s.Filter)
			if err != nil {
				return nil, fmt.Errorf("audit: event-id filter of generation %d: %w", s.Generation, err)
			}
			if fl.Size() != idfilter.SizeFor(1<<generationBits) {
				return nil, fmt.Errorf("audit: event-id filter of generation %d: %d bytes, want %d", s.Generation, fl.Size(), idfilter.SizeFor(1<<generationBits))
			}
			if f.filters == nil {
				f.filters, f.kept = map[int64]*idfilter.Filter{}, map[int64]bool{}
			}
			f.filters[s.Generation] = fl
		}
	}
	out := make([]*idfilter.Filter, current)
	for g := range current {
		out[g] = f.filters[g]
	}
	return out, nil
}

// maxCatchUp is how many entries of the current generation one append
// reads into this process's filter of it, at most: a process that starts
// in the middle of a generation, or rarely appends beside another, catches
// up over several appends, and probes the database for every id until it
// has.
const maxCatchUp = 1 << 16

// current returns the filter of the current generation of a log of size
// entries, or nil when this process keeps none or it is behind the log
// (the database is then probed for every id). Called under the sequencer
// lock: it reads in tx the entries appended since the filter was last
// brought up to date, at most maxCatchUp of them. When the log has moved
// on to a new generation, the filter of the one it closed becomes that
// generation's until the stored one is read: it holds the same ids.
func (f *generationFilters) current(ctx context.Context, tx pgx.Tx, size int64) (*idfilter.Filter, error) {
	if !f.keepCurrent {
		return nil, nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	gen := generationOf(size)
	if f.cur != nil && f.curGen != gen {
		if f.curGen < gen && f.curUpTo >= (f.curGen+1)<<generationBits && f.filters[f.curGen] == nil {
			if f.filters == nil {
				f.filters, f.kept = map[int64]*idfilter.Filter{}, map[int64]bool{}
			}
			f.filters[f.curGen] = f.cur
			f.kept[f.curGen] = true
		}
		f.cur = nil
	}
	if f.cur != nil && size < f.curUpTo {
		f.cur = nil // the log is shorter than the filter knew: start again
	}
	if f.cur == nil {
		f.cur, f.curGen, f.curUpTo = idfilter.New(1<<generationBits), gen, gen<<generationBits
	}
	if f.curUpTo < size {
		to := min(size, f.curUpTo+maxCatchUp)
		rows, err := tx.Query(ctx, sqlGenerationIDs, f.curUpTo, to)
		if err != nil {
			return nil, fmt.Errorf("audit: read the current generation's event ids: %w", err)
		}
		var submitter, eventID string
		if _, err := pgx.ForEachRow(rows, []any{&submitter, &eventID}, func() error {
			f.cur.Add(idfilter.KeyOf(submitter, eventID))
			return nil
		}); err != nil {
			return nil, fmt.Errorf("audit: read the current generation's event ids: %w", err)
		}
		f.curUpTo = to
	}
	if f.curUpTo < size {
		return nil, nil
	}
	return f.cur, nil
}

// closedStack is the filters of closed generations a process holds, as
// one stack: the stack's filter i is generation gens[i]'s, in ascending
// order of generation.
type closedStack struct {
	stack *idfilter.Stack
	gens  []int64
}

// closedFilters returns the filters of closed generations this process
// holds, read from the table or kept while current, stacked. They no
// longer change, so they may be asked outside the sequencer lock. While
// another caller stacks a generation's filter that just arrived, it
// returns the stack without it: that generation is then left to the
// transaction, as one that closed after the precheck is.
func (f *generationFilters) closedFilters() (closedStack, error) {
	f.mu.Lock()
	old := closedStack{f.stack, f.stacked}
	if f.stacking || len(f.stacked) == len(f.filters) {
		f.mu.Unlock()
		return old, nil
	}
	f.stacking = true
	gens := slices.Sorted(maps.Keys(f.filters))
	fs := make([]*idfilter.Filter, len(gens))
	for i, g := range gens {
		fs[i] = f.filters[g]
	}
	f.mu.Unlock()

	stack, err := idfilter.NewStack(fs) // a copy: a few ms a generation

	f.mu.Lock()
	defer f.mu.Unlock()
	f.stacking = false
	if err != nil {
		return closedStack{}, fmt.Errorf("audit: stack the event-id filters: %w", err)
	}
	for i, g := range gens {
		f.filters[g] = stack.Filter(i) // one copy in memory, the stack's
	}
	f.stack, f.stacked = stack, gens
	return closedStack{stack, gens}, nil
}

// keptFilter returns the filter this process kept of closed generation g
// while it was current, or nil. It holds every id of g's entries, and
// perhaps others, and no longer changes.
func (f *generationFilters) keptFilter(g int64) *idfilter.Filter {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.kept[g] {
		return nil
	}
	return f.filters[g]
}

// appending adds keys, about to be appended in generation gen's filter
// if this process keeps it, before the transaction commits: should it
// not, they are only false maybes.
func (f *generationFilters) appending(gen int64, keys []idfilter.Key) {
	if !f.keepCurrent {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cur == nil || f.curGen != gen {
		return
	}
	for _, k := range keys {
		f.cur.Add(k)
	}
}

// committed records that entries [from, to), whose keys appending added,
// are committed: the current generation's filter now holds every id below
// to, if it held every id below from.
func (f *generationFilters) committed(from, to int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cur != nil && f.curGen == generationOf(from) && f.curUpTo == from {
		f.curUpTo = to
	}
}

// probes returns the (event id, submitter, generation) triples the
// duplicate check looks up for the distinct ids, whose filter keys are
// keys: each in the current generation unless its filter cur rules it
// out, and in every closed generation that the id's precheck, pre[i],
// did not cover and whose filter is missing or answers maybe. A nil cur
// rules nothing out.
func (f *generationFilters) probes(ids []idKey, keys []idfilter.Key, pre []*precheck, current int64, cur *idfilter.Filter, closed []*idfilter.Filter) (eventIDs, submitters []string, generations []int64) {
	var inCurrent, inClosed int64
	for i, k := range ids {
		if cur == nil || cur.MayContain(keys[i]) {
			eventIDs, submitters, generations = append(eventIDs, k.eventID), append(submitters, k.submitter), append(generations, current)
			inCurrent++
		}
		for g, fl := range closed {
			if pre[i].checked(int64(g)) {
				continue
			}
			if fl == nil || fl.MayContain(keys[i]) {
				eventIDs, submitters, generations = append(eventIDs, k.eventID), append(submitters, k.submitter), append(generations, int64(g))
				inClosed++
			}
		}
	}
	if f.onProbes != nil {
		f.onProbes(inCurrent, inClosed)
	}
	return eventIDs, submitters, generations
}

// storeFilters stores the filters of the closed generations of a log of
// size entries that have none built with their last leaf, in order, at
// most max of them: the one this process kept of a generation while it
// was current, else one built from the generation's entries. It returns
// how many it stored. Finding them costs two primary-key reads a closed
// generation (its last leaf, and a filter built with it).
func (s *store) storeFilters(ctx context.Context, size int64, max int) (int, error) {
	rows, err := s.pool.Query(ctx, sqlFiltersToStore, generationOf(size), max)
	if err != nil {
		return 0, fmt.Errorf("audit: generations without an event-id filter: %w", err)
	}
	missing, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return 0, fmt.Errorf("audit: generations without an event-id filter: %w", err)
	}
	stored := 0
	for _, g := range missing {
		f := s.filters.keptFilter(g)
		if f == nil {
			f = idfilter.New(1 << generationBits)
			rows, err := s.pool.Query(ctx, sqlGenerationIDs, g<<generationBits, (g+1)<<generationBits)
			if err != nil {
				return stored, fmt.Errorf("audit: read generation %d's event ids: %w", g, err)
			}
			var submitter, eventID string
			if _, err := pgx.ForEachRow(rows, []any{&submitter, &eventID}, func() error {
				f.Add(idfilter.KeyOf(submitter, eventID))
				return nil
			}); err != nil {
				return stored, fmt.Errorf("audit: read generation %d's event ids: %w", g, err)
			}
		}
		b, _ := f.MarshalBinary()
		if _, err := s.pool.Exec(ctx, sqlStoreFilter, g, b, (g+1)<<generationBits-1); err != nil {
			return stored, fmt.Errorf("audit: store generation %d's event-id filter: %w", g, err)
		}
		stored++
	}
	return stored, nil
}

// storeFilters stores the event-id filter of every closed generation
// every interval until ctx ends, so that the duplicate check asks the
// database about closed generations only for the rare ids their filters
// cannot rule out. It catches up, a few generations a round, on a log
// that grew before the table existed.
func (l *Log) storeFilters(ctx context.Context, interval time.Duration, log *slog.Logger) {
	job.Every(ctx, interval, func() {
		var size int64
		if err := l.store.pool.QueryRow(ctx, sqlTreeSize).Scan(&size); err != nil {
			return
		}
		if _, err := l.store.storeFilters(ctx, size, 4); err != nil && ctx.Err() == nil {
			log.Warn("storing an event-id filter failed; the duplicate check probes the generation meanwhile", "err", err)
		}
	})
}

package audit

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mediatorhq/mediator/idfilter"
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
	// sqlNextFilter is the first generation without a stored filter:
	// filters are built in order.
	sqlNextFilter = "SELECT coalesce(max(generation) + 1, 0) FROM audit_event_filters"
	// sqlGenerationIDs reads the event ids of a generation's entries, a
	// range of the primary key.
	sqlGenerationIDs = "SELECT submitter, event_id FROM audit_entries WHERE seq >= $1 AND seq < $2 AND event_id IS NOT NULL"
	// sqlStoreFilter stores generation $1's filter $2 once, with the hash
	// of its last leaf, entry $3.
	sqlStoreFilter = `INSERT INTO audit_event_filters (generation, filter, last_leaf)
		SELECT $1, $2, sha256(leaf) FROM audit_entries WHERE seq = $3
		ON CONFLICT (generation) DO NOTHING`
)

// generationFilters are the filters of the log's closed generations that
// this process has read from audit_event_filters. A closed generation
// whose filter is not stored yet is probed in the database for every
// event id. Safe for concurrent use; the sequencer lock orders its
// callers anyway.
type generationFilters struct {
	mu      sync.Mutex
	filters map[int64]*idfilter.Filter
	looked  time.Time // when the table was last read for missing filters

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
			if f.filters == nil {
				f.filters = map[int64]*idfilter.Filter{}
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

// probes returns the (event id, submitter, generation) triples the
// duplicate check looks up for the distinct keys ids: each in the current
// generation, and in every closed generation whose filter is missing or
// answers maybe.
func (f *generationFilters) probes(ids []idKey, current int64, closed []*idfilter.Filter) (eventIDs, submitters []string, generations []int64) {
	n := len(ids)
	eventIDs, submitters, generations = make([]string, 0, n), make([]string, 0, n), make([]int64, 0, n)
	var inClosed int64
	for _, k := range ids {
		eventIDs, submitters, generations = append(eventIDs, k.eventID), append(submitters, k.submitter), append(generations, current)
		if len(closed) == 0 {
			continue
		}
		key := idfilter.KeyOf(k.submitter, k.eventID)
		for g, fl := range closed {
			if fl == nil || fl.MayContain(key) {
				eventIDs, submitters, generations = append(eventIDs, k.eventID), append(submitters, k.submitter), append(generations, int64(g))
				inClosed++
			}
		}
	}
	if f.onProbes != nil {
		f.onProbes(int64(n), inClosed)
	}
	return eventIDs, submitters, generations
}

// storeFilters builds and stores the filters of the closed generations of
// a log of size entries that have none, in order, at most max of them.
// It returns how many it stored.
func (s *store) storeFilters(ctx context.Context, size int64, max int) (int, error) {
	var next int64
	if err := s.pool.QueryRow(ctx, sqlNextFilter).Scan(&next); err != nil {
		return 0, fmt.Errorf("audit: next event-id filter: %w", err)
	}
	stored := 0
	for g := next; g < generationOf(size) && stored < max; g++ {
		f := idfilter.New(1 << generationBits)
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
	every(ctx, interval, func() {
		var size int64
		if err := l.store.pool.QueryRow(ctx, sqlTreeSize).Scan(&size); err != nil {
			return
		}
		if _, err := l.store.storeFilters(ctx, size, 4); err != nil && ctx.Err() == nil {
			log.Warn("storing an event-id filter failed; the duplicate check probes the generation meanwhile", "err", err)
		}
	})
}

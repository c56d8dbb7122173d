package audit

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countClosedProbes counts, from now on, the event ids s's appends look up
// in closed generations.
func countClosedProbes(s *store) *atomic.Int64 {
	var n atomic.Int64
	s.filters.onProbes = func(_, closed int64) { n.Add(closed) }
	return &n
}

// fillGeneration writes entries [from, to) straight into audit_entries,
// without event ids or conversations and with zero stored hashes of the
// right count: enough to close a generation quickly. The tree they make
// is not checked.
func (f *fixture) fillGeneration(t *testing.T, from, to int64) {
	t.Helper()
	f.exec(t, `INSERT INTO audit_entries (seq, leaf, hashes, kind, ingested_at)
		SELECT g, convert_to('filler ' || g, 'UTF8'),
			decode(repeat('00', 32 * (1 + 64 - length(ltrim(reverse(g::bit(64)::text), '1')))), 'hex'),
			'filler', now()
		FROM generate_series($1::bigint, $2::bigint - 1) g`, from, to)
}

// TestDuplicatesAcrossGenerations: an event id logged in a closed
// generation is found again whether or not that generation's filter is
// stored, a conflicting record under it is refused, new ids touch closed
// generations in the database only for the filter's rare maybes, and a
// filter built from other entries than the table now holds is not used.
func TestDuplicatesAcrossGenerations(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a generation of the log")
	}
	// The SQL names the generation as the migration's index does; it
	// cannot name the Go constant.
	for _, q := range []string{sqlLoggedEventIDs, sqlReadFilters} {
		if !strings.Contains(q, fmt.Sprintf(">> %d", generationBits)) && !strings.Contains(q, fmt.Sprintf("<< %d", generationBits)) {
			t.Fatalf("query does not use generations of 2^%d entries: %s", generationBits, q)
		}
	}
	f := newFixture(t)
	ctx := context.Background()
	clock := time.Now()
	f.store.now = func() time.Time { return clock }
	f.append(t, entries(0, 100, "c"))
	const size = 1<<generationBits + 10
	f.fillGeneration(t, 100, size)

	again := func(name string, s *store) {
		t.Helper()
		clock = clock.Add(2 * filterLookInterval)
		out, err := s.appendNow(ctx, entries(0, 100, "c"))
		if err != nil {
			t.Fatal(err)
		}
		for i, a := range out {
			if !a.Duplicate || a.Seq != int64(i) {
				t.Fatalf("%s: entry %d logged in generation 0 came back as %+v, want a duplicate of seq %d", name, i, a, i)
			}
		}
	}
	probed := countClosedProbes(f.store)

	// No filter stored yet: generation 0 is probed for every id.
	again("without a filter", f.store)
	if got := probed.Load(); got != 100 {
		t.Fatalf("without a filter, %d probes of generation 0, want 100", got)
	}

	// The job stores generation 0's filter; the ids logged there are
	// maybes, and still found.
	if n, err := f.store.storeFilters(ctx, size, 4); err != nil || n != 1 {
		t.Fatalf("storeFilters: %d %v, want 1 filter", n, err)
	}
	if n, err := f.store.storeFilters(ctx, size, 4); err != nil || n != 0 {
		t.Fatalf("storeFilters again: %d %v, want none", n, err)
	}
	again("with the filter", f.store)

	// New ids: appended, and generation 0 is asked about almost none.
	before := probed.Load()
	clock = clock.Add(2 * filterLookInterval)
	out := f.append(t, entries(5000, 2000, "c"))
	for i, a := range out {
		if a.Duplicate || a.Conflict || a.Seq != size+int64(i) {
			t.Fatalf("new entry %d: %+v, want seq %d", i, a, size+int64(i))
		}
	}
	if n := probed.Load() - before; n > 20 {
		t.Fatalf("2,000 new ids sent %d probes to the closed generation, want its filter to rule out nearly all", n)
	}

	// Another record under an id logged in generation 0 is a conflict.
	conflicting := entries(7, 1, "c")
	conflicting[0].Record = rec{Kind: "message", EventID: "ev-7", Note: "another record"}
	clock = clock.Add(2 * filterLookInterval)
	if out := f.append(t, conflicting); !out[0].Conflict {
		t.Fatalf("another record under ev-7: %+v, want a conflict", out[0])
	}

	// A second process (its own appender) reads the stored filter.
	second := newStore(f.pool)
	second.now = f.store.now
	secondProbed := countClosedProbes(second)
	again("a second process", second)
	if got := secondProbed.Load(); got != 100 {
		t.Fatalf("second process: %d probes of generation 0, want 100 (the filter's maybes)", got)
	}

	// A filter whose generation's last leaf is not the one it was built
	// with (a restore brought back other entries) is ignored: every id
	// is probed again, and found.
	f.exec(t, "ALTER TABLE audit_event_filters DISABLE TRIGGER audit_event_filters_append_only")
	f.exec(t, "UPDATE audit_event_filters SET last_leaf = sha256('another leaf') WHERE generation = 0")
	f.exec(t, "ALTER TABLE audit_event_filters ENABLE TRIGGER audit_event_filters_append_only")
	third := newStore(f.pool)
	third.now = f.store.now
	thirdProbed := countClosedProbes(third)
	clock = clock.Add(2 * filterLookInterval)
	if _, err := third.appendNow(ctx, entries(9000, 100, "c")); err != nil {
		t.Fatal(err)
	}
	if n := thirdProbed.Load(); n != 100 {
		t.Fatalf("with a stale filter, %d probes of generation 0 for 100 new ids, want 100", n)
	}
	again("with a stale filter", third)
}

package audit

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mediatorhq/mediator/idfilter"
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

// closedGenerationSize is the log's size in closedGeneration's fixture.
const closedGenerationSize = 1<<generationBits + 10

// closedGeneration returns a fixture whose log holds entries ev-0…ev-99
// of conversation "c" at seqs 0–99 and filler up to closedGenerationSize,
// so that generation 0 is closed, and a function that moves the store's
// clock past filterLookInterval, so that its next append reads the stored
// filters again.
func closedGeneration(t *testing.T) (*fixture, func()) {
	t.Helper()
	f := newFixture(t)
	clock := time.Now()
	f.store.now = func() time.Time { return clock }
	f.append(t, entries(0, 100, "c"))
	f.fillGeneration(t, 100, closedGenerationSize)
	return f, func() { clock = clock.Add(2 * filterLookInterval) }
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
	for _, q := range []string{sqlLoggedEventIDs, sqlReadFilters, sqlFiltersToStore} {
		if !strings.Contains(q, fmt.Sprintf(">> %d", generationBits)) && !strings.Contains(q, fmt.Sprintf("<< %d", generationBits)) {
			t.Fatalf("query does not use generations of 2^%d entries: %s", generationBits, q)
		}
	}
	f, later := closedGeneration(t)
	ctx := context.Background()
	const size = closedGenerationSize

	again := func(name string, s *store) {
		t.Helper()
		later()
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
	// another is a process started now, with its own filters, and the
	// count of the ids it looks up in closed generations.
	another := func() (*store, *atomic.Int64) {
		s := newStore(f.pool)
		s.now = f.store.now
		return s, countClosedProbes(s)
	}
	// forge changes audit_event_filters as its owner can, past the
	// append-only trigger.
	forge := func(update string) {
		f.exec(t, "ALTER TABLE audit_event_filters DISABLE TRIGGER audit_event_filters_append_only")
		f.exec(t, update)
		f.exec(t, "ALTER TABLE audit_event_filters ENABLE TRIGGER audit_event_filters_append_only")
	}

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
	later()
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
	later()
	if out := f.append(t, conflicting); !out[0].Conflict {
		t.Fatalf("another record under ev-7: %+v, want a conflict", out[0])
	}

	// A second process (its own appender) reads the stored filter.
	second, secondProbed := another()
	again("a second process", second)
	if got := secondProbed.Load(); got != 100 {
		t.Fatalf("second process: %d probes of generation 0, want 100 (the filter's maybes)", got)
	}

	// A filter whose generation's last leaf is not the one it was built
	// with (a restore brought back other entries) is ignored: every id
	// is probed again, and found.
	forge("UPDATE audit_event_filters SET last_leaf = sha256('another leaf') WHERE generation = 0")
	third, thirdProbed := another()
	later()
	if _, err := third.appendNow(ctx, entries(9000, 100, "c")); err != nil {
		t.Fatal(err)
	}
	if n := thirdProbed.Load(); n != 100 {
		t.Fatalf("with a stale filter, %d probes of generation 0 for 100 new ids, want 100", n)
	}
	again("with a stale filter", third)

	// The filter job, even of the process that stored the first filter
	// and ran all along, stores a new one beside the stale one, and a
	// process started after it asks generation 0 only about its maybes
	// again.
	if n, err := f.store.storeFilters(ctx, size, 4); err != nil || n != 1 {
		t.Fatalf("storeFilters after the restore: %d %v, want 1 filter built again", n, err)
	}
	if n, err := f.store.storeFilters(ctx, size, 4); err != nil || n != 0 {
		t.Fatalf("storeFilters again after the restore: %d %v, want none", n, err)
	}
	var rows int
	if err := f.pool.QueryRow(ctx, "SELECT count(*) FROM audit_event_filters WHERE generation = 0").Scan(&rows); err != nil || rows != 2 {
		t.Fatalf("generation 0 has %d stored filters (%v), want the stale one and the new one", rows, err)
	}
	fourth, fourthProbed := another()
	later()
	if _, err := fourth.appendNow(ctx, entries(9100, 2000, "c")); err != nil {
		t.Fatal(err)
	}
	if n := fourthProbed.Load(); n > 20 {
		t.Fatalf("with the filter built again, 2,000 new ids sent %d probes to generation 0, want its filter to rule out nearly all", n)
	}
	again("with the filter built again", fourth)

	// A filter of another size, written by someone who can write the
	// table, would answer for other blocks and let duplicates through:
	// an append refuses to use it, and appends nothing.
	forge(`UPDATE audit_event_filters SET filter = substr(filter, 1, 1 + 64*16)
		WHERE generation = 0 AND last_leaf = (SELECT sha256(leaf) FROM audit_entries WHERE seq = (1 << 20) - 1)`)
	var entriesBefore int64
	if err := f.pool.QueryRow(ctx, "SELECT count(*) FROM audit_entries").Scan(&entriesBefore); err != nil {
		t.Fatal(err)
	}
	fifth, _ := another()
	later()
	if _, err := fifth.appendNow(ctx, entries(12000, 10, "c")); err == nil || !strings.Contains(err.Error(), "event-id filter of generation 0: 1024 bytes, want") {
		t.Fatalf("append with a filter of another size: %v, want it refused", err)
	}
	var after int64
	if err := f.pool.QueryRow(ctx, "SELECT count(*) FROM audit_entries").Scan(&after); err != nil || after != entriesBefore {
		t.Fatalf("%d entries after the refused append, %d before (%v)", after, entriesBefore, err)
	}
}

// countProbes counts, from now on, the event ids s's appends look up in
// the database: in the current generation and in closed ones.
func countProbes(s *store) (current, closed *atomic.Int64) {
	current, closed = new(atomic.Int64), new(atomic.Int64)
	s.filters.onProbes = func(cur, cl int64) { current.Add(cur); closed.Add(cl) }
	return current, closed
}

// wantDuplicates fails unless every entry of out is a duplicate of the
// entry at seq from+i.
func wantDuplicates(t *testing.T, name string, out []Appended, from int64) {
	t.Helper()
	for i, a := range out {
		if !a.Duplicate || a.Seq != from+int64(i) {
			t.Fatalf("%s: entry %d came back as %+v, want a duplicate of seq %d", name, i, a, from+int64(i))
		}
	}
}

// TestCurrentGenerationFilter: a process that appends through the log
// asks the database about the current generation only for the ids its own
// filter of it cannot rule out, and still finds every id logged there:
// by itself, by another process, and at seqs where an append of its own
// rolled back and another process's committed.
func TestCurrentGenerationFilter(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	current, _ := countProbes(f.store)

	f.append(t, entries(0, 100, "c"))
	probes := current.Load()
	wantDuplicates(t, "the same ids again", f.append(t, entries(0, 100, "c")), 0)
	if n := current.Load() - probes; n != 100 {
		t.Fatalf("100 logged ids sent %d probes to the current generation, want 100 (all maybes)", n)
	}

	probes = current.Load()
	for i, a := range f.append(t, entries(1000, 1000, "c")) {
		if a.Duplicate || a.Seq != 100+int64(i) {
			t.Fatalf("new entry %d: %+v, want seq %d", i, a, 100+i)
		}
	}
	if n := current.Load() - probes; n > 10 {
		t.Fatalf("1,000 new ids sent %d probes to the current generation, want its filter to rule out nearly all", n)
	}

	// Another process appends; this one reads its entries before it
	// trusts its filter again.
	second := newStore(f.pool)
	if _, err := second.appendNow(ctx, entries(5000, 100, "c")); err != nil {
		t.Fatal(err)
	}
	wantDuplicates(t, "another process's ids", f.append(t, entries(5000, 100, "c")), 1100)

	// This process's append rolls back after its ids went into the
	// filter; another process's commits at the same seqs. The filter
	// must not take the seqs as its own.
	tx, err := f.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := f.store.AppendTx(ctx, tx, entries(8000, 50, "c")); err != nil || out[0].Seq != 1200 {
		t.Fatalf("AppendTx: %+v %v, want seq 1200", out, err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := second.appendNow(ctx, entries(9000, 50, "c")); err != nil {
		t.Fatal(err)
	}
	wantDuplicates(t, "ids logged where an append rolled back", f.append(t, entries(9000, 50, "c")), 1200)
	if out := f.append(t, entries(8000, 50, "c")); out[0].Duplicate || out[0].Seq != 1250 {
		t.Fatalf("ids of the rolled-back append: %+v, want new at seq 1250", out[0])
	}
}

// TestClosedGenerationKeepsItsFilter: when the log moves on to a new
// generation, the filter this process kept of the closed one serves
// until the stored one is read: the closed generation is asked about new
// ids almost never, and its ids are found.
func TestClosedGenerationKeepsItsFilter(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a generation of the log")
	}
	f := newFixture(t)
	ctx := context.Background()
	const end = 1 << generationBits
	f.append(t, entries(0, 10, "c"))
	f.fillGeneration(t, 10, end-50)
	// The filter catches up, maxCatchUp entries an append; meanwhile the
	// current generation is probed for every id.
	current, closed := countProbes(f.store)
	for i := 0; ; i++ {
		before := current.Load()
		f.append(t, entries(100+i, 1, "c"))
		if current.Load() == before {
			break // the filter ruled the id out: it is caught up
		}
		if i > end/maxCatchUp+1 {
			t.Fatalf("the filter did not catch up in %d appends", i)
		}
	}
	// An append that rolls back leaves its id in the kept filter, as a
	// false maybe: what marks the stored filter below as the kept one.
	tx, err := f.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rolledBack := entries(40000, 1, "c")
	if _, err := f.store.AppendTx(ctx, tx, rolledBack); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	size, err := f.store.Size(ctx)
	if err != nil {
		t.Fatal(err)
	}
	crossing := entries(20000, 100, "c") // across the generations' border
	for i, a := range f.append(t, crossing) {
		if a.Seq != size+int64(i) {
			t.Fatalf("entry %d: %+v, want seq %d", i, a, size+int64(i))
		}
	}
	if size+100 <= end {
		t.Fatalf("the log's size %d did not cross into generation 1", size+100)
	}

	closedBefore := closed.Load()
	f.append(t, entries(30000, 2000, "c"))
	if n := closed.Load() - closedBefore; n > 20 {
		t.Fatalf("2,000 new ids sent %d probes to generation 0 with no filter stored, want the kept filter to rule out nearly all", n)
	}
	wantDuplicates(t, "ids logged at the end of generation 0", f.append(t, crossing[:40]), size)
	wantDuplicates(t, "ids logged at the start of generation 1", f.append(t, crossing[60:]), size+60)
	wantDuplicates(t, "ids logged early in generation 0", f.append(t, entries(0, 10, "c")), 0)

	// The filter job stores the kept filter rather than reading the
	// generation again; another process uses it.
	if n, err := f.store.storeFilters(ctx, end+3000, 4); err != nil || n != 1 {
		t.Fatalf("storeFilters: %d %v, want 1 filter", n, err)
	}
	var b []byte
	if err := f.pool.QueryRow(ctx, "SELECT filter FROM audit_event_filters WHERE generation = 0").Scan(&b); err != nil {
		t.Fatal(err)
	}
	stored, err := idfilter.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if !stored.MayContain(idfilter.KeyOf("", rolledBack[0].EventID)) {
		t.Fatal("the stored filter of generation 0 was built again from its entries, not kept")
	}
	second := newStore(f.pool)
	_, secondClosed := countProbes(second)
	out, err := second.appendNow(ctx, crossing[:40])
	if err != nil {
		t.Fatal(err)
	}
	wantDuplicates(t, "a second process with the stored filter", out, size)
	if n := secondClosed.Load(); n != 40 {
		t.Fatalf("a second process sent %d probes to generation 0 for 40 ids logged there, want 40 (the filter's maybes)", n)
	}
}

// TestClosedFiltersStacked: the closed generations' filters a process
// holds, with gaps between them, come back as one stack that names each
// filter's generation, is made again when another generation's filter
// arrives, and whose maybes name the generations that hold an id, and the
// ones the filters cannot rule out, no others.
func TestClosedFiltersStacked(t *testing.T) {
	const n = 1 << generationBits
	filled := func(g int64) *idfilter.Filter {
		fl := idfilter.New(n)
		for i := range 1000 {
			fl.Add(idfilter.KeyOf("", fmt.Sprintf("g%d-%d", g, i)))
		}
		return fl
	}
	none, err := (&generationFilters{}).closedFilters()
	if err != nil || none.stack.Len() != 0 || none.covered() != nil {
		t.Fatalf("a process without filters: %+v, %v; want nothing", none, err)
	}
	if eventIDs, _, _ := none.maybes(entries(0, 10, "c"), filterKeys(entries(0, 10, "c"))); len(eventIDs) != 0 {
		t.Fatalf("a process without filters asks %d ids of closed generations", len(eventIDs))
	}
	f := &generationFilters{filters: map[int64]*idfilter.Filter{5: filled(5), 0: filled(0), 2: filled(2)}}
	closed, err := f.closedFilters()
	if err != nil || !slices.Equal(closed.gens, []int64{0, 2, 5}) {
		t.Fatalf("stacked generations %v, %v; want 0, 2, 5", closed.gens, err)
	}
	f.filters[3] = filled(3)
	closed, err = f.closedFilters()
	if err != nil || !slices.Equal(closed.gens, []int64{0, 2, 3, 5}) || closed.stack.Len() != 4 {
		t.Fatalf("after generation 3's filter arrived: %v, %v; want 0, 2, 3, 5", closed.gens, err)
	}
	if got := closed.covered(); !slices.Equal(got, []bool{true, false, true, true, false, true}) {
		t.Fatalf("covered %v, want generations 0, 2, 3 and 5", got)
	}
	// While another caller stacks a filter that just arrived, the stack
	// without it comes back at once, and its generation is not covered.
	f.filters[7] = filled(7)
	f.stacking = true
	if during, err := f.closedFilters(); err != nil || !slices.Equal(during.gens, []int64{0, 2, 3, 5}) || during.stack != closed.stack {
		t.Fatalf("while another caller stacks: %v, %v; want the stack of 0, 2, 3, 5", during.gens, err)
	}
	f.stacking = false
	if with7, err := f.closedFilters(); err != nil || !slices.Equal(with7.gens, []int64{0, 2, 3, 5, 7}) {
		t.Fatalf("once stacked: %v, %v; want 0, 2, 3, 5, 7", with7.gens, err)
	}
	delete(f.filters, 7) // the maybes below are of the stack of 0, 2, 3, 5
	var es []Entry
	for _, g := range []int64{0, 2, 3, 5, 9} { // 9: none holds them
		for i := range 1000 {
			es = append(es, Entry{EventID: fmt.Sprintf("g%d-%d", g, i), Record: rec{Kind: "message"}})
		}
	}
	es = append(es, es[0]) // an id twice in one append is asked once
	eventIDs, _, gens := closed.maybes(es, filterKeys(es))
	found := map[string]int64{}
	for i, id := range eventIDs {
		var g int64
		fmt.Sscanf(id, "g%d-", &g)
		if g == gens[i] {
			found[id] = g
		} else if !f.filters[gens[i]].MayContain(idfilter.KeyOf("", id)) {
			t.Fatalf("%s asked of generation %d, whose filter rules it out", id, gens[i])
		}
	}
	if len(found) != 4000 || len(eventIDs) > 4000+50 {
		t.Fatalf("%d ids asked of the generation that holds them, want 4,000; %d asked in all", len(found), len(eventIDs))
	}
}

// TestPrecheckTakesClosedGenerationsOffTheLock: the ids of an append are
// looked up in the closed generations whose filters the process holds
// before the append queues for the sequencer lock, and the transaction
// then asks no generation the precheck covered, so the work under the
// lock does not grow with the number of generations. A generation the
// precheck did not cover (closed since, or without a filter then) is
// still asked under the lock.
func TestPrecheckTakesClosedGenerationsOffTheLock(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a generation of the log")
	}
	f, later := closedGeneration(t)
	ctx := context.Background()
	const size = closedGenerationSize

	// Before the process holds generation 0's filter, the precheck
	// covers nothing and the transaction asks generation 0 for every id.
	pre, err := f.store.precheck(ctx, entries(0, 100, "c"))
	if err != nil || len(pre.covered) != 0 || len(pre.found) != 0 {
		t.Fatalf("precheck without filters: %+v, %v; want nothing covered or found", pre, err)
	}
	if _, err := f.store.storeFilters(ctx, size, 4); err != nil {
		t.Fatal(err)
	}
	later()
	wantDuplicates(t, "the transaction's own check", f.append(t, entries(0, 100, "c")), 0)

	// Now it holds the filter: the precheck finds the 100 ids in
	// generation 0, outside any transaction.
	pre, err = f.store.precheck(ctx, entries(0, 100, "c"))
	if err != nil || !pre.checked(0) || len(pre.found) != 100 {
		t.Fatalf("precheck with generation 0's filter: %d found, covered %v, %v; want all 100 in generation 0", len(pre.found), pre.covered, err)
	}
	for i := range 100 {
		if l := pre.found[idKey{"", fmt.Sprintf("ev-%d", i)}]; l.seq != int64(i) {
			t.Fatalf("precheck found ev-%d at seq %d, want %d", i, l.seq, i)
		}
	}

	// Under the lock, the covered generation is not asked again; without
	// the precheck, it would be, for each of the filter's maybes.
	ids := make([]idKey, 100)
	pres := make([]*precheck, 100)
	for i := range ids {
		ids[i], pres[i] = idKey{"", fmt.Sprintf("ev-%d", i)}, pre
	}
	stacked, err := f.store.filters.closedFilters()
	if err != nil || !slices.Equal(stacked.gens, []int64{0}) {
		t.Fatalf("closed filters of generations %v, %v; want generation 0's", stacked.gens, err)
	}
	closed := []*idfilter.Filter{stacked.stack.Filter(0)}
	if _, _, gens := f.store.filters.probes(ids, pre.keys, pres, 1, nil, closed); slices.Contains(gens, 0) {
		t.Fatalf("the transaction asks generation 0 again after the precheck covered it: %v", gens)
	}
	if _, _, gens := f.store.filters.probes(ids, pre.keys, make([]*precheck, 100), 1, nil, closed); len(gens) != 200 {
		t.Fatalf("without a precheck the transaction asks %d (id, generation) pairs, want 200", len(gens))
	}

	// Through the precheck, duplicates and a conflict in generation 0
	// are still recognised, and new ids appended.
	wantDuplicates(t, "through the precheck", f.append(t, entries(0, 100, "c")), 0)
	conflicting := entries(7, 1, "c")
	conflicting[0].Record = rec{Kind: "message", EventID: "ev-7", Note: "another record"}
	if out := f.append(t, conflicting); !out[0].Conflict {
		t.Fatalf("another record under ev-7: %+v, want a conflict", out[0])
	}
	if out := f.append(t, entries(5000, 10, "c")); out[0].Duplicate || out[0].Seq != size {
		t.Fatalf("a new id: %+v, want seq %d", out[0], size)
	}
}

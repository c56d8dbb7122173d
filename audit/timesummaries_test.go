package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// timedEntries returns n entries, from on, that occurred one second apart
// in seq order, as a gateway's events mostly do.
func timedEntries(from, n int) []Entry {
	base := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	out := make([]Entry, n)
	for i := range out {
		id := fmt.Sprintf("timed-%d", from+i)
		at := base.Add(time.Duration(from+i) * time.Second)
		out[i] = Entry{Kind: "message", EventID: id, ConversationID: "t", OccurredAt: at,
			Record: rec{Kind: "message", EventID: id, ConversationID: "t", OccurredAt: at.Format(time.RFC3339), Note: "n" + id}}
	}
	return out
}

// timeSearchBlocks returns the heap blocks a search by time from since
// reads through the time index, and the table's size in blocks.
func timeSearchBlocks(t *testing.T, f *fixture, since time.Time) (read, table int64) {
	t.Helper()
	ctx := context.Background()
	conn, err := f.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	// The time index is the one way to this search, as it is for a
	// dashboard's search by time over a large log.
	if _, err := conn.Exec(ctx, "SET enable_seqscan = off"); err != nil {
		t.Fatal(err)
	}
	defer conn.Exec(ctx, "RESET enable_seqscan")
	var plan []byte
	if err := conn.QueryRow(ctx, "EXPLAIN (ANALYZE, FORMAT JSON) SELECT count(*) FROM audit_entries WHERE occurred_at >= $1", since).Scan(&plan); err != nil {
		t.Fatal(err)
	}
	var found bool
	var walk func(n map[string]any)
	walk = func(n map[string]any) {
		if n["Node Type"] == "Bitmap Heap Scan" {
			found = true
			exact, _ := n["Exact Heap Blocks"].(float64)
			lossy, _ := n["Lossy Heap Blocks"].(float64)
			read += int64(exact + lossy)
		}
		kids, _ := n["Plans"].([]any)
		for _, k := range kids {
			walk(k.(map[string]any))
		}
	}
	var doc []map[string]any
	if err := json.Unmarshal(plan, &doc); err != nil || len(doc) != 1 {
		t.Fatalf("plan %s: %v", plan, err)
	}
	top, _ := doc[0]["Plan"].(map[string]any)
	walk(top)
	if !found {
		t.Fatalf("the search by time does not use the time index: %s", plan)
	}
	if err := conn.QueryRow(ctx, "SELECT pg_relation_size('audit_entries') / current_setting('block_size')::bigint").Scan(&table); err != nil {
		t.Fatal(err)
	}
	return read, table
}

// TestTimeIndexSummarized: PostgreSQL summarises a range of the BRIN time
// index only when asked, so with autovacuum off a search by time read the
// whole table. After the service's summarising, a search for the last
// minutes reads the last ranges only.
func TestTimeIndexSummarized(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	const n = 20000
	for from := 0; from < n; from += 5000 {
		f.append(t, timedEntries(from, 5000))
	}
	since := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC).Add((n - 100) * time.Second)
	read, table := timeSearchBlocks(t, f, since)
	if table < 4*128 {
		t.Fatalf("the table holds %d blocks, fewer than four ranges: append more", table)
	}
	// All but the first range, which CREATE INDEX summarised while the
	// table was empty and every insert into it kept up.
	if read < table-128 {
		t.Fatalf("before summarising, the search read %d of %d blocks; want all but 128 (the test shows nothing)", read, table)
	}

	// At most max ranges a call, from where the last call left off.
	next, err := f.store.summarizeTimes(ctx, 0, 1)
	if err != nil || next != 1 {
		t.Fatalf("summarise one range: next %d, %v; want 1", next, err)
	}
	full := table / 128
	for next < full {
		before := next
		if next, err = f.store.summarizeTimes(ctx, next, 2); err != nil {
			t.Fatal(err)
		}
		if next <= before || next > before+2 {
			t.Fatalf("from range %d, at most two: next %d", before, next)
		}
	}
	if next, err = f.store.summarizeTimes(ctx, next, maxRangesPerCall); err != nil || next != full {
		t.Fatalf("nothing left to summarise: next %d, %v; want %d", next, err, full)
	}
	read, _ = timeSearchBlocks(t, f, since)
	// The last full range and the partial one after it, at most.
	if read > 2*128 {
		t.Fatalf("after summarising, the search read %d of %d blocks; want at most 256", read, table)
	}
}

// TestTimeSummariesGiveWayToVacuum: while a VACUUM or ANALYZE holds the
// table, the call does nothing and returns at once, so that it never
// makes autovacuum cancel itself nor waits behind it.
func TestTimeSummariesGiveWayToVacuum(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for from := 0; from < 20000; from += 5000 {
		f.append(t, timedEntries(from, 5000))
	}
	tx, err := f.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	// The lock VACUUM and ANALYZE take.
	if _, err := tx.Exec(ctx, "LOCK TABLE audit_entries IN SHARE UPDATE EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	// A call that waited for the lock would wait for this test: give it
	// seconds, not the test's timeout.
	wait, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	next, err := f.store.summarizeTimes(wait, 0, maxRangesPerCall)
	if err != nil || next != 0 {
		t.Fatalf("with the table held: next %d, %v; want 0 at once and no error", next, err)
	}
	tx.Rollback(ctx)
	if next, err = f.store.summarizeTimes(ctx, 0, maxRangesPerCall); err != nil || next < 4 {
		t.Fatalf("after the lock went: next %d, %v; want at least 4", next, err)
	}
}

// TestLeaderSummarizesTheTimeIndex: the log's leader keeps the time
// index summarised as entries arrive.
func TestLeaderSummarizesTheTimeIndex(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	l := f.openLog(t)
	const n = 20000
	for from := 0; from < n; from += 5000 {
		if _, err := l.Append(ctx, timedEntries(from, 5000)); err != nil {
			t.Fatal(err)
		}
	}
	since := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC).Add((n - 100) * time.Second)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		read, table := timeSearchBlocks(t, f, since)
		if read <= 2*128 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s the search by time still read %d of %d blocks", read, table)
		}
	}
}

// dirtiedByReading returns the shared buffers a read of the entries from
// to to-1 turns dirty: the pages of rows it is the first to read.
func dirtiedByReading(t *testing.T, f *fixture, from, to int64) int64 {
	t.Helper()
	var plan []byte
	if err := f.pool.QueryRow(context.Background(), "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT count(occurred_at) FROM audit_entries WHERE seq >= $1 AND seq < $2", from, to).Scan(&plan); err != nil {
		t.Fatal(err)
	}
	var doc []map[string]any
	if err := json.Unmarshal(plan, &doc); err != nil || len(doc) != 1 {
		t.Fatalf("plan %s: %v", plan, err)
	}
	top, _ := doc[0]["Plan"].(map[string]any)
	n, ok := top["Shared Dirtied Blocks"].(float64)
	if !ok {
		t.Fatalf("no Shared Dirtied Blocks in %s", plan)
	}
	return int64(n)
}

// TestReadFreshSparesALaterWrite: the first reader of a row marks it as
// committed on its page, which dirties the page. Read by the service
// right after the append, a later reader (a VACUUM, a summary, a verify)
// dirties nothing, so the pages are not written out a second time.
func TestReadFreshSparesALaterWrite(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for from := 0; from < 20000; from += 5000 {
		f.append(t, timedEntries(from, 5000))
	}
	if err := f.store.readFresh(ctx, 0, 10000); err != nil {
		t.Fatal(err)
	}
	// Every page is written out and clean, as minutes after an append.
	if _, err := f.pool.Exec(ctx, "CHECKPOINT"); err != nil {
		t.Fatal(err)
	}
	if n := dirtiedByReading(t, f, 0, 10000); n != 0 {
		t.Errorf("a later read of the entries read fresh dirtied %d pages, want 0", n)
	}
	if n := dirtiedByReading(t, f, 10000, 20000); n < 10 {
		t.Errorf("a first read of entries no one read dirtied %d pages; want their pages (the test shows nothing)", n)
	}
}

package audit

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/mediatorhq/mediator/packedhash"
	"github.com/mediatorhq/mediator/test/testdb"
)

// planRows is how many entries the plan tests write: enough that a
// sequential scan is a plan the planner weighs, few enough to stay quick.
const planRows = 100_000

// TestHotQueriesUseIndexesWithoutStatistics checks that the queries of an
// append (tree size, duplicate check, right-edge preload), of proofs, of
// entry bundles and of a search by conversation use audit_entries'
// indexes whatever pg_statistic and pg_class say: analysed, never analysed
// (autovacuum off after a bulk load, issue 24), or lying.
// Each query is explained as the store runs it, with values and as a
// generic plan.
func TestHotQueriesUseIndexesWithoutStatistics(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a table")
	}
	f := newFixture(t)
	ctx := context.Background()
	fillEntries(t, f, 0, planRows)
	queries := hotQueries()
	for _, st := range testdb.StatisticsStates {
		testdb.SetStatistics(t, f.pool, st, "audit_entries")
		for _, q := range queries {
			if st.RelTuples == 1 && !q.believesTiny {
				continue
			}
			for _, generic := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/generic=%v", st.Name, q.name, generic), func(t *testing.T) {
					plan := testdb.Explain(t, f.pool, generic, q.sql, q.args...)
					testdb.CheckIndexed(t, plan, []string{"audit_entries"}, q.index)
				})
			}
		}
	}
	// Stored tiles: a tile read and the job's "where was I", over a level
	// 0 as long as the log's (39,000 rows at 10 M entries are 250 pages).
	if _, err := f.pool.Exec(ctx, `INSERT INTO audit_tiles (level, idx, data)
		SELECT 0, g, decode(repeat('00', 8192), 'hex') FROM generate_series(0, $1::bigint / 256 - 1) g`, planRows); err != nil {
		t.Fatal(err)
	}
	checkSmallTablePlans(t, f, "audit_tiles", []smallTableQuery{
		{"stored tile", sqlStoredTile, []any{0, int64(17)}},
		{"stored tiles", sqlStoredTiles, []any{0}},
	})
	// Parts of stored level-0 tiles: every proof's read of one part, a
	// tile served from its parts, and the job's "where was I", over eight
	// parts a tile of a log as long as the plan tests' (312,000 rows, 45,000
	// pages, at 10 M entries).
	if _, err := f.pool.Exec(ctx, `INSERT INTO audit_leaf_tile_parts (idx, part, siblings, hashes)
		SELECT g, p, decode(repeat('00', 96), 'hex'), decode(repeat('00', 1024), 'hex')
		FROM generate_series(0, $1::bigint / 256 - 1) g, generate_series(0, 7) p`, planRows); err != nil {
		t.Fatal(err)
	}
	checkSmallTablePlans(t, f, "audit_leaf_tile_parts", []smallTableQuery{
		{"leaf tile part", sqlLeafTilePart, []any{int64(17), 3}},
		{"leaf tile parts", sqlLeafTilePartsOf, []any{int64(17)}},
		{"stored leaf tiles", sqlStoredLeafTiles, nil},
	})
	// Stored partial tiles: every proof's read of the widest one the tree
	// holds, and verify's of one width, over the rows of 64 level-2 tiles
	// (a log of 1 G entries holds 15,000), each stored at every width.
	if _, err := f.pool.Exec(ctx, `INSERT INTO audit_partial_tiles (level, idx, width, data)
		SELECT 2, i, w, decode(repeat('00', 32 * w), 'hex') FROM generate_series(0, 63) i, generate_series(1, 255) w`); err != nil {
		t.Fatal(err)
	}
	checkSmallTablePlans(t, f, "audit_partial_tiles", []smallTableQuery{
		{"partial tile", sqlPartialTile, []any{2, int64(63), 152}},
		{"partial tile of a width", sqlPartialTileOfWidth, []any{2, int64(17), 152}},
	})
}

// smallTableQuery is a query of a table far smaller than audit_entries.
type smallTableQuery struct {
	name, sql string
	args      []any
}

// checkSmallTablePlans checks that queries of table use its primary key
// whatever its statistics say, but for a claim of one row: the planner
// then reads a small table's few pages whole, which it does only while
// they are few (it scales reltuples by the table's current pages).
func checkSmallTablePlans(t *testing.T, f *fixture, table string, queries []smallTableQuery) {
	t.Helper()
	for _, st := range testdb.StatisticsStates {
		if st.RelTuples == 1 {
			continue
		}
		testdb.SetStatistics(t, f.pool, st, table)
		for _, q := range queries {
			for _, generic := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/generic=%v", st.Name, q.name, generic), func(t *testing.T) {
					plan := testdb.Explain(t, f.pool, generic, q.sql, q.args...)
					testdb.CheckIndexed(t, plan, []string{table}, table+"_pkey")
				})
			}
		}
	}
}

// TestPlansOutliveATinyLog plays a fresh deployment: the service's
// connections run every hot query many times while the log holds a few
// dozen entries, then the log grows, with no ANALYZE. PostgreSQL caches a
// prepared statement's generic plan after five runs and keeps it for the
// connection's life; made for a table of a few pages, the right-edge
// preload's was a sequential scan, and at 800,000 entries every append
// read the whole table (0.1–0.5 s each, ingest down from 33,000 to 8,000
// events/s). Under the service's session settings (package pgsession)
// each run is planned for its values and the table as it is: the same
// statements, on the same connection, must now use their indexes.
func TestPlansOutliveATinyLog(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a table")
	}
	f := newFixture(t)
	ctx := context.Background()
	fillEntries(t, f, 0, 30)
	conn, err := f.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	queries := hotQueries()
	statements := make([]*pgconn.StatementDescription, len(queries))
	for i, q := range queries {
		if statements[i], err = conn.Conn().Prepare(ctx, fmt.Sprintf("hot_%d", i), q.sql); err != nil {
			t.Fatalf("%s: %v", q.name, err)
		}
		for range 8 {
			if _, err := conn.Exec(ctx, statements[i].Name, q.args...); err != nil {
				t.Fatalf("%s: %v", q.name, err)
			}
		}
	}
	// No SetStatistics: a write to pg_class invalidates cached plans,
	// which is what the service cannot count on. The table was never
	// analysed.
	fillEntries(t, f, 30, planRows)
	for i, q := range queries {
		t.Run(q.name, func(t *testing.T) {
			plan := testdb.ExplainPrepared(t, conn.Conn(), statements[i], q.args...)
			testdb.CheckIndexed(t, plan, []string{"audit_entries"}, q.index)
		})
	}
}

// fillEntries writes entries [from, to) of the plan tests' shape: 200-byte
// leaves, one of 4 submitters, one of 5,000 conversations.
func fillEntries(t *testing.T, f *fixture, from, to int64) {
	t.Helper()
	if _, err := f.pool.Exec(context.Background(), `INSERT INTO audit_entries
		(seq, leaf, hashes, kind, event_id, submitter, conversation_id, occurred_at, ingested_at)
		SELECT g, convert_to(repeat('x', 200) || g, 'UTF8'), decode(repeat('00', 32), 'hex'), 'test.event',
			'event-' || g, 'gateway-' || (g % 4), 'conversation-' || (g % 5000),
			now() - make_interval(secs => $2 - g), now()
		FROM generate_series($1::bigint, $2::bigint - 1) g`, from, to); err != nil {
		t.Fatal(err)
	}
}

// hotQuery is a query of the hot path as the store sends it, with values
// for a log of planRows entries, and the index it must use.
type hotQuery struct {
	name  string
	sql   string
	args  []any
	index string
	// believesTiny is false for a query the planner may answer through
	// another index when pg_class claims the table is nearly empty.
	believesTiny bool
}

// hotQueries are the queries on audit_entries whose plans the tests check.
func hotQueries() []hotQuery {
	// A batch of 1,000 event ids, most of them logged, as ingest sends.
	ids := make([]string, 1000)
	submitters := make([]string, len(ids))
	for i := range ids {
		ids[i] = fmt.Sprintf("event-%d", planRows-500+i)
		submitters[i] = fmt.Sprintf("gateway-%d", (planRows-500+i)%4)
	}
	// Each id is looked up in the current generation and, for some, in a
	// closed one whose filter could not rule it out.
	generations := make([]int64, len(ids))
	for i := range generations {
		generations[i] = int64(i % 2)
	}
	// The right edge of the tree, and the hashes of an inclusion proof.
	var edge []int64
	for _, idx := range packedhash.RightEdge(planRows) {
		s, _ := packedhash.Owner(idx)
		edge = append(edge, s)
	}
	proof := []int64{12345, 12344, 12347, 12351, 12335, 12319, 12287, 12543, 12799, 13311, 14335, 16383, 8191, 32767, 65535, 98303}

	// A page of a search by conversation, as Search sends it.
	searchSQL, searchArgs := searchPage(Query{ConversationID: "conversation-42", AfterSeq: 5000, Limit: MaxSearchLimit})

	return []hotQuery{
		{"tree size", sqlTreeSize, nil, "audit_entries_pkey", true},
		{"duplicate check", sqlLoggedEventIDs, loggedEventIDsArgs(ids, submitters, generations), "audit_entries_event_generation", true},
		// The filter job's read of a generation's ids (here a tenth of
		// the table), and the sequencer's read of the stored filters,
		// checked against the generations' last entries.
		{"generation's event ids", sqlGenerationIDs, []any{int64(40_000), int64(50_000)}, "audit_entries_pkey", true},
		// And on a log of two generations, half the table.
		{"generation's event ids, half the table", sqlGenerationIDs, []any{int64(0), int64(planRows / 2)}, "audit_entries_pkey", true},
		// The leader's read of the rows appended since its last round.
		{"fresh entries", sqlReadFresh, []any{int64(40_000), int64(41_000)}, "audit_entries_pkey", true},
		{"event-id filters", sqlReadFilters, []any{[]int64{0, 1, 2}}, "audit_entries_pkey", true},
		{"generations without a filter", sqlFiltersToStore, []any{int64(3), 4}, "audit_entries_pkey", true},
		{"right-edge preload", sqlReadHashes, []any{edge}, "audit_entries_pkey", true},
		{"proof hashes", sqlReadHashes, []any{proof}, "audit_entries_pkey", true},
		{"entry", sqlEntry, []any{int64(4242)}, "audit_entries_pkey", true},
		{"entry bundle", sqlEntryRange, []any{int64(256 * 10), int64(256 * 11)}, "audit_entries_pkey", true},
		{"level-0 tile", sqlLeafHashRange, []any{int64(256 * 10), int64(256 * 11)}, "audit_entries_pkey", true},
		// A search is an officer's read, not an append. When pg_class
		// claims the table holds one row, the planner walks the primary
		// key from after_seq instead (every shape tried did): a lie an
		// append-only table does not tell by itself, since the planner
		// scales reltuples by the table's current size. Checked in the
		// other states, where it must use the conversation index.
		{"conversation search", searchSQL, searchArgs, "audit_entries_conversation_hash", false},
	}
}

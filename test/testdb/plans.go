package testdb

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Statistics is a state of the planner's statistics that a plan test puts
// tables in: what PostgreSQL may hold of a table nobody analysed, or of one
// that grew or shrank since it was.
type Statistics struct {
	Name string
	// Analyze runs ANALYZE on the tables: the state the queries were
	// written for. The other fields are then ignored.
	Analyze bool
	// RelTuples is written to pg_class.reltuples after the tables' rows in
	// pg_statistic are deleted: -1 is "never vacuumed nor analysed" (the
	// planner then guesses the row count from the table's size); 1 claims
	// the table is nearly empty, 1e10 that it is enormous. RelPages is
	// written with it (-1 leaves it), since the planner scales reltuples
	// by the current size over relpages.
	RelTuples float64
	RelPages  int64
}

// StatisticsStates are the states every hot query's plan is checked in:
// analysed, never analysed, and the two lies a stale pg_class tells after
// a bulk load or a bulk delete.
var StatisticsStates = []Statistics{
	{Name: "analysed", Analyze: true},
	{Name: "no statistics", RelTuples: -1, RelPages: 0},
	{Name: "reltuples tiny", RelTuples: 1, RelPages: -1},
	{Name: "reltuples huge", RelTuples: 1e10, RelPages: -1},
}

// SetStatistics puts tables in state s. It needs a superuser: it deletes
// the tables' rows from pg_statistic and writes pg_class.
func SetStatistics(t testing.TB, pool *pgxpool.Pool, s Statistics, tables ...string) {
	t.Helper()
	ctx := context.Background()
	for _, table := range tables {
		if s.Analyze {
			if _, err := pool.Exec(ctx, "ANALYZE "+pgx.Identifier{table}.Sanitize()); err != nil {
				t.Fatalf("analyze %s: %v", table, err)
			}
			continue
		}
		if _, err := pool.Exec(ctx, "DELETE FROM pg_statistic WHERE starelid = $1::regclass", table); err != nil {
			t.Fatalf("forget statistics of %s: %v", table, err)
		}
		if _, err := pool.Exec(ctx, `UPDATE pg_class SET reltuples = $2,
			relpages = CASE WHEN $3::bigint < 0 THEN relpages ELSE $3::bigint END WHERE oid = $1::regclass`,
			table, s.RelTuples, s.RelPages); err != nil {
			t.Fatalf("set reltuples of %s: %v", table, err)
		}
		if s.RelPages < 0 {
			// A lie about density needs relpages > 0: set it to the size.
			if _, err := pool.Exec(ctx, `UPDATE pg_class SET relpages = greatest(pg_relation_size(oid) / current_setting('block_size')::int, 1)
				WHERE oid = $1::regclass`, table); err != nil {
				t.Fatalf("set relpages of %s: %v", table, err)
			}
		}
	}
}

// PlanNode is one node of an EXPLAIN (FORMAT JSON) plan.
type PlanNode struct {
	NodeType string     `json:"Node Type"`
	Relation string     `json:"Relation Name"`
	Index    string     `json:"Index Name"`
	Plans    []PlanNode `json:"Plans"`
}

// Walk calls f on n and every node under it, init plans and subplans
// included.
func (n PlanNode) Walk(f func(PlanNode)) {
	f(n)
	for _, c := range n.Plans {
		c.Walk(f)
	}
}

// String is the plan as an indented list of node types, relations and
// indexes, for failure messages.
func (n PlanNode) String() string {
	var b strings.Builder
	var walk func(PlanNode, int)
	walk = func(n PlanNode, depth int) {
		fmt.Fprintf(&b, "%s%s", strings.Repeat("  ", depth), n.NodeType)
		if n.Relation != "" {
			fmt.Fprintf(&b, " on %s", n.Relation)
		}
		if n.Index != "" {
			fmt.Fprintf(&b, " using %s", n.Index)
		}
		b.WriteByte('\n')
		for _, c := range n.Plans {
			walk(c, depth+1)
		}
	}
	walk(n, 0)
	return b.String()
}

// Explain returns the plan PostgreSQL makes for query with args:
// EXPLAIN (FORMAT JSON) of the text itself, planned for these values
// (custom) or, if generic, as a prepared statement's generic plan.
func Explain(t testing.TB, pool *pgxpool.Pool, generic bool, query string, args ...any) PlanNode {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if !generic {
		if _, err := tx.Exec(ctx, "SET LOCAL plan_cache_mode = force_custom_plan"); err != nil {
			t.Fatal(err)
		}
		var raw []byte
		if err := tx.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+query, args...).Scan(&raw); err != nil {
			t.Fatalf("explain %q: %v", query, err)
		}
		return parsePlan(t, query, raw)
	}
	const name = "testdb_plan_probe"
	sd, err := tx.Conn().Prepare(ctx, name, query)
	if err != nil {
		t.Fatalf("prepare %q: %v", query, err)
	}
	defer tx.Conn().Deallocate(ctx, name)
	if _, err := tx.Exec(ctx, "SET LOCAL plan_cache_mode = force_generic_plan"); err != nil {
		t.Fatal(err)
	}
	return ExplainPrepared(t, tx.Conn(), sd, args...)
}

// ExplainPrepared returns the plan of the statement sd, which conn
// prepared, run with args under the session's own settings: after a few
// runs that may be a generic plan PostgreSQL cached, however long ago and
// for however small a table.
func ExplainPrepared(t testing.TB, conn *pgx.Conn, sd *pgconn.StatementDescription, args ...any) PlanNode {
	t.Helper()
	ctx := context.Background()
	name := sd.Name
	if len(args) != len(sd.ParamOIDs) {
		t.Fatalf("explain %s: %d arguments for %d parameters", name, len(args), len(sd.ParamOIDs))
	}
	// EXECUTE's arguments are not statement parameters: each value goes
	// in as a literal of its parameter's type.
	params := make([]string, len(sd.ParamOIDs))
	for i, oid := range sd.ParamOIDs {
		var typ, lit string
		if err := conn.QueryRow(ctx, "SELECT format_type($1, NULL)", oid).Scan(&typ); err != nil {
			t.Fatal(err)
		}
		if err := conn.QueryRow(ctx, "SELECT quote_nullable(($1::"+typ+")::text)", args[i]).Scan(&lit); err != nil {
			t.Fatalf("explain %s: argument %d: %v", name, i+1, err)
		}
		params[i] = lit + "::" + typ
	}
	execute := "EXECUTE " + name
	if len(params) > 0 {
		execute += "(" + strings.Join(params, ", ") + ")"
	}
	var raw []byte
	if err := conn.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+execute).Scan(&raw); err != nil {
		t.Fatalf("explain %s: %v", name, err)
	}
	return parsePlan(t, name, raw)
}

func parsePlan(t testing.TB, query string, raw []byte) PlanNode {
	t.Helper()
	var plans []struct{ Plan PlanNode }
	if err := json.Unmarshal(raw, &plans); err != nil || len(plans) != 1 {
		t.Fatalf("explain %q: unreadable plan (%v): %s", query, err, raw)
	}
	return plans[0].Plan
}

// CheckIndexed fails t unless plan reads none of tables with a sequential
// scan, uses every index in indexes, and is not a parallel plan (a hot
// query that starts worker processes on every execution costs more to
// start than to run: a range of 256 rows planned without statistics as a
// parallel index scan made four tile readers halve ingest).
func CheckIndexed(t testing.TB, plan PlanNode, tables []string, indexes ...string) {
	t.Helper()
	used := map[string]bool{}
	failed := false
	plan.Walk(func(n PlanNode) {
		if n.NodeType == "Gather" || n.NodeType == "Gather Merge" {
			t.Errorf("a parallel plan (%s)", n.NodeType)
			failed = true
		}
		if n.NodeType == "Seq Scan" {
			for _, table := range tables {
				if n.Relation == table {
					t.Errorf("sequential scan of %s", table)
					failed = true
				}
			}
		}
		if n.Index != "" {
			used[n.Index] = true
		}
	})
	for _, ix := range indexes {
		if !used[ix] {
			t.Errorf("index %s is not used", ix)
			failed = true
		}
	}
	if failed {
		t.Logf("plan:\n%s", plan)
	}
}

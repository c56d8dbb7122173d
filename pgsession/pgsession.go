// Package pgsession holds the PostgreSQL session settings the service's
// queries are planned under, so that the service and the tests that check
// its plans (test/testdb) plan alike.
//
// The service's queries are probes by key and short ranges of the primary
// key. Where the planner has no statistics (autovacuum off, a bulk load, a
// fresh deployment) it can cost one at millions of rows. It then compiles
// it with LLVM first (0.3 s per duplicate check at 3 M entries), or plans
// it as a parallel scan that starts worker processes on every execution
// (a 256-row tile read at 10 M entries: four tile readers halved ingest).
// Neither pays for itself on a query that reads a few pages.
//
// And a plan made once must not outlive the table it was made for.
// PostgreSQL caches a prepared statement's generic plan after five runs
// and keeps it for the connection's life, until something invalidates it
// (an ANALYZE, which with autovacuum off never comes). pgx prepares every
// statement, so a connection that ran the right-edge preload five times
// while a fresh log held a few dozen entries kept a sequential scan for
// it: at 800,000 entries every append read the whole table. Planned for
// each run (force_custom_plan), a query costs its planning, some tens of
// microseconds, and is planned for the table as it is.
package pgsession

import "github.com/jackc/pgx/v5"

// settings are the session settings Configure applies.
//
// synchronous_commit = on is the durability half of the high-availability
// topology (docs/operations.md): with the primary's
// synchronous_standby_names naming the standby, a commit returns only once
// the standby has flushed its WAL, so an acknowledged event is on two
// machines. It is set here so that a server default of off or local
// cannot weaken it unnoticed.
var settings = map[string]string{
	"jit":                             "off",
	"max_parallel_workers_per_gather": "0",
	"plan_cache_mode":                 "force_custom_plan",
	"synchronous_commit":              "on",
}

// Configure sets the service's session settings on cfg, leaving any the
// connection URL already sets (an operator may still turn one on).
func Configure(cfg *pgx.ConnConfig) {
	for k, v := range settings {
		if _, set := cfg.RuntimeParams[k]; !set {
			cfg.RuntimeParams[k] = v
		}
	}
}

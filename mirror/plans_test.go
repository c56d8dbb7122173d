package mirror

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediatorhq/mediator/pgsession"
	"github.com/mediatorhq/mediator/test/testdb"
)

// TestPlansUseIndexes: every query the mirror runs while receiving and
// serving uses its primary key, not a scan or a parallel plan, whatever
// pg_statistic and pg_class say (analysed, none, tiny, huge).
func TestPlansUseIndexes(t *testing.T) {
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(env.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	pgsession.Configure(cfg.ConnConfig)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, schema); err != nil {
		t.Fatal(err)
	}
	const rows = 300_000
	for _, q := range []string{
		`INSERT INTO mirror_entries SELECT g, '\x7b7d', decode(repeat('00', 32), 'hex') FROM generate_series(0, 299999) g`,
		`INSERT INTO mirror_pending SELECT g * 100, decode(repeat('00', 32), 'hex'), 'note' FROM generate_series(1, 3000) g`,
		`INSERT INTO mirror_checkpoints SELECT g * 100, 'note' FROM generate_series(1, 3000) g`,
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	queries := []struct {
		name, sql, table, index string
		args                    []any
	}{
		{"next entry", sqlNext, "mirror_entries", "mirror_entries_pkey", nil},
		{"leaf hashes", sqlLeafHashRange, "mirror_entries", "mirror_entries_pkey", []any{int64(rows - 256), int64(rows - 100)}},
		{"entry bundle", sqlEntryRange, "mirror_entries", "mirror_entries_pkey", []any{int64(2560), int64(2816)}},
		{"stored hashes", sqlReadHashes, "mirror_entries", "mirror_entries_pkey", []any{[]int64{299999, 299967, 294911, 262143}}},
		{"pending at", sqlPendingAt, "mirror_pending", "mirror_pending_pkey", []any{int64(150000)}},
		{"latest pending", sqlLatestPending, "mirror_pending", "mirror_pending_pkey", nil},
		{"mirror checkpoint", sqlMirrored, "mirror_checkpoints", "mirror_checkpoints_pkey", nil},
	}
	for _, st := range testdb.StatisticsStates {
		testdb.SetStatistics(t, pool, st, "mirror_entries", "mirror_pending", "mirror_checkpoints")
		for _, q := range queries {
			for _, generic := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/generic=%v", st.Name, q.name, generic), func(t *testing.T) {
					plan := testdb.Explain(t, pool, generic, q.sql, q.args...)
					testdb.CheckIndexed(t, plan, []string{q.table}, q.index)
				})
			}
		}
	}
}

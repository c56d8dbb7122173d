package escrow_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mediatorhq/mediator/escrow"
	"github.com/mediatorhq/mediator/test/testdb"
)

// planKeys is how many escrows the plan test writes: enough that a
// sequential scan is a plan the planner weighs, few enough to stay quick.
const planKeys = 100_000

// TestScopeQueriesUseIndexesWithoutStatistics checks that the reads of a
// release (the scope query, and escrows by id) use the escrow tables'
// indexes whatever pg_statistic and pg_class say: analysed, never analysed
// (autovacuum off after a bulk load, issue 24), or lying. Each query is
// explained as PGRows runs it, with values and as a generic plan.
func TestScopeQueriesUseIndexesWithoutStatistics(t *testing.T) {
	if testing.Short() {
		t.Skip("fills tables")
	}
	pool := testdb.Pool(t, env)
	ctx := context.Background()
	// Five keys a conversation, one deposited a minute, two custodians
	// each; the oldest fifth destroyed at retention end, and one in a
	// hundred of the others.
	for _, q := range []string{
		`INSERT INTO escrow_keys (escrow_id, conversation_id, key_id, threshold, shares, custodians, key_commitment, share_hashes, depositor)
			SELECT md5('escrow' || g)::uuid, 'conversation-' || (g % ($1 / 5)), 'key-' || g, 2, 2, '{a,b}',
				'sha256:' || repeat('0', 64), ARRAY[sha256(g::text::bytea), sha256(g::text::bytea)], 'gateway'
			FROM generate_series(0, $1::int - 1) g`,
		`INSERT INTO escrow_deposit_audit (escrow_id, audit_seq, created_at)
			SELECT md5('escrow' || g)::uuid, g, '2026-01-01'::timestamptz + make_interval(mins => g)
			FROM generate_series(0, $1::int - 1) g`,
		`INSERT INTO escrow_custodian_shares (escrow_id, custodian, share_index, locator, receipt)
			SELECT md5('escrow' || g)::uuid, c, i, 'locator', '{}'
			FROM generate_series(0, $1::int - 1) g, unnest('{a,b}'::text[]) WITH ORDINALITY AS s(c, i)`,
		`INSERT INTO escrow_destructions (escrow_id, audit_seq)
			SELECT md5('escrow' || g)::uuid, g FROM generate_series(0, $1::int - 1) g WHERE g < $1 / 5 OR g % 100 = 0`,
	} {
		if _, err := pool.Exec(ctx, q, planKeys); err != nil {
			t.Fatal(err)
		}
	}
	// A release's scope: 50 conversations over a month; a page of ids.
	conversations := make([]string, 50)
	for i := range conversations {
		conversations[i] = fmt.Sprintf("conversation-%d", i*97)
	}
	from := time.Date(2026, 1, 15, 0, 0, 0, 0, time.UTC)
	to := from.AddDate(0, 1, 0)
	var ids []string
	if err := pool.QueryRow(ctx, `SELECT array_agg(md5('escrow' || g)::uuid::text) FROM generate_series(1000, 100000, 1000) g`).Scan(&ids); err != nil {
		t.Fatal(err)
	}

	tables := []string{"escrow_keys", "escrow_deposit_audit", "escrow_destructions", "escrow_custodian_shares"}
	queries := []struct {
		name    string
		sql     string
		args    []any
		indexes []string
	}{
		{"keys in scope", escrow.SQLKeysInScope, []any{conversations, from, to}, []string{"escrow_keys_conversation", "escrow_deposit_audit_pkey", "escrow_destructions_pkey"}},
		{"escrows in scope", escrow.SQLInScope, []any{conversations, from, to}, []string{"escrow_keys_conversation", "escrow_deposit_audit_pkey", "escrow_destructions_pkey", "escrow_custodian_shares_pkey"}},
		{"escrows by id", escrow.SQLByIDs, []any{ids}, []string{"escrow_keys_pkey", "escrow_deposit_audit_pkey", "escrow_destructions_pkey", "escrow_custodian_shares_pkey"}},
	}
	for _, st := range testdb.StatisticsStates {
		testdb.SetStatistics(t, pool, st, tables...)
		for _, q := range queries {
			for _, generic := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/generic=%v", st.Name, q.name, generic), func(t *testing.T) {
					plan := testdb.Explain(t, pool, generic, q.sql, q.args...)
					testdb.CheckIndexed(t, plan, tables, q.indexes...)
				})
			}
		}
	}
}

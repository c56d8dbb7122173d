package access

import (
	"context"
	"fmt"
	"testing"

	"github.com/mediatorhq/mediator/test/testdb"
)

// TestReleaseShareQueriesUseIndexesWithoutStatistics checks that the reads
// a release makes of the shares custodians released use
// access_release_shares' key whatever pg_statistic and pg_class say:
// analysed, never analysed (autovacuum off after a bulk load, issue 24), or
// lying. Each query is explained as PGStore runs it, with values and as a
// generic plan.
func TestReleaseShareQueriesUseIndexesWithoutStatistics(t *testing.T) {
	if testing.Short() {
		t.Skip("fills tables")
	}
	pool := testdb.Pool(t, env)
	ctx := context.Background()
	// 1,000 requests, each released 100 escrows' shares by two custodians.
	for _, q := range []string{
		`INSERT INTO escrow_keys (escrow_id, conversation_id, key_id, threshold, shares, custodians, key_commitment, share_hashes)
			SELECT md5('escrow' || g)::uuid, 'conversation-' || g, 'key', 2, 2, '{a,b}', 'sha256:' || repeat('0', 64),
				ARRAY[sha256('a'), sha256('b')]
			FROM generate_series(0, 99) g`,
		`INSERT INTO access_requests (request_id, requester, case_id, legal_basis, warrant_ref, jurisdiction, justification,
			conversation_ids, scope_from, scope_to, recipient_kem_id, recipient_public_key, created_at, expires_at, canonical, digest, audit_seq)
			SELECT md5('request' || g)::uuid, 'officer', 'case', 'basis', 'warrant', 'xx', 'why', '{c}', now(), now(), 32, '\x00',
				now(), now(), '\x00', 'sha256:' || repeat('0', 64), g
			FROM generate_series(0, 999) g`,
		`INSERT INTO access_release_shares (request_id, escrow_id, custodian, share_index, sealed, receipt, receipt_sha256, audit_seq)
			SELECT md5('request' || r)::uuid, md5('escrow' || e)::uuid, c, i, '\x00', '{}', 'x', r
			FROM generate_series(0, 999) r, generate_series(0, 99) e, unnest('{a,b}'::text[]) WITH ORDINALITY AS s(c, i)`,
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	var request string
	var escrows []string
	if err := pool.QueryRow(ctx, `SELECT md5('request' || 500)::uuid::text,
		array_agg(md5('escrow' || g)::uuid::text) FROM generate_series(0, 99, 3) g`).Scan(&request, &escrows); err != nil {
		t.Fatal(err)
	}
	tables := []string{"access_release_shares"}
	queries := []struct {
		name string
		sql  string
		args []any
	}{
		{"kept custodians", sqlKeptCustodians, []any{request}},
		{"receipt hashes", sqlReleaseReceiptHashes, []any{request}},
		{"shares of escrows", sqlReleaseSharesOf, []any{request, escrows}},
	}
	for _, st := range testdb.StatisticsStates {
		testdb.SetStatistics(t, pool, st, tables...)
		for _, q := range queries {
			for _, generic := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/generic=%v", st.Name, q.name, generic), func(t *testing.T) {
					plan := testdb.Explain(t, pool, generic, q.sql, q.args...)
					testdb.CheckIndexed(t, plan, tables, "access_release_shares_pkey")
				})
			}
		}
	}
}

package custodian_test

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mediatorhq/mediator/custodian"
	"github.com/mediatorhq/mediator/dev"
	"github.com/mediatorhq/mediator/shares"
)

// TestReleaseRecordsReadOnce: a store reads each release record of a
// request once, however many release calls follow, yet sees every record
// written since, by itself or by another process on the same Vault path.
// Its answer names only the escrows asked about. On the real Vault: the
// test rewrites a record behind the write-once rule (as no custodian
// would) and shows that the store that read it before keeps its first
// reading while a store that never read it sees the rewrite.
func TestReleaseRecordsReadOnce(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, dev.CustodianOptions{})
	st := f.set.Running[0].StoreForTest()
	req := uuid.NewString()
	a, b, c := uuid.NewString(), uuid.NewString(), uuid.NewString()
	t1, t2 := time.Now().UTC().Add(-time.Hour).Truncate(time.Second), time.Now().UTC().Truncate(time.Second)
	if err := st.PutRelease(ctx, req, 1, shares.FormatTime(t2), map[string]string{a: "ha"}); err != nil {
		t.Fatal(err)
	}
	if err := st.PutRelease(ctx, req, 2, shares.FormatTime(t1), map[string]string{b: "hb"}); err != nil {
		t.Fatal(err)
	}
	n, first, got, err := st.Released(ctx, req, a, b, c)
	if err != nil || n != 2 || !first.Equal(t1) || !maps.Equal(got, map[string]string{a: "ha", b: "hb"}) {
		t.Fatalf("first reading: %d records, first %v, %v, %v", n, first, got, err)
	}
	if _, _, got, _ := st.Released(ctx, req, b); !maps.Equal(got, map[string]string{b: "hb"}) {
		t.Fatalf("asked about b only: %v", got)
	}

	// Rewrite record 1 behind the rule, and add record 3 from another
	// process's store.
	sec, err := st.Get(ctx, "released/"+req+"/1")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Replace(ctx, "released/"+req+"/1", sec, map[string]any{"record": `{"request_digest":"d","at":"` +
		shares.FormatTime(t2) + `","receipts":{"` + a + `":"rewritten"}}`}); err != nil {
		t.Fatal(err)
	}
	other := st.Fresh()
	if err := other.PutRelease(ctx, req, 3, shares.FormatTime(t2), map[string]string{c: "hc"}); err != nil {
		t.Fatal(err)
	}
	n, _, got, err = st.Released(ctx, req, a, b, c)
	if err != nil || n != 3 || !maps.Equal(got, map[string]string{a: "ha", b: "hb", c: "hc"}) {
		t.Fatalf("the store that read before: %d records, %v, %v (want record 1 as first read, record 3 new)", n, got, err)
	}
	if _, _, got, _ := st.Fresh().Released(ctx, req, a); got[a] != "rewritten" {
		t.Fatalf("a store that never read record 1 sees %v: the test cannot tell a re-read", got)
	}

	// A request forgotten to make room is read again from its records.
	for range custodian.ReleaseCacheRequests {
		if _, _, _, err := st.Released(ctx, uuid.NewString()); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, got, _ := st.Released(ctx, req, a); got[a] != "rewritten" {
		t.Fatalf("after %d other requests, record 1 reads %v: the cache is unbounded", custodian.ReleaseCacheRequests, got)
	}
}

package custodian_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/google/uuid"

	"github.com/mediatorhq/mediator/custodian"
	"github.com/mediatorhq/mediator/dev"
	"github.com/mediatorhq/mediator/shares"
	"github.com/mediatorhq/mediator/wire"
)

// TestCheckAndSetByState: a custodian's write-once and check-and-set
// writes, under its own Vault login, report a record that exists
// (ErrExists) or moved past the version read (ErrChanged) from Vault's
// status and the record's state, which that login may read. (Vault's
// other refusals of the same status: TestCASRefused.)
func TestCheckAndSetByState(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, dev.CustodianOptions{})
	st := f.set.Running[0].StoreForTest()
	p := "test/" + uuid.NewString()

	if err := st.PutOnce(ctx, p, map[string]any{"n": "1"}); err != nil {
		t.Fatalf("first write: %v", err)
	}
	if err := st.PutOnce(ctx, p, map[string]any{"n": "2"}); !errors.Is(err, custodian.ErrExists) {
		t.Fatalf("second write-once write: %v, want ErrExists", err)
	}
	v1, err := st.Get(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Replace(ctx, p, v1, map[string]any{"n": "3"}); err != nil {
		t.Fatalf("replace the version read: %v", err)
	}
	if err := st.Replace(ctx, p, v1, map[string]any{"n": "4"}); !errors.Is(err, custodian.ErrChanged) {
		t.Fatalf("replace a version since replaced: %v, want ErrChanged", err)
	}
	if sec, err := st.Get(ctx, p); err != nil || sec.Data["n"] != "3" {
		t.Fatalf("after the refused replace: %+v %v", sec, err)
	}
}

// TestReplaceDestroysOlderVersions: after a replace, Vault holds the data
// of the new version only, also when an earlier replace left its older
// version behind (its destroy failed): what a custodian rewrote without,
// a share above all, does not survive in an older version.
func TestReplaceDestroysOlderVersions(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, dev.CustodianOptions{})
	st := f.set.Running[0].StoreForTest()
	p := "test/" + uuid.NewString()
	if err := st.PutOnce(ctx, p, map[string]any{"n": "1"}); err != nil {
		t.Fatal(err)
	}
	replace := func(n string) {
		t.Helper()
		sec, err := st.Get(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Replace(ctx, p, sec, map[string]any{"n": n}); err != nil {
			t.Fatalf("replace with %s: %v", n, err)
		}
	}
	want := func(current int) {
		t.Helper()
		versions, err := st.Versions(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		for v := 1; v <= current; v++ {
			destroyed, kept := versions[v]
			if !kept || destroyed != (v < current) {
				t.Errorf("version %d of %d: listed %v, destroyed %v", v, current, kept, destroyed)
			}
		}
	}
	replace("2")
	want(2)
	// Versions 3 and 4 written as by replaces whose destroys failed.
	for cas := 2; cas <= 3; cas++ {
		if err := st.PutVersion(ctx, p, map[string]any{"n": "x"}, cas); err != nil {
			t.Fatal(err)
		}
	}
	replace("5")
	want(5)
	if sec, err := st.Get(ctx, p); err != nil || sec.Data["n"] != "5" {
		t.Fatalf("after the replaces: %+v %v", sec, err)
	}
}

// TestKeptAnswersInEntries: a release's answers are kept, written once, in
// entries of at most KeptEntryBytes each, and read back byte for byte;
// entries dropped are gone.
func TestKeptAnswersInEntries(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, dev.CustodianOptions{})
	st := f.set.Running[0].StoreForTest()
	requestID := uuid.NewString()
	answers := make([]wire.CustodianShare, 300)
	for i := range answers {
		sealed := make([]byte, 1200) // an ML-KEM sealed share's size
		rand.Read(sealed)
		id := uuid.NewString()
		answers[i] = wire.CustodianShare{EscrowID: id, Index: i%5 + 1, Sealed: sealed, Receipt: &shares.SignedReceipt{
			Receipt:   shares.Receipt{Kind: shares.ReceiptRelease, Custodian: "custodian-1", EscrowID: id, RequestID: requestID, SealedSHA256: shares.SealedHash(sealed)},
			Signature: bytes.Repeat([]byte{byte(i)}, 64)}}
	}
	entries, err := st.Keep(ctx, requestID, answers)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) < 2 {
		t.Fatalf("%d entries for 300 answers of %d bytes at most each", len(entries), custodian.KeptEntryBytes)
	}
	got := map[string]wire.CustodianShare{}
	var names []string
	for k, e := range entries {
		if k > 0 && e[1] <= entries[k-1][1] {
			t.Errorf("entries out of order: %v", entries)
		}
		kept, err := st.Kept(ctx, requestID, e[0])
		if err != nil {
			t.Fatal(err)
		}
		for id, a := range kept {
			if id < e[1] || (k+1 < len(entries) && id >= entries[k+1][1]) {
				t.Errorf("entry %d holds %s, outside its range", k, id)
			}
			got[id] = a
		}
		names = append(names, e[0])
	}
	for _, want := range answers {
		a, ok := got[want.EscrowID]
		if !ok || a.Index != want.Index || !bytes.Equal(a.Sealed, want.Sealed) || a.Receipt.Hash() != want.Receipt.Hash() {
			t.Fatalf("%s kept as %+v", want.EscrowID, a)
		}
	}
	st.Drop(ctx, requestID, names...)
	if _, err := st.Kept(ctx, requestID, names[0]); !errors.Is(err, custodian.ErrNoRecord) {
		t.Fatalf("a dropped entry: %v", err)
	}
}

package custodian_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"

	"github.com/mediatorhq/mediator/custodian"
	"github.com/mediatorhq/mediator/dev"
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

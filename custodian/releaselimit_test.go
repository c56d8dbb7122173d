package custodian_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mediatorhq/mediator/dev"
	"github.com/mediatorhq/mediator/wire"
)

// TestReleaseCallAnswersPerShare: a release call asking for more shares
// than one call answers (10,000) is not refused as a whole, as it was when
// one depositor's 10,001 keys under a conversation blocked its release
// (issue 21): the first 10,000 are answered, each of the rest gets the
// item error too_many_in_call, and asked for again in another call it is
// released.
func TestReleaseCallAnswersPerShare(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, dev.CustodianOptions{})
	id, receipts := f.deposit(t, "conv-a", "e1", bytes.Repeat([]byte{7}, 32))
	now := time.Now()
	canonical, approvals := f.request(t, []string{"conv-a"}, now.Add(-time.Hour), now.Add(time.Hour), "lena", "sam")
	real := ref(id, receipts, 0)[0]
	// 10,000 ids this custodian never stored, in the real share's entry
	// (one Vault read), and the real share last.
	refs := make([]wire.ShareRef, 0, 10001)
	for range 10000 {
		refs = append(refs, wire.ShareRef{EscrowID: uuid.NewString(), Locator: real.Locator})
	}
	refs = append(refs, real)
	ev := wire.ReleaseEvidence{Roster: f.chain, Canonical: canonical, OfficerSignature: f.sig(canonical), Approvals: approvals, Shares: refs}
	ans, err := f.remotes[0].Release(ctx, ev)
	if err != nil || len(ans.Shares) != len(refs) {
		t.Fatalf("a call of 10,001 shares: %d answers, %v", len(ans.Shares), err)
	}
	for i, sh := range ans.Shares[:10000] {
		if sh.EscrowID != refs[i].EscrowID || sh.Error == nil || sh.Error.Code != "not_found" {
			t.Fatalf("share %d: %+v", i, sh)
		}
	}
	if last := ans.Shares[10000]; last.EscrowID != id || last.Error == nil || last.Error.Code != "too_many_in_call" || last.Sealed != nil {
		t.Fatalf("the share past the limit: %+v", last)
	}

	ev.Shares = []wire.ShareRef{real}
	ans, err = f.remotes[0].Release(ctx, ev)
	if err != nil || len(ans.Shares) != 1 || ans.Shares[0].Error != nil || ans.Shares[0].Receipt == nil {
		t.Fatalf("asked again in another call: %+v %v", ans, err)
	}
}

package custodian_test

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/custodian"
	"github.com/mediatorhq/mediator/dev"
	"github.com/mediatorhq/mediator/escrow"
	"github.com/mediatorhq/mediator/wire"
)

// TestDenialLock: each refusal of a request's release by a custodian's
// own policy is recorded in its store; after five, a release with every
// approval the policy needs is refused there as locked, without asking
// the policy; another custodian, which refused nothing, releases. The
// fifth refusal says the request is locked now.
func TestDenialLock(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, dev.CustodianOptions{})
	id, receipts := f.deposit(t, "conv-a", "e1", bytes.Repeat([]byte{9}, 32))
	now := time.Now()
	canonical, approvals := f.request(t, []string{"conv-a"}, now.Add(-time.Hour), now.Add(time.Hour), "lena", "sam")
	req, _ := approval.Parse(canonical)
	ev := func(i int, as []wire.EvidenceApproval) wire.ReleaseEvidence {
		return wire.ReleaseEvidence{Roster: f.chain, Canonical: canonical, OfficerSignature: f.sig(canonical), Approvals: as, Shares: ref(id, receipts, i)}
	}

	// lena's approval alone: the policy wants legal and security.
	for n := 1; n <= 5; n++ {
		_, err := f.remotes[0].Release(ctx, ev(0, approvals[:1]))
		var refused *escrow.RefusedError
		if !errors.As(err, &refused) {
			t.Fatalf("release %d with one approval: %v", n, err)
		}
		reasons := strings.Join(refused.Reasons, "; ")
		if locked := strings.Contains(reasons, "locked after 5 denials"); locked != (n == 5) {
			t.Errorf("refusal %d says locked %v: %s", n, locked, reasons)
		}
	}
	for n := 1; n <= 5; n++ {
		sec, err := f.set.Running[0].StoreForTest().Get(ctx, "denied/"+req.ID+"/"+strconv.Itoa(n))
		if err != nil || !strings.Contains(sec.Data["record"].(string), approval.Digest(canonical)) {
			t.Errorf("denial record %d: %v", n, err)
		}
	}
	if got := f.set.Counter(0, "mediator_custodian_denials_total"); got != 5 {
		t.Errorf("mediator_custodian_denials_total %v, want 5", got)
	}

	// Now both approvals: the policy would allow, the lock refuses.
	_, err := f.remotes[0].Release(ctx, ev(0, approvals))
	var refused *escrow.RefusedError
	if !errors.As(err, &refused) || len(refused.Reasons) != 1 || !strings.HasPrefix(refused.Reasons[0], "locked after 5 denials") {
		t.Fatalf("a release that would pass, after five denials: %v", err)
	}
	if got := f.set.Counter(0, "mediator_custodian_locked_refused_total"); got != 1 {
		t.Errorf("mediator_custodian_locked_refused_total %v, want 1", got)
	}
	if got := f.set.Counter(0, "mediator_custodian_denials_total"); got != 5 {
		t.Errorf("a lock's refusal counted as a denial: %v", got)
	}
	if _, err := f.set.Running[0].StoreForTest().Get(ctx, "denied/"+req.ID+"/6"); !errors.Is(err, custodian.ErrNoRecord) {
		t.Errorf("a lock's refusal was recorded as a denial: %v", err)
	}

	// Custodian 2 refused nothing: it releases.
	ans, err := f.remotes[1].Release(ctx, ev(1, approvals))
	if err != nil || ans.Shares[0].Error != nil {
		t.Fatalf("custodian 2, with no denial on record: %+v %v", ans, err)
	}
}

package escrow_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mediatorhq/mediator/dev"
	"github.com/mediatorhq/mediator/escrow"
	"github.com/mediatorhq/mediator/reconcile"
	"github.com/mediatorhq/mediator/wire"
)

// TestReconcileFindsOrphans: a share every custodian keeps (committed,
// with signed receipts) that no escrow names, as a mediator that died
// before its commit leaves, is an orphan at each custodian, in the
// findings and the gauge; a deposit the mediator recorded is not, nor is
// a share aborted after a failed deposit.
func TestReconcileFindsOrphans(t *testing.T) {
	f := newFixture(t, dev.CustodianOptions{})
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	svc := f.cs.EscrowWith(t, escrow.Config{Deposits: f.rows, Lifecycle: f.rows, Metrics: escrow.NewMetrics(reg)})
	if _, _, err := svc.Deposit(ctx, f.request(t, "conv-1", "k-logged", newKey(t))); err != nil {
		t.Fatal(err)
	}
	// The orphan: stored and committed at every custodian, never recorded.
	orphan := f.request(t, "conv-1", "k-orphan", newKey(t))
	orphanID := uuid.NewString()
	remotes, err := f.cs.File.Remotes()
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range remotes {
		st, err := r.Store(ctx, wire.ShareToStore{EscrowID: orphanID, ConversationID: orphan.ConversationID, KeyID: orphan.KeyID,
			Index: i + 1, Commitment: orphan.Commitment, Sealed: orphan.Shares[i].Sealed, Depositor: "gateway-3"})
		if err != nil || st.Stored == nil {
			t.Fatalf("store at %s: %+v %v", r.Name, st, err)
		}
		if c, err := r.Commit(ctx, wire.ShareRef{EscrowID: orphanID, Locator: st.Stored.Locator}); err != nil || c.Receipt == nil {
			t.Fatalf("commit at %s: %+v %v", r.Name, c, err)
		}
	}
	// An aborted share: stored, never committed, aborted.
	aborted := f.request(t, "conv-1", "k-aborted", newKey(t))
	abortedID := uuid.NewString()
	st, err := remotes[0].Store(ctx, wire.ShareToStore{EscrowID: abortedID, ConversationID: aborted.ConversationID, KeyID: aborted.KeyID,
		Index: 1, Commitment: aborted.Commitment, Sealed: aborted.Shares[0].Sealed, Depositor: "gateway-3"})
	if err != nil || st.Stored == nil {
		t.Fatal(err)
	}
	if res, err := remotes[0].Abort(ctx, []wire.ShareRef{{EscrowID: abortedID, Locator: st.Stored.Locator}}); err != nil || res[0].Outcome != "aborted" {
		t.Fatalf("abort: %+v %v", res, err)
	}

	now := time.Now()
	findings, errs := svc.Reconcile(ctx, now.Add(-time.Hour), now.Add(time.Minute), now.Add(time.Minute))
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	if len(findings) != 5 {
		t.Fatalf("findings: %v", findings)
	}
	for i, fd := range findings {
		if fd.Kind != reconcile.KindOrphan || fd.EscrowID != orphanID || fd.Custodian != remotes[i].Name {
			t.Errorf("finding %d: %v", i, fd)
		}
	}
	// Before the cutoff only: a share younger than it may await its commit.
	if findings, _ := svc.Reconcile(ctx, now.Add(-time.Hour), now.Add(time.Minute), now.Add(-time.Hour)); len(findings) != 0 {
		t.Fatalf("a fresh share called an orphan: %v", findings)
	}

	// The job sets the gauge an alert watches.
	jctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { svc.RunReconcile(jctx, time.Hour, time.Hour, -2*time.Minute); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for testutil.CollectAndCount(reg, "mediator_escrow_reconcile_runs_total") == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	g, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	orphans := 0.0
	for _, mf := range g {
		if mf.GetName() != "mediator_escrow_reconcile_findings" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "kind" && l.GetValue() == "orphan" {
					orphans += m.GetGauge().GetValue()
				}
			}
		}
	}
	if orphans != 5 {
		t.Fatalf("mediator_escrow_reconcile_findings{kind=orphan} sums to %v, want 5", orphans)
	}
}

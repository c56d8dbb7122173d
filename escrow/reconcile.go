package escrow

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/mediatorhq/mediator/reconcile"
	"github.com/mediatorhq/mediator/shares"
	"github.com/mediatorhq/mediator/wire"
)

// Inventory asks the custodian for its signed inventory of the shares it
// stored in [since, until).
func (r *Remote) Inventory(ctx context.Context, since, until time.Time) (shares.SignedInventory, error) {
	var out shares.SignedInventory
	return out, r.call(ctx, http.MethodPost, "/v1/shares/inventory", wire.InventoryQuery{Since: since, Until: until}, &out)
}

// Reconcile asks each custodian for its signed inventory of [since,
// until) and compares it with the escrows this mediator recorded (each
// row commits with its escrow.deposit entry): a share a custodian keeps,
// stored before cutoff, that no escrow names is an orphan (a mediator
// that died between the custodians' stores and its commit); a share a
// custodian aborted, or keeps under other sealed bytes, that an escrow
// names is a silent abort or a mismatch. A custodian that does not
// answer, or whose answer its key in the set does not verify, is an
// error of its own and is left out of the findings.
//
// It reads the escrows by the ids the inventories name (primary-key
// lookups): deposits no custodian lists are for `mediator escrow
// reconcile`, which reads the log.
func (s *Service) Reconcile(ctx context.Context, since, until, cutoff time.Time) ([]reconcile.Finding, []error) {
	if len(s.remotes) == 0 {
		return nil, []error{ErrNotConfigured}
	}
	since, until = since.UTC().Truncate(time.Microsecond), until.UTC().Truncate(time.Microsecond)
	inventories := map[string]shares.Inventory{}
	var (
		names []string
		errs  []error
		ids   []string
	)
	for i, r := range s.remotes {
		signed, err := r.Inventory(ctx, since, until)
		if err == nil {
			err = signed.Verify(s.set.Custodians[i].SigningKey)
		}
		inv := signed.Inventory
		if err == nil && (inv.Custodian != r.Name || inv.Since != shares.FormatTime(since) || inv.Until != shares.FormatTime(until)) {
			err = fmt.Errorf("the inventory answers another question")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("custodian %s: %w", r.Name, err))
			continue
		}
		names = append(names, r.Name)
		inventories[r.Name] = inv
		for _, sh := range inv.Shares {
			ids = append(ids, sh.EscrowID)
		}
	}
	recs, err := s.deposits.ByIDs(ctx, ids)
	if err != nil {
		return nil, append(errs, err)
	}
	logged := make([]reconcile.Logged, 0, len(recs))
	for _, rec := range recs {
		l := reconcile.Logged{EscrowID: rec.EscrowID, At: rec.CreatedAt, Sealed: map[string]string{}}
		for _, sh := range rec.Shares {
			l.Sealed[sh.Receipt.Custodian] = sh.Receipt.SealedSHA256
		}
		logged = append(logged, l)
	}
	// Only the escrows the inventories name are read: a window of none
	// keeps Compare from asking the custodians for the others.
	w := reconcile.Window{Since: since, Until: since, Cutoff: cutoff}
	return reconcile.Compare(w, logged, names, inventories), errs
}

// CustodianAbortWindow is the custodians' default abort window, which the
// mediator's reconciliation assumes: a share younger than it is never
// called an orphan.
const CustodianAbortWindow = 10 * time.Minute

// RunReconcile reconciles every interval, the window lookback back to
// now, until ctx ends, and sets the findings gauge: an alert fires on any
// finding (docs/operations.md). abortWindow is the custodians' (shares
// younger than it may await their commit).
func (s *Service) RunReconcile(ctx context.Context, interval, lookback, abortWindow time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		now := time.Now()
		findings, errs := s.Reconcile(ctx, now.Add(-lookback), now, now.Add(-abortWindow-time.Minute))
		for _, err := range errs {
			s.log.Error("escrow reconcile: a custodian's inventory", "err", err)
		}
		for _, f := range findings {
			s.log.Warn("escrow reconcile: a custodian disagrees with the escrows recorded", "custodian", f.Custodian, "kind", f.Kind,
				"escrow_id", f.EscrowID, "detail", f.Detail)
		}
		s.metrics.reconciled(s.names(), findings, len(errs))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

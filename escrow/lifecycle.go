package escrow

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mediatorhq/mediator/audit"
)

// Audit entry kinds of the lifecycle.
const (
	KindDestroy     = "escrow.destroy"
	KindHold        = "escrow.legal_hold"
	KindHoldRelease = "escrow.legal_hold_release"
)

// DestroyReport says what a destruction run did.
type DestroyReport struct {
	Destroyed []string          // escrow ids whose shares are gone everywhere
	Held      []string          // escrow ids kept because of a legal hold
	Failed    map[string]string // escrow id → why (some custodian could not destroy); retried next run
}

// Destroy destroys, in every custodian, the shares of each escrow deposited
// before `before`, unless its conversation is under a legal hold, and marks
// it destroyed with an escrow.destroy audit entry. An escrow is marked only
// when every custodian confirmed; otherwise it is reported and left for the
// next run. Destroyed means unrecoverable: Reconstruct fails.
func (s *Service) Destroy(ctx context.Context, before time.Time) (DestroyReport, error) {
	rep := DestroyReport{Failed: map[string]string{}}
	due, held, err := s.rows.DueForDestruction(ctx, before)
	if err != nil {
		return rep, err
	}
	rep.Held = held
	for _, rec := range due {
		if errs := s.destroyShares(ctx, rec.EscrowID); len(errs) > 0 {
			rep.Failed[rec.EscrowID] = errors.Join(errs...).Error()
			continue
		}
		if err := s.rows.MarkDestroyed(ctx, rec); err != nil {
			rep.Failed[rec.EscrowID] = err.Error()
			continue
		}
		s.log.Info("escrow destroyed at retention end", "escrow_id", rec.EscrowID)
		rep.Destroyed = append(rep.Destroyed, rec.EscrowID)
	}
	return rep, nil
}

// DueForDestruction implements Rows.
func (r *PGRows) DueForDestruction(ctx context.Context, before time.Time) ([]Receipt, []string, error) {
	due, err := r.receipts(ctx, selectReceipt+`WHERE a.created_at < $1 AND d.escrow_id IS NULL ORDER BY a.created_at`, before)
	if err != nil {
		return nil, nil, err
	}
	var free []Receipt
	var held []string
	for _, rec := range due {
		on, err := r.onHold(ctx, rec.ConversationID)
		if err != nil {
			return nil, nil, err
		}
		if on {
			held = append(held, rec.EscrowID)
		} else {
			free = append(free, rec)
		}
	}
	return free, held, nil
}

func (r *PGRows) onHold(ctx context.Context, conversationID string) (bool, error) {
	var n int
	err := r.pool.QueryRow(ctx, `SELECT count(*) FROM legal_holds h LEFT JOIN legal_hold_releases x USING (hold_id)
		WHERE h.conversation_id = $1 AND x.hold_id IS NULL`, conversationID).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("escrow: legal holds: %w", err)
	}
	return n > 0, nil
}

// MarkDestroyed implements Rows.
func (r *PGRows) MarkDestroyed(ctx context.Context, rec Receipt) error {
	return r.inTx(ctx, func(tx pgx.Tx) error {
		seq, err := r.auditTx(ctx, tx, audit.Entry{Kind: KindDestroy, ConversationID: rec.ConversationID,
			Record: map[string]any{"kind": KindDestroy, "escrow_id": rec.EscrowID, "conversation_id": rec.ConversationID,
				"key_id": rec.KeyID, "custodians": rec.Custodians}})
		if err != nil {
			return err
		}
		if _, err = tx.Exec(ctx, "INSERT INTO escrow_destructions (escrow_id, audit_seq) VALUES ($1, $2)", rec.EscrowID, seq); err != nil {
			return fmt.Errorf("escrow: record destruction: %w", err)
		}
		return nil
	})
}

// PlaceHold puts conversationID under a legal hold and returns the hold id.
func (r *PGRows) PlaceHold(ctx context.Context, conversationID, reason, by string) (string, error) {
	if conversationID == "" || len(conversationID) > maxIDLen || reason == "" || len(reason) > 500 || by == "" {
		return "", &ValidationError{Field: "hold", Reason: "needs a conversation id, a reason (≤ 500 chars) and who places it"}
	}
	id, err := newEscrowID()
	if err != nil {
		return "", err
	}
	err = r.inTx(ctx, func(tx pgx.Tx) error {
		seq, err := r.auditTx(ctx, tx, audit.Entry{Kind: KindHold, ConversationID: conversationID,
			Record: map[string]any{"kind": KindHold, "hold_id": id, "conversation_id": conversationID, "reason": reason, "placed_by": by}})
		if err != nil {
			return err
		}
		if _, err = tx.Exec(ctx, "INSERT INTO legal_holds (hold_id, conversation_id, reason, placed_by, audit_seq) VALUES ($1, $2, $3, $4, $5)",
			id, conversationID, reason, by, seq); err != nil {
			return fmt.Errorf("escrow: record legal hold: %w", err)
		}
		return nil
	})
	return id, err
}

// ReleaseHold releases a legal hold.
func (r *PGRows) ReleaseHold(ctx context.Context, holdID, by string) error {
	return r.inTx(ctx, func(tx pgx.Tx) error {
		var convo string
		err := tx.QueryRow(ctx, `SELECT h.conversation_id FROM legal_holds h LEFT JOIN legal_hold_releases x USING (hold_id)
			WHERE h.hold_id = $1 AND x.hold_id IS NULL`, holdID).Scan(&convo)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: no active hold %s", ErrNotFound, holdID)
		}
		if err != nil {
			return fmt.Errorf("escrow: legal hold: %w", err)
		}
		seq, err := r.auditTx(ctx, tx, audit.Entry{Kind: KindHoldRelease, ConversationID: convo,
			Record: map[string]any{"kind": KindHoldRelease, "hold_id": holdID, "conversation_id": convo, "released_by": by}})
		if err != nil {
			return err
		}
		if _, err = tx.Exec(ctx, "INSERT INTO legal_hold_releases (hold_id, released_by, audit_seq) VALUES ($1, $2, $3)", holdID, by, seq); err != nil {
			return fmt.Errorf("escrow: record legal hold release: %w", err)
		}
		return nil
	})
}

func (r *PGRows) inTx(ctx context.Context, f func(pgx.Tx) error) error {
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("escrow: begin: %w", err)
	}
	defer tx.Rollback(ctx)
	if err := f(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("escrow: commit: %w", err)
	}
	return nil
}

func (r *PGRows) auditTx(ctx context.Context, tx pgx.Tx, e audit.Entry) (int64, error) {
	a, err := r.audit.AppendTx(ctx, tx, []audit.Entry{e})
	if err != nil {
		return 0, err
	}
	return a[0].Seq, nil
}

// RetentionSweepInterval is how often RunRetention looks for escrows past
// retention: destruction is not urgent to the minute, only certain.
const RetentionSweepInterval = time.Hour

// RunRetention destroys the escrows older than retention now and then every
// RetentionSweepInterval, until ctx ends, logging what each sweep did.
func (s *Service) RunRetention(ctx context.Context, retention time.Duration) {
	t := time.NewTicker(RetentionSweepInterval)
	defer t.Stop()
	for {
		rep, err := s.Destroy(ctx, time.Now().Add(-retention))
		if err != nil {
			s.log.Error("escrow retention sweep failed", "err", err)
		} else if len(rep.Destroyed)+len(rep.Failed) > 0 {
			s.log.Info("escrow retention sweep", "destroyed", len(rep.Destroyed), "held", len(rep.Held), "failed", len(rep.Failed))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

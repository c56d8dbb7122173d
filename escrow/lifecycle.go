package escrow

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/mediatorhq/mediator/audit"
	"github.com/mediatorhq/mediator/invalid"
	"github.com/mediatorhq/mediator/redact"
	"github.com/mediatorhq/mediator/shares"
	"github.com/mediatorhq/mediator/wire"
)

// Audit entry kinds of the lifecycle.
const (
	KindDestroy     = "escrow.destroy"
	KindHold        = "escrow.legal_hold"
	KindHoldRelease = "escrow.legal_hold_release"
)

// DestroyReport says what a destruction run did.
type DestroyReport struct {
	Destroyed []string          // escrow ids whose shares are gone at every custodian
	Held      []string          // escrow ids kept because of a legal hold
	Failed    map[string]string // escrow id → why (a custodian did not destroy); retried next run
}

// Destroy has every custodian destroy its share of each escrow deposited
// before `before`, unless its conversation is under a legal hold, and marks
// it destroyed with an escrow.destroy audit entry once every custodian
// confirmed; otherwise it is reported and left for the next run. The hold
// is checked for each escrow right before its shares are destroyed, under a
// per-conversation lock that placing a hold also takes, so a hold placed
// while a run is going protects every escrow the run has not yet reached.
// Each custodian also checks its own records: its own minimum retention,
// and the holds it was told of (which are sent to it again first).
func (s *Service) Destroy(ctx context.Context, before time.Time) (DestroyReport, error) {
	rep := DestroyReport{Failed: map[string]string{}}
	if len(s.remotes) == 0 {
		return rep, nil
	}
	holds, err := s.lifecycle.ActiveHolds(ctx)
	if err != nil {
		return rep, err
	}
	for _, h := range holds {
		if err := s.tellHold(ctx, wire.Hold{HoldID: h.ID, ConversationID: h.ConversationID}); err != nil {
			return rep, fmt.Errorf("%w: custodians must know every hold before anything is destroyed: %w", ErrUnavailable, err)
		}
	}
	due, held, err := s.lifecycle.DueForDestruction(ctx, before)
	if err != nil {
		return rep, err
	}
	rep.Held = held
	for _, rec := range due {
		err := s.lifecycle.WithConversationLock(ctx, rec.ConversationID, func(onHold bool) error {
			if onHold {
				rep.Held = append(rep.Held, rec.EscrowID)
				return errHeldNow
			}
			return s.destroyShares(ctx, rec)
		}, rec)
		switch {
		case errors.Is(err, errHeldNow):
		case err != nil:
			rep.Failed[rec.EscrowID] = err.Error()
		default:
			s.log.Info("escrow destroyed at retention end", "escrow_id", rec.EscrowID)
			rep.Destroyed = append(rep.Destroyed, rec.EscrowID)
		}
	}
	return rep, nil
}

// DestroyPlan is what a destruction run before a time would do, as the
// database says now: read only, it changes nothing and asks no custodian.
type DestroyPlan struct {
	Before time.Time
	// Due counts the live escrows (one key each) deposited before Before
	// whose conversation is under no active legal hold: what the run
	// asks the custodians to destroy. Conversations counts their
	// conversations; Oldest and Newest are their deposit times (zero
	// when Due is 0).
	Due, Conversations int
	Oldest, Newest     time.Time
	// Held counts the live escrows deposited before Before that an
	// active legal hold keeps, of HeldConversations conversations.
	Held, HeldConversations int
	// Custodians are those asked to destroy their shares, in set order;
	// none when this mediator has no custodians (a run destroys nothing).
	Custodians []string
}

// PlanDestroy says what Destroy(ctx, before) would do now, without doing
// any of it. Each custodian still checks its own minimum retention and
// the holds it holds when asked.
func (s *Service) PlanDestroy(ctx context.Context, before time.Time) (DestroyPlan, error) {
	p, err := s.lifecycle.PlanDestruction(ctx, before)
	if err != nil {
		return DestroyPlan{}, err
	}
	p.Before = before
	if len(s.remotes) > 0 {
		p.Custodians = s.names()
	}
	return p, nil
}

// HoldRecord is a legal hold as the mediator records it.
type HoldRecord struct {
	ID, ConversationID, Reason, PlacedBy string
	PlacedAt                             time.Time
	// ReleasedBy and ReleasedAt are set once the mediator recorded the
	// hold's release.
	ReleasedBy string
	ReleasedAt time.Time
	// OtherActive counts the other active holds on the conversation,
	// which keep it held whatever becomes of this one.
	OtherActive int
}

// Released reports whether the mediator recorded the hold's release.
func (h HoldRecord) Released() bool { return !h.ReleasedAt.IsZero() }

// HoldRecord returns the hold with id; ErrNotFound if there is none.
func (s *Service) HoldRecord(ctx context.Context, id string) (HoldRecord, error) {
	return s.lifecycle.HoldRecord(ctx, id)
}

// errHeldNow: a hold was placed after the run read the due escrows.
var errHeldNow = errors.New("escrow: held")

// destroyShares has every custodian destroy its share of rec; it succeeds
// only when each says destroyed (or that it has none).
func (s *Service) destroyShares(ctx context.Context, rec Escrow) error {
	errs := make([]error, len(s.remotes))
	var wg sync.WaitGroup
	for i, r := range s.remotes {
		loc := locatorOf(rec, r.Name)
		if loc == "" {
			continue
		}
		wg.Go(func() {
			t0 := time.Now()
			res, err := r.Destroy(ctx, []wire.ShareRef{{EscrowID: rec.EscrowID, Locator: loc}})
			if err == nil && res[0].Outcome != "destroyed" && res[0].Outcome != "not_found" {
				err = fmt.Errorf("custodian %s: %s", r.Name, res[0].Outcome)
			}
			s.metrics.custodian(r.Name, "destroy", err, time.Since(t0))
			errs[i] = err
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// locatorOf returns where custodian keeps its share of rec, from its
// deposit receipt.
func locatorOf(rec Escrow, custodian string) string {
	for _, s := range rec.Shares {
		if s.Receipt.Custodian == custodian {
			return s.Receipt.Locator
		}
	}
	return ""
}

// Hold is an active legal hold.
type Hold struct {
	ID             string
	ConversationID string
}

// PlaceHold puts conversationID under a legal hold, recorded with its
// audit entry, and tells every custodian. It returns the hold id. A
// custodian that cannot be told now is told again before the next
// destruction run (which stops if it still cannot be).
func (s *Service) PlaceHold(ctx context.Context, conversationID, reason, by string) (string, error) {
	if !shares.ValidID(conversationID) || reason == "" || len(reason) > 500 || by == "" {
		return "", invalid.Input("hold", "needs a conversation id, a reason (≤ 500 chars) and who places it")
	}
	if !redact.NamesConversation(conversationID) {
		return "", invalid.Coded(redact.CodeNotAPseudonym, "conversation_id", "must be the conversation's pseudonym (ps1_…), as deposits and requests name it")
	}
	id := uuid.NewString()
	if err := s.lifecycle.PlaceHold(ctx, id, conversationID, reason, by); err != nil {
		return "", err
	}
	if err := s.tellHold(ctx, wire.Hold{HoldID: id, ConversationID: conversationID}); err != nil {
		s.log.Warn("legal hold recorded but not yet at every custodian; it is sent again before the next destruction run",
			append([]any{"hold_id", id}, failureAttrs(err)...)...)
	}
	return id, nil
}

// ReleaseHold records a legal hold's release at the mediator, with its
// audit entry, so that the mediator's own destruction run no longer skips
// the conversation. It tells no custodian: each keeps the hold, and
// refuses to destroy the conversation's shares, until approvers who meet
// the roster's rule sign its lift and deliver it to the custodian
// themselves (POST /v1/holds/signed; mediator escrow hold-lift). A
// custodian refuses a lift with the mediator's token alone, so a
// compromised mediator cannot lift a hold.
func (s *Service) ReleaseHold(ctx context.Context, holdID, by string) error {
	return s.lifecycle.ReleaseHold(ctx, holdID, by)
}

// tellHold sends a hold to every custodian: a placement, which the
// mediator's token may make; custodians refuse a lift by it.
func (s *Service) tellHold(ctx context.Context, h wire.Hold) error {
	errs := make([]error, len(s.remotes))
	var wg sync.WaitGroup
	for i, r := range s.remotes {
		wg.Go(func() { errs[i] = r.Hold(ctx, h) })
	}
	wg.Wait()
	return errors.Join(errs...)
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

// DueForDestruction implements LifecycleRows.
func (r *PGRows) DueForDestruction(ctx context.Context, before time.Time) ([]Escrow, []string, error) {
	due, err := r.escrows(ctx, selectEscrow+`WHERE a.created_at < $1 AND d.escrow_id IS NULL ORDER BY a.created_at`, before)
	if err != nil {
		return nil, nil, err
	}
	holds, err := r.ActiveHolds(ctx)
	if err != nil {
		return nil, nil, err
	}
	onHold := make(map[string]bool, len(holds))
	for _, h := range holds {
		onHold[h.ConversationID] = true
	}
	var free []Escrow
	var held []string
	for _, rec := range due {
		if onHold[rec.ConversationID] {
			held = append(held, rec.EscrowID)
		} else {
			free = append(free, rec)
		}
	}
	return free, held, nil
}

// PlanDestruction implements LifecycleRows, in one read-only
// transaction.
func (r *PGRows) PlanDestruction(ctx context.Context, before time.Time) (DestroyPlan, error) {
	var p DestroyPlan
	var oldest, newest *time.Time
	err := pgx.BeginTxFunc(ctx, r.pool, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `WITH due AS (
			SELECT k.conversation_id, a.created_at, EXISTS (SELECT 1 FROM legal_holds h LEFT JOIN legal_hold_releases x USING (hold_id)
				WHERE h.conversation_id = k.conversation_id AND x.hold_id IS NULL) AS held
			FROM escrow_keys k JOIN escrow_deposit_audit a USING (escrow_id) LEFT JOIN escrow_destructions d USING (escrow_id)
			WHERE a.created_at < $1 AND d.escrow_id IS NULL)
			SELECT count(*) FILTER (WHERE NOT held), count(DISTINCT conversation_id) FILTER (WHERE NOT held),
				min(created_at) FILTER (WHERE NOT held), max(created_at) FILTER (WHERE NOT held),
				count(*) FILTER (WHERE held), count(DISTINCT conversation_id) FILTER (WHERE held)
			FROM due`, before).Scan(&p.Due, &p.Conversations, &oldest, &newest, &p.Held, &p.HeldConversations)
	})
	if err != nil {
		return DestroyPlan{}, fmt.Errorf("escrow: plan destruction: %w", err)
	}
	if oldest != nil && newest != nil {
		p.Oldest, p.Newest = *oldest, *newest
	}
	return p, nil
}

// HoldRecord implements LifecycleRows.
func (r *PGRows) HoldRecord(ctx context.Context, id string) (HoldRecord, error) {
	if _, err := uuid.Parse(id); err != nil {
		return HoldRecord{}, fmt.Errorf("%w: no hold %s", ErrNotFound, id)
	}
	var h HoldRecord
	var releasedBy *string
	var releasedAt *time.Time
	err := r.pool.QueryRow(ctx, `SELECT h.hold_id::text, h.conversation_id, h.reason, h.placed_by, h.placed_at, x.released_by, x.released_at,
		(SELECT count(*) FROM legal_holds o LEFT JOIN legal_hold_releases ox USING (hold_id)
			WHERE o.conversation_id = h.conversation_id AND o.hold_id <> h.hold_id AND ox.hold_id IS NULL)
		FROM legal_holds h LEFT JOIN legal_hold_releases x USING (hold_id) WHERE h.hold_id = $1`, id).
		Scan(&h.ID, &h.ConversationID, &h.Reason, &h.PlacedBy, &h.PlacedAt, &releasedBy, &releasedAt, &h.OtherActive)
	if errors.Is(err, pgx.ErrNoRows) {
		return HoldRecord{}, fmt.Errorf("%w: no hold %s", ErrNotFound, id)
	}
	if err != nil {
		return HoldRecord{}, fmt.Errorf("escrow: legal hold: %w", err)
	}
	if releasedBy != nil && releasedAt != nil {
		h.ReleasedBy, h.ReleasedAt = *releasedBy, *releasedAt
	}
	return h, nil
}

// ActiveHolds implements LifecycleRows.
func (r *PGRows) ActiveHolds(ctx context.Context) ([]Hold, error) {
	rows, err := r.pool.Query(ctx, `SELECT h.hold_id::text, h.conversation_id FROM legal_holds h
		LEFT JOIN legal_hold_releases x USING (hold_id) WHERE x.hold_id IS NULL ORDER BY h.placed_at`)
	if err != nil {
		return nil, fmt.Errorf("escrow: legal holds: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Hold])
	if err != nil {
		return nil, fmt.Errorf("escrow: legal holds: %w", err)
	}
	return out, nil
}

// conversationLock is the advisory lock key of a conversation's holds and
// destructions: both take it, so they serialise per conversation.
func conversationLock(conversationID string) int64 {
	h := fnv.New64a()
	h.Write([]byte("mediator-escrow-conversation\x00" + conversationID))
	return int64(h.Sum64())
}

// WithConversationLock runs destroy for rec in a transaction that holds
// rec's conversation lock, telling it whether the conversation is under an
// active hold as of now; if destroy succeeds, rec is marked destroyed
// (escrow_destructions and its escrow.destroy audit entry) in the same
// transaction.
func (r *PGRows) WithConversationLock(ctx context.Context, conversationID string, destroy func(onHold bool) error, rec Escrow) error {
	return r.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", conversationLock(conversationID)); err != nil {
			return fmt.Errorf("escrow: conversation lock: %w", err)
		}
		var held bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM legal_holds h LEFT JOIN legal_hold_releases x USING (hold_id)
			WHERE h.conversation_id = $1 AND x.hold_id IS NULL)`, conversationID).Scan(&held); err != nil {
			return fmt.Errorf("escrow: legal holds: %w", err)
		}
		if err := destroy(held); err != nil {
			return err
		}
		return r.markDestroyed(ctx, tx, rec)
	})
}

// markDestroyed records that rec's shares are gone, with its
// escrow.destroy audit entry, in tx.
func (r *PGRows) markDestroyed(ctx context.Context, tx pgx.Tx, rec Escrow) error {
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
}

// PlaceHold records a hold on conversationID, under the conversation's
// lock, with its audit entry.
func (r *PGRows) PlaceHold(ctx context.Context, id, conversationID, reason, by string) error {
	return r.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", conversationLock(conversationID)); err != nil {
			return fmt.Errorf("escrow: conversation lock: %w", err)
		}
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
}

// ReleaseHold records a hold's release with its audit entry.
func (r *PGRows) ReleaseHold(ctx context.Context, holdID, by string) error {
	if _, err := uuid.Parse(holdID); err != nil {
		return fmt.Errorf("%w: no active hold %s", ErrNotFound, holdID)
	}
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

package escrow

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediatorhq/mediator/audit"
	"github.com/mediatorhq/mediator/batch"
)

// Rows keeps escrow metadata.
type Rows interface {
	// Insert records rec and its escrow.deposit audit entry in one
	// transaction and returns rec with AuditSeq and CreatedAt set. It
	// returns errDuplicateKeyID if the (conversation, key id) is taken.
	Insert(ctx context.Context, rec Receipt) (Receipt, error)
	ByKeyID(ctx context.Context, conversationID, keyID string) (Receipt, error)
	ByID(ctx context.Context, id string) (Receipt, error)
	// DueForDestruction returns live escrows deposited before `before`,
	// split into those free to destroy and the ids of those whose
	// conversation is under a legal hold.
	DueForDestruction(ctx context.Context, before time.Time) ([]Receipt, []string, error)
	// MarkDestroyed records that rec's shares are gone, with an
	// escrow.destroy audit entry, in one transaction.
	MarkDestroyed(ctx context.Context, rec Receipt) error
	// RecordRewrap records the hash of a re-wrapped share before the share
	// is replaced; RewrapHashes returns the recorded hashes.
	RecordRewrap(ctx context.Context, escrowID string, index int, hash []byte) error
	RewrapHashes(ctx context.Context, escrowID string, index int) ([][]byte, error)
	// Live returns every escrow not destroyed.
	Live(ctx context.Context) ([]Receipt, error)
	// InScope returns the live escrows of the given conversations
	// deposited within [from, to].
	InScope(ctx context.Context, conversationIDs []string, from, to time.Time) ([]Receipt, error)
}

var errDuplicateKeyID = errors.New("escrow: duplicate key id")

// PGRows is Rows in PostgreSQL, with audit entries in the same transaction.
// Concurrent deposits are group-committed: their rows and audit entries go
// in one transaction, so the audit sequencer lock and the commit are paid
// once per group rather than once per deposit.
type PGRows struct {
	pool    *pgxpool.Pool
	audit   *audit.Store
	inserts *batch.Queue[Receipt, insertResult]
}

type insertResult struct {
	rec Receipt
	err error
}

// depositGroupMax bounds one group-commit transaction of deposits.
const depositGroupMax = 256

// depositCommitTimeout bounds one group transaction: far above a healthy
// commit, below the HTTP server's write timeout.
const depositCommitTimeout = 30 * time.Second

// NewPGRows returns the escrow rows in pool, logging to store.
func NewPGRows(pool *pgxpool.Pool, store *audit.Store) *PGRows {
	r := &PGRows{pool: pool, audit: store}
	r.inserts = &batch.Queue[Receipt, insertResult]{Fn: r.insertGroup, Max: depositGroupMax, Timeout: depositCommitTimeout}
	return r
}

// depositRecord is the audit record of a deposit: ids and the commitment,
// never key material.
type depositRecord struct {
	Kind           string   `json:"kind"`
	EscrowID       string   `json:"escrow_id"`
	ConversationID string   `json:"conversation_id"`
	KeyID          string   `json:"key_id"`
	Threshold      int      `json:"threshold"`
	Shares         int      `json:"shares"`
	Custodians     []string `json:"custodians"`
	KeyCommitment  string   `json:"key_commitment"`
}

// KindDeposit is the audit entry kind of a deposit.
const KindDeposit = "escrow.deposit"

// Insert implements Rows. It returns once the transaction holding rec has
// committed.
func (r *PGRows) Insert(ctx context.Context, rec Receipt) (Receipt, error) {
	res, err := r.inserts.Do(ctx, rec)
	if err != nil {
		return Receipt{}, err
	}
	return res.rec, res.err
}

// insertGroup records recs and their audit entries in one transaction. A rec
// whose (conversation, key id) is taken, by an earlier deposit or earlier
// in the group, gets errDuplicateKeyID and no audit entry; the others
// commit. Any other failure fails the group.
func (r *PGRows) insertGroup(ctx context.Context, recs []Receipt) ([]insertResult, error) {
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("escrow: begin: %w", err)
	}
	defer tx.Rollback(ctx)
	// The rows first, before the sequencer lock is taken, in one round trip.
	rows := &pgx.Batch{}
	for _, rec := range recs {
		rows.Queue(`INSERT INTO escrow_keys
			(escrow_id, conversation_id, key_id, threshold, shares, custodians, key_commitment, share_hashes)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			ON CONFLICT (conversation_id, key_id) DO NOTHING`,
			rec.EscrowID, rec.ConversationID, rec.KeyID, rec.Threshold, rec.Shares, rec.Custodians, rec.KeyCommitment, rec.shareHashes)
	}
	br := tx.SendBatch(ctx, rows)
	out := make([]insertResult, len(recs))
	var kept []int
	for i := range recs {
		tag, err := br.Exec()
		if err != nil {
			br.Close()
			return nil, fmt.Errorf("escrow: insert: %w", err)
		}
		if tag.RowsAffected() == 0 {
			out[i].err = errDuplicateKeyID
			continue
		}
		kept = append(kept, i)
	}
	if err := br.Close(); err != nil {
		return nil, fmt.Errorf("escrow: insert: %w", err)
	}
	if len(kept) == 0 {
		return out, nil
	}
	entries := make([]audit.Entry, len(kept))
	for j, i := range kept {
		rec := recs[i]
		entries[j] = audit.Entry{Kind: KindDeposit, ConversationID: rec.ConversationID,
			Record: depositRecord{Kind: KindDeposit, EscrowID: rec.EscrowID, ConversationID: rec.ConversationID, KeyID: rec.KeyID,
				Threshold: rec.Threshold, Shares: rec.Shares, Custodians: rec.Custodians, KeyCommitment: rec.KeyCommitment}}
	}
	appended, err := r.audit.AppendTx(ctx, tx, entries)
	if err != nil {
		return nil, err
	}
	links := &pgx.Batch{}
	for j, i := range kept {
		links.Queue(`INSERT INTO escrow_deposit_audit (escrow_id, audit_seq) VALUES ($1, $2) RETURNING created_at`,
			recs[i].EscrowID, appended[j].Seq)
	}
	br = tx.SendBatch(ctx, links)
	for j, i := range kept {
		rec := recs[i]
		rec.AuditSeq = appended[j].Seq
		if err := br.QueryRow().Scan(&rec.CreatedAt); err != nil {
			br.Close()
			return nil, fmt.Errorf("escrow: link audit entry: %w", err)
		}
		out[i].rec = rec
	}
	if err := br.Close(); err != nil {
		return nil, fmt.Errorf("escrow: link audit entry: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("escrow: commit: %w", err)
	}
	return out, nil
}

const selectReceipt = `SELECT k.escrow_id, k.conversation_id, k.key_id, k.threshold, k.shares, k.custodians,
	k.key_commitment, k.share_hashes, a.audit_seq, a.created_at, d.escrow_id IS NOT NULL
	FROM escrow_keys k JOIN escrow_deposit_audit a USING (escrow_id)
	LEFT JOIN escrow_destructions d USING (escrow_id) `

// ByKeyID implements Rows.
func (r *PGRows) ByKeyID(ctx context.Context, conversationID, keyID string) (Receipt, error) {
	return scanReceipt(r.pool.QueryRow(ctx, selectReceipt+"WHERE k.conversation_id = $1 AND k.key_id = $2", conversationID, keyID))
}

// ByID implements Rows.
func (r *PGRows) ByID(ctx context.Context, id string) (Receipt, error) {
	return scanReceipt(r.pool.QueryRow(ctx, selectReceipt+"WHERE k.escrow_id = $1", id))
}

func scanReceipt(row pgx.Row) (Receipt, error) {
	var rec Receipt
	var created time.Time
	err := row.Scan(&rec.EscrowID, &rec.ConversationID, &rec.KeyID, &rec.Threshold, &rec.Shares, &rec.Custodians,
		&rec.KeyCommitment, &rec.shareHashes, &rec.AuditSeq, &created, &rec.destroyed)
	if errors.Is(err, pgx.ErrNoRows) {
		return Receipt{}, ErrNotFound
	}
	if err != nil {
		return Receipt{}, fmt.Errorf("escrow: read: %w", err)
	}
	rec.CreatedAt = created
	return rec, nil
}

// RecordRewrap implements Rows.
func (r *PGRows) RecordRewrap(ctx context.Context, escrowID string, index int, hash []byte) error {
	_, err := r.pool.Exec(ctx, `INSERT INTO escrow_share_rewraps (escrow_id, share_index, share_hash) VALUES ($1, $2, $3)
		ON CONFLICT DO NOTHING`, escrowID, index, hash)
	if err != nil {
		return fmt.Errorf("escrow: record rewrap: %w", err)
	}
	return nil
}

// RewrapHashes implements Rows.
func (r *PGRows) RewrapHashes(ctx context.Context, escrowID string, index int) ([][]byte, error) {
	rows, err := r.pool.Query(ctx, "SELECT share_hash FROM escrow_share_rewraps WHERE escrow_id = $1 AND share_index = $2", escrowID, index)
	if err != nil {
		return nil, fmt.Errorf("escrow: rewrap hashes: %w", err)
	}
	hs, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return nil, fmt.Errorf("escrow: rewrap hashes: %w", err)
	}
	return hs, nil
}

// Live implements Rows.
func (r *PGRows) Live(ctx context.Context) ([]Receipt, error) {
	return r.receipts(ctx, selectReceipt+"WHERE d.escrow_id IS NULL ORDER BY a.created_at")
}

// InScope implements Rows.
func (r *PGRows) InScope(ctx context.Context, conversationIDs []string, from, to time.Time) ([]Receipt, error) {
	return r.receipts(ctx, selectReceipt+`WHERE d.escrow_id IS NULL AND k.conversation_id = ANY($1)
		AND a.created_at BETWEEN $2 AND $3 ORDER BY k.conversation_id, a.created_at, k.key_id`, conversationIDs, from, to)
}

func (r *PGRows) receipts(ctx context.Context, query string, args ...any) ([]Receipt, error) {
	rows, err := r.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("escrow: list escrows: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Receipt, error) { return scanReceipt(row) })
	if err != nil {
		return nil, fmt.Errorf("escrow: list escrows: %w", err)
	}
	return out, nil
}

package escrow

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediatorhq/mediator/audit"
	"github.com/mediatorhq/mediator/batch"
	"github.com/mediatorhq/mediator/shares"
)

// DepositRows keeps the record of what is escrowed: each escrow with its
// custodians' receipts and its escrow.deposit audit entry.
type DepositRows interface {
	// Insert records rec, its custodians' receipts and its escrow.deposit
	// audit entry in one transaction and returns rec with AuditSeq and
	// CreatedAt set. It returns errDuplicateKeyID if the depositor's
	// (conversation, key id) is taken.
	Insert(ctx context.Context, rec Escrow) (Escrow, error)
	ByKeyID(ctx context.Context, depositor, conversationID, keyID string) (Escrow, error)
	ByID(ctx context.Context, id string) (Escrow, error)
	// ByIDs returns the escrows of ids that exist, destroyed or not.
	ByIDs(ctx context.Context, ids []string) ([]Escrow, error)
	// InScope returns the live escrows of the given conversations
	// deposited within [from, to].
	InScope(ctx context.Context, conversationIDs []string, from, to time.Time) ([]Escrow, error)
	// KeysInScope returns the same escrows as InScope, as a release
	// counts them (ScopeKey), in escrow id order.
	KeysInScope(ctx context.Context, conversationIDs []string, from, to time.Time) ([]ScopeKey, error)
}

// LifecycleRows keeps what ends an escrow: destruction at retention end
// and the legal holds that prevent it, each with its audit entry.
type LifecycleRows interface {
	// DueForDestruction returns live escrows deposited before `before`,
	// split into those free to destroy and the ids of those whose
	// conversation is under a legal hold.
	DueForDestruction(ctx context.Context, before time.Time) ([]Escrow, []string, error)
	// WithConversationLock runs destroy under the conversation's lock,
	// telling it whether the conversation is on hold now, and marks rec
	// destroyed, with its escrow.destroy audit entry, in the same
	// transaction if destroy succeeds.
	WithConversationLock(ctx context.Context, conversationID string, destroy func(onHold bool) error, rec Escrow) error
	// PlaceHold and ReleaseHold record a legal hold and its release, with
	// their audit entries; a hold takes the conversation's lock.
	PlaceHold(ctx context.Context, id, conversationID, reason, by string) error
	ReleaseHold(ctx context.Context, holdID, by string) error
	// ActiveHolds returns the legal holds not released.
	ActiveHolds(ctx context.Context) ([]Hold, error)
	// PlanDestruction counts what DueForDestruction(before) would return,
	// reading only (DestroyPlan, without its custodians).
	PlanDestruction(ctx context.Context, before time.Time) (DestroyPlan, error)
	// HoldRecord returns a legal hold, released or not; ErrNotFound if
	// there is none.
	HoldRecord(ctx context.Context, id string) (HoldRecord, error)
}

var errDuplicateKeyID = errors.New("escrow: duplicate key id")

// PGRows keeps escrows in PostgreSQL, with audit entries in the same
// transaction. It implements DepositRows and LifecycleRows.
// Concurrent deposits are group-committed: their rows and audit entries go
// in one transaction, so the audit sequencer lock and the commit are paid
// once per group rather than once per deposit.
type PGRows struct {
	pool    *pgxpool.Pool
	audit   audit.TxAppender
	inserts *batch.Queue[Escrow, insertResult]
}

type insertResult struct {
	rec Escrow
	err error
}

// depositGroupMax bounds one group-commit transaction of deposits.
const depositGroupMax = 256

// depositCommitTimeout bounds one group transaction: far above a healthy
// commit, below the HTTP server's write timeout.
const depositCommitTimeout = 30 * time.Second

// NewPGRows returns the escrow rows in pool, logging to store.
func NewPGRows(pool *pgxpool.Pool, store audit.TxAppender) *PGRows {
	r := &PGRows{pool: pool, audit: store}
	r.inserts = &batch.Queue[Escrow, insertResult]{Fn: r.insertGroup, Max: depositGroupMax, Timeout: depositCommitTimeout}
	return r
}

// depositRecord is the audit record of a deposit: ids, the commitment, the
// depositor, and each custodian's share by the hash of what it was given
// and of its signed receipt. Never key material.
type depositRecord struct {
	Kind           string         `json:"kind"`
	EscrowID       string         `json:"escrow_id"`
	ConversationID string         `json:"conversation_id"`
	KeyID          string         `json:"key_id"`
	Threshold      int            `json:"threshold"`
	KeyCommitment  string         `json:"key_commitment"`
	Depositor      string         `json:"depositor"`
	CustodianSet   string         `json:"custodian_set"`
	Shares         []shareLogItem `json:"shares"`
}

type shareLogItem struct {
	Custodian     string `json:"custodian"`
	Index         int    `json:"index"`
	SealedSHA256  string `json:"sealed_sha256"`
	ReceiptSHA256 string `json:"receipt_sha256"`
}

// KindDeposit is the audit entry kind of a deposit.
const KindDeposit = "escrow.deposit"

// Insert implements DepositRows. It returns once the transaction holding rec has
// committed.
func (r *PGRows) Insert(ctx context.Context, rec Escrow) (Escrow, error) {
	res, err := r.inserts.Do(ctx, rec)
	if err != nil {
		return Escrow{}, err
	}
	return res.rec, res.err
}

// insertGroup records recs and their audit entries in one transaction. A rec
// whose (conversation, key id) is taken, by an earlier deposit or earlier
// in the group, gets errDuplicateKeyID and no audit entry; the others
// commit. Any other failure fails the group.
func (r *PGRows) insertGroup(ctx context.Context, recs []Escrow) ([]insertResult, error) {
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("escrow: begin: %w", err)
	}
	defer tx.Rollback(ctx)
	// The rows first, before the sequencer lock is taken, in one round trip.
	rows := &pgx.Batch{}
	for _, rec := range recs {
		hashes := make([][]byte, len(rec.Shares))
		for i, s := range rec.Shares {
			hashes[i] = hexBytes(s.Receipt.SealedSHA256)
		}
		rows.Queue(`INSERT INTO escrow_keys
			(escrow_id, conversation_id, key_id, threshold, shares, custodians, key_commitment, share_hashes, depositor, custodian_set)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
			ON CONFLICT ((coalesce(depositor, '')), conversation_id, key_id) DO NOTHING`,
			rec.EscrowID, rec.ConversationID, rec.KeyID, rec.Threshold, len(rec.Custodians), rec.Custodians, rec.KeyCommitment,
			hashes, rec.Depositor, rec.CustodianSet)
	}
	out := make([]insertResult, len(recs))
	var kept []int
	err = execBatch(ctx, tx, rows, func(i int, affected int64) {
		if affected == 0 {
			out[i].err = errDuplicateKeyID
		} else {
			kept = append(kept, i)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("escrow: insert: %w", err)
	}
	if len(kept) == 0 {
		return out, nil
	}
	shareRows := &pgx.Batch{}
	entries := make([]audit.Entry, len(kept))
	for j, i := range kept {
		rec := recs[i]
		logged := depositRecord{Kind: KindDeposit, EscrowID: rec.EscrowID, ConversationID: rec.ConversationID, KeyID: rec.KeyID,
			Threshold: rec.Threshold, KeyCommitment: rec.KeyCommitment, Depositor: rec.Depositor, CustodianSet: rec.CustodianSet}
		for _, s := range rec.Shares {
			receipt, err := json.Marshal(s)
			if err != nil {
				return nil, err
			}
			shareRows.Queue(`INSERT INTO escrow_custodian_shares (escrow_id, custodian, share_index, locator, receipt) VALUES ($1, $2, $3, $4, $5)`,
				rec.EscrowID, s.Receipt.Custodian, s.Receipt.Index, s.Receipt.Locator, receipt)
			logged.Shares = append(logged.Shares, shareLogItem{Custodian: s.Receipt.Custodian, Index: s.Receipt.Index,
				SealedSHA256: s.Receipt.SealedSHA256, ReceiptSHA256: s.Hash()})
		}
		entries[j] = audit.Entry{Kind: KindDeposit, ConversationID: rec.ConversationID, Record: logged}
	}
	if err := execBatch(ctx, tx, shareRows, nil); err != nil {
		return nil, fmt.Errorf("escrow: insert custodian shares: %w", err)
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
	br := tx.SendBatch(ctx, links)
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

// execBatch sends b and calls each (if set) with each statement's index
// and rows affected.
func execBatch(ctx context.Context, tx pgx.Tx, b *pgx.Batch, each func(i int, affected int64)) error {
	br := tx.SendBatch(ctx, b)
	for i := range b.Len() {
		tag, err := br.Exec()
		if err != nil {
			br.Close()
			return err
		}
		if each != nil {
			each(i, tag.RowsAffected())
		}
	}
	return br.Close()
}

// hexBytes decodes a receipt's hex hash; a malformed one (which a checked
// receipt never has) decodes to nothing.
func hexBytes(h string) []byte {
	b, _ := hex.DecodeString(h)
	return b
}

// escrowReceipts is the column of an escrow k's custodians' receipts, in
// share order: a subquery per escrow, on escrow_custodian_shares' key.
const escrowReceipts = `coalesce((SELECT array_agg(s.receipt ORDER BY s.share_index) FROM escrow_custodian_shares s WHERE s.escrow_id = k.escrow_id), '{}')`

const selectEscrow = `SELECT k.escrow_id, k.conversation_id, k.key_id, k.threshold, k.custodians, k.key_commitment,
	coalesce(k.depositor, ''), coalesce(k.custodian_set, ''), a.audit_seq, a.created_at, d.escrow_id IS NOT NULL,
	` + escrowReceipts + `
	FROM escrow_keys k JOIN escrow_deposit_audit a USING (escrow_id)
	LEFT JOIN escrow_destructions d USING (escrow_id) `

// The reads a release makes of the escrow tables, named so that the plan
// test (plans_test.go) explains the very text the rows run. Each reads
// through LATERAL subqueries keyed by one conversation or escrow id and
// fenced with OFFSET 0, which the planner may neither flatten into a join
// it could hash nor turn into a hashed subplan: every id is a probe of an
// index, whatever pg_class and pg_statistic say of the tables
// (docs/decisions.md, "Hot queries do not depend on planner statistics").
const (
	// sqlByIDs reads escrows by id ($1, uuid[]).
	sqlByIDs = `SELECT s.* FROM (SELECT DISTINCT unnest($1::uuid[])) AS q(escrow_id)
		CROSS JOIN LATERAL (` + selectEscrow + `WHERE k.escrow_id = q.escrow_id OFFSET 0) s`
	// scopeFrom is the live escrows k, with their deposits a, of the
	// conversations $1 deposited within [$2, $3]: a release's scope.
	scopeFrom = `
		FROM (SELECT DISTINCT unnest($1::text[])) AS c(conversation_id)
		CROSS JOIN LATERAL (SELECT * FROM escrow_keys k WHERE k.conversation_id = c.conversation_id OFFSET 0) k
		CROSS JOIN LATERAL (SELECT a.audit_seq, a.created_at FROM escrow_deposit_audit a
			WHERE a.escrow_id = k.escrow_id AND a.created_at BETWEEN $2 AND $3 OFFSET 0) a
		WHERE NOT EXISTS (SELECT FROM escrow_destructions d WHERE d.escrow_id = k.escrow_id OFFSET 0)`
	// sqlInScope reads the escrows of scopeFrom, as selectEscrow does.
	sqlInScope = `SELECT k.escrow_id, k.conversation_id, k.key_id, k.threshold, k.custodians, k.key_commitment,
		coalesce(k.depositor, ''), coalesce(k.custodian_set, ''), a.audit_seq, a.created_at, false,
		` + escrowReceipts + scopeFrom + `
		ORDER BY k.conversation_id, a.created_at, k.key_id`
	// sqlKeysInScope is the scope query of a release: the escrows of
	// scopeFrom as ScopeKeys, in escrow id order.
	sqlKeysInScope = `SELECT k.escrow_id::text, k.conversation_id, k.key_id, k.key_commitment, k.threshold, k.custodians` +
		scopeFrom + `
		ORDER BY k.escrow_id`
)

// ByKeyID implements DepositRows: key ids are unique per depositor.
func (r *PGRows) ByKeyID(ctx context.Context, depositor, conversationID, keyID string) (Escrow, error) {
	return r.one(ctx, selectEscrow+"WHERE coalesce(k.depositor, '') = $1 AND k.conversation_id = $2 AND k.key_id = $3", depositor, conversationID, keyID)
}

// ByID implements DepositRows.
func (r *PGRows) ByID(ctx context.Context, id string) (Escrow, error) {
	return r.one(ctx, selectEscrow+"WHERE k.escrow_id = $1", id)
}

// ByIDs implements DepositRows, by primary key.
func (r *PGRows) ByIDs(ctx context.Context, ids []string) ([]Escrow, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err := r.pool.Query(ctx, sqlByIDs, ids)
	if err != nil {
		return nil, fmt.Errorf("escrow: read: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanEscrow)
	if err != nil {
		return nil, fmt.Errorf("escrow: read: %w", err)
	}
	return out, nil
}

func (r *PGRows) one(ctx context.Context, query string, args ...any) (Escrow, error) {
	rows, err := r.pool.Query(ctx, query, args...)
	if err != nil {
		return Escrow{}, fmt.Errorf("escrow: read: %w", err)
	}
	rec, err := pgx.CollectOneRow(rows, scanEscrow)
	if errors.Is(err, pgx.ErrNoRows) {
		return Escrow{}, ErrNotFound
	}
	if err != nil {
		return Escrow{}, fmt.Errorf("escrow: read: %w", err)
	}
	return rec, nil
}

func scanEscrow(row pgx.CollectableRow) (Escrow, error) {
	var rec Escrow
	var receipts [][]byte
	err := row.Scan(&rec.EscrowID, &rec.ConversationID, &rec.KeyID, &rec.Threshold, &rec.Custodians, &rec.KeyCommitment,
		&rec.Depositor, &rec.CustodianSet, &rec.AuditSeq, &rec.CreatedAt, &rec.destroyed, &receipts)
	if err != nil {
		return rec, err
	}
	for _, raw := range receipts {
		var s shares.SignedReceipt
		if err := json.Unmarshal(raw, &s); err != nil {
			return rec, fmt.Errorf("escrow %s: a stored receipt is unreadable: %w", rec.EscrowID, err)
		}
		rec.Shares = append(rec.Shares, s)
	}
	return rec, nil
}

// InScope implements DepositRows.
func (r *PGRows) InScope(ctx context.Context, conversationIDs []string, from, to time.Time) ([]Escrow, error) {
	return r.escrows(ctx, sqlInScope, conversationIDs, from, to)
}

// KeysInScope implements DepositRows. It reads no receipt: a release call
// counts every key in scope but reads in full only those it asks for.
func (r *PGRows) KeysInScope(ctx context.Context, conversationIDs []string, from, to time.Time) ([]ScopeKey, error) {
	rows, err := r.pool.Query(ctx, sqlKeysInScope, conversationIDs, from, to)
	if err != nil {
		return nil, fmt.Errorf("escrow: list keys in scope: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (ScopeKey, error) {
		var k ScopeKey
		err := row.Scan(&k.EscrowID, &k.ConversationID, &k.KeyID, &k.KeyCommitment, &k.Threshold, &k.Custodians)
		return k, err
	})
	if err != nil {
		return nil, fmt.Errorf("escrow: list keys in scope: %w", err)
	}
	return out, nil
}

func (r *PGRows) escrows(ctx context.Context, query string, args ...any) ([]Escrow, error) {
	rows, err := r.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("escrow: list escrows: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanEscrow)
	if err != nil {
		return nil, fmt.Errorf("escrow: list escrows: %w", err)
	}
	return out, nil
}

package access

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/audit"
	"github.com/mediatorhq/mediator/policy"
	"github.com/mediatorhq/mediator/seal"
	"github.com/mediatorhq/mediator/shares"
)

// RequestStore keeps filed requests and their one final state. Every
// write also appends its audit entry, in the same transaction, and fills
// in its AuditSeq.
type RequestStore interface {
	InsertRequest(ctx context.Context, r Request) (Request, error)
	// Request returns r with Final and DeniedReleases; ErrNotFound. Its
	// Status is filled in by the Service.
	Request(ctx context.Context, id string) (Request, error)
	// Requests lists requests newest first, at most limit, filtered by
	// final state (a final status) or by having none (pending: the caller
	// splits off the expired).
	Requests(ctx context.Context, final Status, limit int) ([]Request, error)
	// Finish moves a pending request to a final state. record is the audit
	// record of the transition. ErrFinal if it already has one.
	Finish(ctx context.Context, requestID string, f Final, kind string, record any) (Final, error)
}

// ApprovalStore keeps approvals, each with its audit entry.
type ApprovalStore interface {
	// InsertApproval records a verified approval of the request whose
	// digest it signed; ErrDuplicateApproval.
	InsertApproval(ctx context.Context, a Approval, digest string) (Approval, error)
	Approvals(ctx context.Context, requestID string) ([]Approval, error)
}

// ReleaseStore keeps release decisions and the shares custodians
// released, each with its audit entry.
type ReleaseStore interface {
	// RecordDecision records a release decision. If it denies and the
	// request then has lockAfter denials, the request becomes final
	// (denied), and locked is true.
	RecordDecision(ctx context.Context, requestID string, d policy.Decision, lockAfter int) (locked bool, err error)
	// InsertReleaseShares keeps the shares one custodian released for a
	// request, with an access.custodian_release audit entry, in one
	// transaction, and returns them with their AuditSeq. A share already
	// kept is not kept twice.
	InsertReleaseShares(ctx context.Context, requestID, digest, recipientKey, custodian string, shares []ReleasedShare) ([]ReleasedShare, error)
	// KeptCustodians returns, for each escrow with a share kept for a
	// request, the custodians whose shares are kept: what a release
	// counts, and all it reads of what was released before.
	KeptCustodians(ctx context.Context, requestID string) (map[string]map[string]bool, error)
	// ReleaseReceiptHashes returns every share kept for a request with
	// its receipt's hash (ReceiptSHA256), without its receipt or sealed
	// bytes: what a completed release logs.
	ReleaseReceiptHashes(ctx context.Context, requestID string) ([]ReleasedShare, error)
	// ReleaseSharesOf returns the shares kept for a request of the
	// escrows named, with their sealed bytes: one page of an answer.
	ReleaseSharesOf(ctx context.Context, requestID string, escrowIDs []string) ([]ReleasedShare, error)
}

// PGStore keeps the workflow's records in PostgreSQL. It implements
// RequestStore, ApprovalStore and ReleaseStore.
type PGStore struct {
	pool *pgxpool.Pool
	rec  audit.Recorder
}

// NewPGStore returns the workflow's store in pool, logging through log.
func NewPGStore(pool *pgxpool.Pool, log audit.TxAppender) *PGStore {
	return &PGStore{pool: pool, rec: audit.Recorder{Pool: pool, Log: log, Unavailable: ErrUnavailable}}
}

// Audit entry kinds of the workflow.
const (
	KindRequest  = "access.request"
	KindApproval = "access.approval"
	KindDecision = "access.decision"
	KindRelease  = "access.release"
	KindRevoke   = "access.revoke"
	KindExpire   = "access.expire"
	KindDenied   = "access.denied"
	// KindCustodianRelease records what one custodian released for a
	// request: which shares, by the hashes of its signed receipts.
	KindCustodianRelease = "access.custodian_release"
)

// requestRecord is the audit record of a filed request: its id, digest and
// canonical form, from which every field can be read and the digest
// recomputed.
type requestRecord struct {
	Kind      string `json:"kind"`
	RequestID string `json:"request_id"`
	Requester string `json:"requester"`
	Digest    string `json:"digest"`
	Canonical string `json:"canonical"` // base64 of the canonical JSON
	// OfficerSignature is base64 of the officer's signature over the
	// digest (approval.RequestMessage).
	OfficerSignature string `json:"officer_signature"`
}

// InsertRequest implements Store.
func (s *PGStore) InsertRequest(ctx context.Context, r Request) (Request, error) {
	rec := requestRecord{Kind: KindRequest, RequestID: r.ID, Requester: r.Requester, Digest: r.Digest,
		Canonical: base64.StdEncoding.EncodeToString(r.Canonical), OfficerSignature: base64.StdEncoding.EncodeToString(r.OfficerSignature)}
	seq, err := s.rec.Record(ctx, audit.Entry{Kind: KindRequest, Record: rec}, func(tx pgx.Tx, seq int64) error {
		_, err := tx.Exec(ctx, `INSERT INTO access_requests (request_id, requester, case_id, legal_basis, warrant_ref,
			jurisdiction, justification, conversation_ids, scope_from, scope_to, recipient_kem_id, recipient_public_key,
			created_at, expires_at, canonical, digest, audit_seq, officer_signature)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)`,
			r.ID, r.Requester, r.CaseID, r.LegalBasis, r.WarrantRef, r.Jurisdiction, r.Justification, r.Scope.ConversationIDs,
			r.Scope.From, r.Scope.To, int(r.Recipient.KEMID), r.Recipient.PublicKey, r.CreatedAt, r.ExpiresAt, r.Canonical, r.Digest, seq,
			r.OfficerSignature)
		if err != nil {
			return s.rec.Conflict(err, fmt.Errorf("%w: request id taken", ErrUnavailable))
		}
		return nil
	})
	if err != nil {
		return Request{}, err
	}
	r.AuditSeq = seq
	return r, nil
}

const selectRequest = `SELECT r.request_id, r.requester, r.case_id, r.legal_basis, r.warrant_ref, r.jurisdiction,
	r.justification, r.conversation_ids, r.scope_from, r.scope_to, r.recipient_kem_id, r.recipient_public_key,
	r.created_at, r.expires_at, r.canonical, r.digest, r.audit_seq, r.officer_signature,
	f.status, f.decided_by, f.decision_id, f.audit_seq, f.finished_at,
	(SELECT count(*) FROM access_decisions d WHERE d.request_id = r.request_id AND NOT d.allow)
	FROM access_requests r LEFT JOIN access_request_finals f USING (request_id) `

// Request implements Store.
func (s *PGStore) Request(ctx context.Context, id string) (Request, error) {
	rs, err := s.requests(ctx, selectRequest+"WHERE r.request_id = $1", id)
	if err != nil {
		return Request{}, err
	}
	if len(rs) == 0 {
		return Request{}, ErrNotFound
	}
	return rs[0], nil
}

// Requests implements Store.
func (s *PGStore) Requests(ctx context.Context, final Status, limit int) ([]Request, error) {
	if final == StatusPending {
		return s.requests(ctx, selectRequest+"WHERE f.request_id IS NULL ORDER BY r.created_at DESC, r.audit_seq DESC LIMIT $1", limit)
	}
	if final == "" {
		return s.requests(ctx, selectRequest+"ORDER BY r.created_at DESC, r.audit_seq DESC LIMIT $1", limit)
	}
	return s.requests(ctx, selectRequest+"WHERE f.status = $2 ORDER BY r.created_at DESC, r.audit_seq DESC LIMIT $1", limit, string(final))
}

func (s *PGStore) requests(ctx context.Context, query string, args ...any) ([]Request, error) {
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%w: requests: %v", ErrUnavailable, err)
	}
	out, err := pgx.CollectRows(rows, scanRequest)
	if err != nil {
		return nil, fmt.Errorf("%w: requests: %v", ErrUnavailable, err)
	}
	return out, nil
}

// scanRequest reads a row of selectRequest.
func scanRequest(row pgx.CollectableRow) (Request, error) {
	var (
		r          Request
		kem        int
		fStatus    *string
		fBy        *string
		fDecision  *string
		fSeq       *int64
		fAt        *time.Time
		denied     int64
		recipientK []byte
	)
	if err := row.Scan(&r.ID, &r.Requester, &r.CaseID, &r.LegalBasis, &r.WarrantRef, &r.Jurisdiction, &r.Justification,
		&r.Scope.ConversationIDs, &r.Scope.From, &r.Scope.To, &kem, &recipientK, &r.CreatedAt, &r.ExpiresAt,
		&r.Canonical, &r.Digest, &r.AuditSeq, &r.OfficerSignature, &fStatus, &fBy, &fDecision, &fSeq, &fAt, &denied); err != nil {
		return r, err
	}
	r.Recipient = seal.PublicKey{KEMID: uint16(kem), PublicKey: recipientK}
	r.Differs = Differs(r)
	if signed, err := approval.Parse(r.Canonical); err == nil && approval.Digest(r.Canonical) == r.Digest && signed.ID == r.ID {
		// The columns are an index: what the service works from is the
		// request as approvers signed it.
		r.Request = signed
	} else {
		r.Corrupt = true
	}
	r.DeniedReleases = int(denied)
	if fStatus != nil {
		r.Final = &Final{Status: Status(*fStatus), By: *fBy, AuditSeq: *fSeq, At: *fAt}
		if fDecision != nil {
			r.Final.DecisionID = *fDecision
		}
	}
	return r, nil
}

// approvalRecord is the audit record of an approval. It carries the
// signature and key id, so anyone holding the log can verify it against
// the approver's key as registered in the log.
type approvalRecord struct {
	Kind        string   `json:"kind"`
	RequestID   string   `json:"request_id"`
	ApproverID  string   `json:"approver_id"`
	Decision    string   `json:"decision"`
	Digest      string   `json:"digest"`
	KeyID       string   `json:"key_id"`
	Signature   string   `json:"signature"`
	Roles       []string `json:"roles"`
	ByRequester bool     `json:"by_requester"`
}

// InsertApproval implements Store.
func (s *PGStore) InsertApproval(ctx context.Context, a Approval, digest string) (Approval, error) {
	rec := approvalRecord{Kind: KindApproval, RequestID: a.RequestID, ApproverID: a.ApproverID, Decision: a.Decision,
		Digest: digest, KeyID: a.KeyID, Signature: base64.StdEncoding.EncodeToString(a.Signature), Roles: a.Roles, ByRequester: a.ByRequester}
	seq, err := s.rec.Record(ctx, audit.Entry{Kind: KindApproval, Record: rec}, func(tx pgx.Tx, seq int64) error {
		err := tx.QueryRow(ctx, `INSERT INTO access_approvals (request_id, approver_id, decision, signature, key_id, roles, by_requester, audit_seq)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING approved_at`,
			a.RequestID, a.ApproverID, a.Decision, a.Signature, a.KeyID, a.Roles, a.ByRequester, seq).Scan(&a.ApprovedAt)
		if err != nil {
			return s.rec.Conflict(err, ErrDuplicateApproval)
		}
		return nil
	})
	if err != nil {
		return Approval{}, err
	}
	a.AuditSeq = seq
	return a, nil
}

// Approvals implements Store.
func (s *PGStore) Approvals(ctx context.Context, requestID string) ([]Approval, error) {
	rows, err := s.pool.Query(ctx, `SELECT request_id, approver_id, decision, signature, key_id, roles, by_requester, approved_at, audit_seq
		FROM access_approvals WHERE request_id = $1 ORDER BY approved_at, audit_seq`, requestID)
	if err != nil {
		return nil, fmt.Errorf("%w: approvals: %v", ErrUnavailable, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Approval, error) {
		var a Approval
		err := row.Scan(&a.RequestID, &a.ApproverID, &a.Decision, &a.Signature, &a.KeyID, &a.Roles, &a.ByRequester, &a.ApprovedAt, &a.AuditSeq)
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("%w: approvals: %v", ErrUnavailable, err)
	}
	return out, nil
}

// decisionRecord is the audit record of a policy decision.
type decisionRecord struct {
	Kind           string   `json:"kind"`
	DecisionID     string   `json:"decision_id"`
	RequestID      string   `json:"request_id"`
	Allow          bool     `json:"allow"`
	Reasons        []string `json:"reasons"`
	PolicyRevision string   `json:"policy_revision"`
	InputHash      string   `json:"input_hash"`
}

// RecordDecision implements Store.
func (s *PGStore) RecordDecision(ctx context.Context, requestID string, d policy.Decision, lockAfter int) (bool, error) {
	rec := decisionRecord{Kind: KindDecision, DecisionID: d.ID, RequestID: requestID, Allow: d.Allow, Reasons: d.Reasons,
		PolicyRevision: d.PolicyRevision, InputHash: d.InputHash}
	var denials int
	_, err := s.rec.Record(ctx, audit.Entry{Kind: KindDecision, Record: rec}, func(tx pgx.Tx, seq int64) error {
		if _, err := tx.Exec(ctx, `INSERT INTO access_decisions (decision_id, request_id, allow, reasons, policy_revision, input_hash, audit_seq, decided_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, d.ID, requestID, d.Allow, d.Reasons, d.PolicyRevision, d.InputHash, seq, d.DecidedAt); err != nil {
			return s.rec.Conflict(err, fmt.Errorf("%w: decision id taken", ErrUnavailable))
		}
		if d.Allow {
			return nil
		}
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM access_decisions WHERE request_id = $1 AND NOT allow`, requestID).Scan(&denials); err != nil {
			return fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		return nil
	})
	if err != nil || d.Allow || denials < lockAfter {
		return false, err
	}
	_, err = s.Finish(ctx, requestID, Final{Status: StatusDenied, By: "mediator", DecisionID: d.ID}, KindDenied,
		map[string]any{"kind": KindDenied, "request_id": requestID, "decision_id": d.ID, "denied_releases": denials})
	if errors.Is(err, ErrFinal) {
		return false, nil // another call finished it meanwhile
	}
	return err == nil, err
}

// Finish implements Store.
func (s *PGStore) Finish(ctx context.Context, requestID string, f Final, kind string, record any) (Final, error) {
	seq, err := s.rec.Record(ctx, audit.Entry{Kind: kind, Record: record}, func(tx pgx.Tx, seq int64) error {
		var decision *string
		if f.DecisionID != "" {
			decision = &f.DecisionID
		}
		err := tx.QueryRow(ctx, `INSERT INTO access_request_finals (request_id, status, decided_by, decision_id, audit_seq)
			VALUES ($1, $2, $3, $4, $5) RETURNING finished_at`, requestID, string(f.Status), f.By, decision, seq).Scan(&f.At)
		if err != nil {
			return s.rec.Conflict(err, ErrFinal)
		}
		return nil
	})
	if err != nil {
		return Final{}, err
	}
	f.AuditSeq = seq
	return f, nil
}

// CountByStatus returns how many requests are in each state now.
func (s *PGStore) CountByStatus(ctx context.Context) (map[Status]int, error) {
	rows, err := s.pool.Query(ctx, `SELECT CASE WHEN f.status IS NOT NULL THEN f.status
			WHEN r.expires_at <= now() THEN 'expired' ELSE 'pending' END, count(*)
		FROM access_requests r LEFT JOIN access_request_finals f USING (request_id) GROUP BY 1`)
	if err != nil {
		return nil, err
	}
	type statusCount struct {
		Status string
		N      int
	}
	counts, err := pgx.CollectRows(rows, pgx.RowToStructByPos[statusCount])
	if err != nil {
		return nil, err
	}
	out := make(map[Status]int, len(counts))
	for _, c := range counts {
		out[Status(c.Status)] = c.N
	}
	return out, nil
}

// custodianReleaseRecord is the audit record of one custodian's answer to a
// release: what left it, by the hash of each signed receipt.
type custodianReleaseRecord struct {
	Kind          string              `json:"kind"`
	RequestID     string              `json:"request_id"`
	RequestDigest string              `json:"request_digest"`
	RecipientKey  string              `json:"recipient_key"`
	Custodian     string              `json:"custodian"`
	Shares        []custodianShareLog `json:"shares"`
}

type custodianShareLog struct {
	EscrowID      string `json:"escrow_id"`
	Index         int    `json:"index"`
	SealedSHA256  string `json:"sealed_sha256"`
	ReceiptSHA256 string `json:"receipt_sha256"`
}

// InsertReleaseShares implements Store.
func (s *PGStore) InsertReleaseShares(ctx context.Context, requestID, digest, recipientKey, custodian string, got []ReleasedShare) ([]ReleasedShare, error) {
	rec := custodianReleaseRecord{Kind: KindCustodianRelease, RequestID: requestID, RequestDigest: digest,
		RecipientKey: recipientKey, Custodian: custodian}
	for _, sh := range got {
		rec.Shares = append(rec.Shares, custodianShareLog{EscrowID: sh.EscrowID, Index: sh.Index,
			SealedSHA256: sh.Receipt.Receipt.SealedSHA256, ReceiptSHA256: sh.Receipt.Hash()})
	}
	seq, err := s.rec.Record(ctx, audit.Entry{Kind: KindCustodianRelease, Record: rec}, func(tx pgx.Tx, seq int64) error {
		b := &pgx.Batch{}
		for _, sh := range got {
			receipt, err := json.Marshal(sh.Receipt)
			if err != nil {
				return err
			}
			b.Queue(`INSERT INTO access_release_shares (request_id, escrow_id, custodian, share_index, sealed, receipt, receipt_sha256, audit_seq)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING`, requestID, sh.EscrowID, custodian, sh.Index, sh.Sealed, receipt,
				sh.Receipt.Hash(), seq)
		}
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("%w: keep released shares: %v", ErrUnavailable, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]ReleasedShare, len(got))
	for i, sh := range got {
		sh.AuditSeq = seq
		out[i] = sh
	}
	return out, nil
}

// The reads a release makes of access_release_shares, named so that the
// plan test (plans_test.go) explains the very text the store runs.
const (
	// sqlKeptCustodians lists, per escrow, the custodians whose shares
	// are kept for request $1.
	sqlKeptCustodians = `SELECT escrow_id::text, array_agg(custodian)
		FROM access_release_shares WHERE request_id = $1 GROUP BY escrow_id`
	// sqlReleaseReceiptHashes lists the shares kept for request $1 by
	// their receipts' hashes.
	sqlReleaseReceiptHashes = `SELECT escrow_id::text, custodian, share_index, audit_seq, coalesce(receipt_sha256, ''),
		CASE WHEN receipt_sha256 IS NULL THEN receipt END
		FROM access_release_shares WHERE request_id = $1 ORDER BY escrow_id, share_index`
	// sqlReleaseSharesOf reads the shares kept for request $1 of the
	// escrows $2.
	sqlReleaseSharesOf = `SELECT escrow_id::text, custodian, share_index, sealed, receipt, audit_seq
		FROM access_release_shares WHERE request_id = $1 AND escrow_id = ANY($2::uuid[]) ORDER BY escrow_id, share_index`
)

// KeptCustodians implements Store: one row per escrow, its custodians
// aggregated by the database.
func (s *PGStore) KeptCustodians(ctx context.Context, requestID string) (map[string]map[string]bool, error) {
	rows, err := s.pool.Query(ctx, sqlKeptCustodians, requestID)
	if err != nil {
		return nil, fmt.Errorf("%w: released shares: %v", ErrUnavailable, err)
	}
	out := map[string]map[string]bool{}
	var id string
	var custodians []string
	_, err = pgx.ForEachRow(rows, []any{&id, &custodians}, func() error {
		kept := make(map[string]bool, len(custodians))
		for _, c := range custodians {
			kept[c] = true
		}
		out[id] = kept
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: released shares: %v", ErrUnavailable, err)
	}
	return out, nil
}

// ReleaseReceiptHashes implements Store. A share kept before receipts'
// hashes were (migration 00013) is read with its receipt, and hashed here.
func (s *PGStore) ReleaseReceiptHashes(ctx context.Context, requestID string) ([]ReleasedShare, error) {
	rows, err := s.pool.Query(ctx, sqlReleaseReceiptHashes, requestID)
	if err != nil {
		return nil, fmt.Errorf("%w: released shares: %v", ErrUnavailable, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (ReleasedShare, error) {
		var sh ReleasedShare
		var receipt []byte
		if err := row.Scan(&sh.EscrowID, &sh.Custodian, &sh.Index, &sh.AuditSeq, &sh.ReceiptSHA256, &receipt); err != nil {
			return sh, err
		}
		if sh.ReceiptSHA256 == "" {
			var r shares.SignedReceipt
			if err := json.Unmarshal(receipt, &r); err != nil {
				return sh, err
			}
			sh.ReceiptSHA256 = r.Hash()
		}
		return sh, nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: released shares: %v", ErrUnavailable, err)
	}
	return out, nil
}

// ReleaseSharesOf implements Store.
func (s *PGStore) ReleaseSharesOf(ctx context.Context, requestID string, escrowIDs []string) ([]ReleasedShare, error) {
	if len(escrowIDs) == 0 {
		return nil, nil
	}
	return s.releaseShares(ctx, sqlReleaseSharesOf, requestID, escrowIDs)
}

func (s *PGStore) releaseShares(ctx context.Context, query string, args ...any) ([]ReleasedShare, error) {
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%w: released shares: %v", ErrUnavailable, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (ReleasedShare, error) {
		var sh ReleasedShare
		var receipt []byte
		if err := row.Scan(&sh.EscrowID, &sh.Custodian, &sh.Index, &sh.Sealed, &receipt, &sh.AuditSeq); err != nil {
			return sh, err
		}
		if len(sh.Sealed) == 0 {
			sh.Sealed = nil
		}
		return sh, json.Unmarshal(receipt, &sh.Receipt)
	})
	if err != nil {
		return nil, fmt.Errorf("%w: released shares: %v", ErrUnavailable, err)
	}
	return out, nil
}

// Mismatch is a stored request whose columns disagree with the canonical
// request approvers signed, or whose signed bytes disagree with its
// entry in the audit log.
type Mismatch struct {
	RequestID string
	Fields    []string
}

// Mismatches checks every stored request's columns against its canonical
// form, and its canonical form, digest and officer's signature against
// its access.request entry in the log, and names each row that differs
// (audit verify). The log's entries are themselves verified against the
// tree, so a request whose bytes were swapped in the table after it was
// filed is named here even when its columns were swapped to match.
func (s *PGStore) Mismatches(ctx context.Context) ([]Mismatch, error) {
	rs, err := s.requests(ctx, selectRequest+"ORDER BY r.audit_seq")
	if err != nil {
		return nil, err
	}
	leaves, err := s.requestLeaves(ctx)
	if err != nil {
		return nil, err
	}
	var out []Mismatch
	for _, r := range rs {
		fields := append(slices.Clone(r.Differs), differsFromLog(r, leaves[r.ID])...)
		if len(fields) > 0 {
			out = append(out, Mismatch{RequestID: r.ID, Fields: fields})
		}
	}
	return out, nil
}

// requestLeaves returns, by request id, the leaf of the log entry each
// stored request names as its own (nil when there is none).
func (s *PGStore) requestLeaves(ctx context.Context) (map[string][]byte, error) {
	rows, err := s.pool.Query(ctx, `SELECT r.request_id::text, e.leaf FROM access_requests r LEFT JOIN audit_entries e ON e.seq = r.audit_seq`)
	if err != nil {
		return nil, fmt.Errorf("%w: request entries: %v", ErrUnavailable, err)
	}
	defer rows.Close()
	out := map[string][]byte{}
	for rows.Next() {
		var id string
		var leaf []byte
		if err := rows.Scan(&id, &leaf); err != nil {
			return nil, fmt.Errorf("%w: request entries: %v", ErrUnavailable, err)
		}
		out[id] = leaf
	}
	return out, rows.Err()
}

// differsFromLog names what of r's signed form differs from its log
// entry: ["log entry"] when there is no access.request entry of r at its
// audit_seq.
func differsFromLog(r Request, leaf []byte) []string {
	var rec requestRecord
	if leaf == nil || json.Unmarshal(leaf, &rec) != nil || rec.Kind != KindRequest || rec.RequestID != r.ID {
		return []string{"log entry"}
	}
	var out []string
	if rec.Canonical != base64.StdEncoding.EncodeToString(r.Canonical) {
		out = append(out, "canonical (the log holds other bytes)")
	}
	if rec.Digest != r.Digest {
		out = append(out, "digest (the log holds another)")
	}
	if rec.OfficerSignature != base64.StdEncoding.EncodeToString(r.OfficerSignature) {
		out = append(out, "officer_signature (the log holds another)")
	}
	return out
}

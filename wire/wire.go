// Package wire holds the JSON bodies of the mediator's REST API: what the
// server (api) writes and reads, and what its Go client (client) sends and
// decodes, as one set of types, so the two cannot drift apart. The field
// names are the contract of ARCHITECTURE.md and api/openapi.yaml.
//
// Only pure packages are imported here, so that a gateway that links the
// client links no server code.
package wire

import (
	"time"

	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/seal"
	"github.com/mediatorhq/mediator/shares"
)

// Error is the one error shape every endpoint returns:
// {"error":{"code":"...","message":"...","details":[...]}}.
type Error struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the body of an Error. Code is stable and machine-readable;
// Message is for people and never holds a secret; Details are specifics a
// client may act on (a field and reason, a policy's reasons).
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Details []any  `json:"details"`
}

// FieldProblem is the detail of a validation error: the field at fault and
// why, never the offending value.
type FieldProblem struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

// Whoami is GET /v1/whoami.
type Whoami struct {
	Subject string   `json:"subject"`
	Roles   []string `json:"roles"`
}

// Problem is one reason an event was refused.
type Problem struct {
	Index   int    `json:"index"`
	Path    string `json:"path"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// IngestResponse is POST /v1/events: what became of the events, after the
// commit.
type IngestResponse struct {
	Accepted   int       `json:"accepted"`
	Duplicates int       `json:"duplicates"`
	FirstSeq   *int64    `json:"first_seq"`
	LastSeq    *int64    `json:"last_seq"`
	Rejected   int       `json:"rejected"`
	Problems   []Problem `json:"problems"`
}

// Entry is one log entry: GET /v1/audit/entries/{seq}, and a page's items.
type Entry struct {
	Seq    int64          `json:"seq"`
	Leaf   []byte         `json:"leaf"` // base64 of the leaf bytes
	Record map[string]any `json:"record"`
}

// EntryPage is GET /v1/audit/entries.
type EntryPage struct {
	Entries      []Entry `json:"entries"`
	NextAfterSeq *int64  `json:"next_after_seq"`
}

// InclusionProof is GET /v1/audit/proof/inclusion.
type InclusionProof struct {
	LeafIndex int64    `json:"leaf_index"`
	TreeSize  int64    `json:"tree_size"`
	Hashes    [][]byte `json:"hashes"`
}

// ConsistencyProof is GET /v1/audit/proof/consistency.
type ConsistencyProof struct {
	From   int64    `json:"from"`
	To     int64    `json:"to"`
	Hashes [][]byte `json:"hashes"`
}

// CustodianSet is GET /v1/escrow/custodians: who new deposits are sealed
// for, in order, and the set's digest. A depositor checks the digest
// against the one it pinned (shares.Set.CheckPinned) before sealing
// anything.
type CustodianSet struct {
	shares.Set
	Digest string `json:"digest"`
}

// DepositShare is one custodian's share of a deposit, sealed to it under
// shares.DepositInfoV2 (or, from an older depositor, shares.DepositInfo).
type DepositShare struct {
	Custodian string `json:"custodian"`
	Index     int    `json:"index"`
	Sealed    []byte `json:"sealed"`
}

// DepositRequest is POST /v1/escrow/keys: the key's commitment and its
// shares, split and sealed on the depositor's machine; never the key.
type DepositRequest struct {
	ConversationID string         `json:"conversation_id"`
	KeyID          string         `json:"key_id"`
	Commitment     string         `json:"commitment"`
	CustodianSet   string         `json:"custodian_set"`
	Threshold      int            `json:"threshold"`
	Shares         []DepositShare `json:"shares"`
	// EscrowID and DepositedAt are the v2 binding (shares.Binding) the
	// shares were sealed under: an escrow id the depositor chose (a
	// canonical UUID) and its clock at deposit (RFC 3339 UTC with
	// microseconds). Both or neither; neither is a v1 deposit.
	EscrowID    string `json:"escrow_id,omitempty"`
	DepositedAt string `json:"deposited_at,omitempty"`
}

// DepositResponse is POST /v1/escrow/keys: 201 for a new escrow, 200 for
// the same key again. Receipts are the custodians' signed deposit receipts,
// in custodian order, which a depositor checks against the set it pinned.
type DepositResponse struct {
	EscrowID      string                 `json:"escrow_id"`
	Threshold     int                    `json:"threshold"`
	Shares        int                    `json:"shares"`
	Custodians    []string               `json:"custodians"`
	KeyCommitment string                 `json:"key_commitment"`
	AuditSeq      int64                  `json:"audit_seq"`
	Receipts      []shares.SignedReceipt `json:"receipts"`
}

// Scope is what a lawful-access request covers.
type Scope struct {
	ConversationIDs []string  `json:"conversation_ids"`
	From            time.Time `json:"from"`
	To              time.Time `json:"to"`
}

// CreateRequest is POST /v1/access-requests: the whole request as the
// officer's client built it (its id and created_at included; the
// requester is the caller) and the officer's signature over its digest.
type CreateRequest struct {
	// ID is a fresh UUID the officer's client chose.
	ID            string         `json:"id"`
	CaseID        string         `json:"case_id"`
	LegalBasis    string         `json:"legal_basis"`
	WarrantRef    string         `json:"warrant_ref"`
	Jurisdiction  string         `json:"jurisdiction"`
	Justification string         `json:"justification"`
	Scope         Scope          `json:"scope"`
	Recipient     seal.PublicKey `json:"recipient_public_key"`
	// CreatedAt is the officer's clock, to the second.
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	// OfficerSignature is the officer's Ed25519 signature over
	// "mediator-request-signature-v1\n" + digest + "\n", where digest is
	// that of the canonical request these fields make.
	OfficerSignature []byte `json:"officer_signature"`
}

// Created is POST /v1/access-requests: 201.
type Created struct {
	ID       string `json:"id"`
	Status   string `json:"status"`
	Digest   string `json:"digest"`
	AuditSeq int64  `json:"audit_seq"`
}

// Final is a request's one transition out of pending.
type Final struct {
	Status     string    `json:"status"`
	By         string    `json:"by"`
	DecisionID string    `json:"decision_id,omitempty"`
	At         time.Time `json:"at"`
	AuditSeq   int64     `json:"audit_seq"`
}

// Approval is one recorded approval, as a request shows it.
type Approval struct {
	ApproverID  string    `json:"approver_id"`
	Decision    string    `json:"decision"`
	Roles       []string  `json:"roles"`
	ByRequester bool      `json:"by_requester"`
	KeyID       string    `json:"key_id"`
	Signature   []byte    `json:"signature"`
	ApprovedAt  time.Time `json:"approved_at"`
	AuditSeq    int64     `json:"audit_seq"`
}

// Request is GET /v1/access-requests/{id}: the request, its canonical form
// (base64 of exactly the bytes the digest covers, so an approver can check
// what they sign) and its approvals.
type Request struct {
	ID            string         `json:"id"`
	Status        string         `json:"status"`
	Requester     string         `json:"requester"`
	CaseID        string         `json:"case_id"`
	LegalBasis    string         `json:"legal_basis"`
	WarrantRef    string         `json:"warrant_ref"`
	Jurisdiction  string         `json:"jurisdiction"`
	Justification string         `json:"justification"`
	Scope         Scope          `json:"scope"`
	Recipient     seal.PublicKey `json:"recipient_public_key"`
	CreatedAt     time.Time      `json:"created_at"`
	ExpiresAt     time.Time      `json:"expires_at"`
	Digest        string         `json:"digest"`
	Canonical     []byte         `json:"canonical"`
	// OfficerSignature is the filing officer's signature over the digest,
	// which a person's tool verifies against the roster it verified.
	OfficerSignature []byte     `json:"officer_signature"`
	AuditSeq         int64      `json:"audit_seq"`
	DeniedReleases   int        `json:"denied_releases"`
	Final            *Final     `json:"final,omitempty"`
	Approvals        []Approval `json:"approvals,omitempty"`
}

// RequestList is GET /v1/access-requests.
type RequestList struct {
	Requests []Request `json:"requests"`
}

// ApprovalRequest is POST /v1/access-requests/{id}/approvals.
type ApprovalRequest struct {
	Decision  string `json:"decision"`
	Signature []byte `json:"signature"` // base64
}

// ApprovalRecorded is POST /v1/access-requests/{id}/approvals: 201.
type ApprovalRecorded struct {
	RequestID  string    `json:"request_id"`
	ApproverID string    `json:"approver_id"`
	Decision   string    `json:"decision"`
	KeyID      string    `json:"key_id"`
	ApprovedAt time.Time `json:"approved_at"`
	AuditSeq   int64     `json:"audit_seq"`
}

// ReleasedShare is one custodian's share of a released key, sealed by that
// custodian to the request's recipient under shares.ReleaseInfo, with its
// signed release receipt.
type ReleasedShare struct {
	Custodian string               `json:"custodian"`
	Index     int                  `json:"index"`
	Sealed    []byte               `json:"sealed"`
	Receipt   shares.SignedReceipt `json:"receipt"`
}

// ReleasedKey is one escrowed key of a release: what to check it with, and
// at least Threshold shares. DepositReceipts are the custodians' signed
// receipts of the deposit, in custodian order: the officer's client takes
// the key's commitment from them, not from KeyCommitment, which is the
// mediator's word.
type ReleasedKey struct {
	EscrowID        string                 `json:"escrow_id"`
	ConversationID  string                 `json:"conversation_id"`
	KeyID           string                 `json:"key_id"`
	KeyCommitment   string                 `json:"key_commitment"`
	Threshold       int                    `json:"threshold"`
	Shares          []ReleasedShare        `json:"shares"`
	DepositReceipts []shares.SignedReceipt `json:"deposit_receipts"`
}

// CustodianRefusal is a custodian whose own checks refused a release.
type CustodianRefusal struct {
	Custodian      string   `json:"custodian"`
	Reasons        []string `json:"reasons"`
	PolicyRevision string   `json:"policy_revision,omitempty"`
}

// ReleaseProgress is the 202 answer to POST
// /v1/access-requests/{id}/release when a release of many keys goes on:
// the shares released so far are kept, and the same POST, sent again
// (after Retry-After), asks only for the rest.
type ReleaseProgress struct {
	RequestID  string `json:"request_id"`
	Status     string `json:"status"` // "releasing"
	DecisionID string `json:"decision_id"`
	KeysTotal  int    `json:"keys_total"`
	KeysReady  int    `json:"keys_ready"`
}

// Release is POST /v1/access-requests/{id}/release, and GET of the same
// path to fetch a completed release again: every key in scope with its
// released shares, never a key. Refusals lists custodians that refused
// while enough others released.
type Release struct {
	RequestID  string             `json:"request_id"`
	DecisionID string             `json:"decision_id"`
	AuditSeq   int64              `json:"audit_seq"`
	Keys       []ReleasedKey      `json:"keys"`
	Refusals   []CustodianRefusal `json:"refusals"`
	// NextAfter, when set, says the answer holds one page of keys (at
	// most 1,000, in escrow id order): GET the same path with
	// ?after=NextAfter for the next.
	NextAfter string `json:"next_after,omitempty"`
}

// Shortfall is the detail of a release that custodians did not complete
// (403 custodians_refused, 503 custodians_unavailable): who refused and
// why, who could not be reached, and how many keys lack shares. The shares
// that came are kept.
type Shortfall struct {
	DecisionID  string             `json:"decision_id"`
	Refusals    []CustodianRefusal `json:"refusals"`
	Unavailable []string           `json:"unavailable"`
	KeysShort   int                `json:"keys_short"`
}

// Denial is the detail of a 403 policy_denied.
type Denial struct {
	DecisionID string   `json:"decision_id"`
	Reasons    []string `json:"reasons"`
	Locked     bool     `json:"locked"`
}

// ApproverKey is one registered approver key.
type ApproverKey struct {
	KeyID     string    `json:"key_id"`
	PublicKey []byte    `json:"public_key"`
	AddedAt   time.Time `json:"added_at"`
	AuditSeq  int64     `json:"audit_seq"`
}

// RosterDraft is POST /v1/roster/proposals (admin): the next roster
// version's content. The service numbers it and links it to the version
// in force.
type RosterDraft struct {
	Approvers  []roster.Approver  `json:"approvers"`
	Custodians []roster.Custodian `json:"custodians"`
	Threshold  int                `json:"threshold"`
	Rule       roster.Rule        `json:"rule"`
	// Pseudonym, if set, names the pseudonym service and its keys.
	Pseudonym *roster.PseudonymService `json:"pseudonym,omitempty"`
	// Log, if set, names the audit log the custodians witness and its
	// checkpoints' verifier keys.
	Log *roster.AuditLog `json:"log,omitempty"`
}

// RosterProposal is a proposed version and how far its signatures are from
// adopting it. Canonical is exactly what approvers sign the digest of.
type RosterProposal struct {
	Digest     string             `json:"digest"`
	Version    uint64             `json:"version"`
	Previous   string             `json:"previous"`
	Canonical  []byte             `json:"canonical"`
	Roster     roster.Roster      `json:"roster"`
	ProposedBy string             `json:"proposed_by"`
	ProposedAt time.Time          `json:"proposed_at"`
	Status     string             `json:"status"` // awaiting_signatures, adopted, stale
	Signatures []roster.Signature `json:"signatures"`
	Signers    []string           `json:"signers"`
	Possession []string           `json:"proof_of_possession"`
	Missing    []string           `json:"missing"`
	Changes    []string           `json:"changes"`
	AuditSeq   int64              `json:"audit_seq"`
}

// RosterProposalList is GET /v1/roster/proposals.
type RosterProposalList struct {
	Proposals []RosterProposal `json:"proposals"`
}

// RosterSignature is POST /v1/roster/proposals/{digest}/signatures: the
// caller's Ed25519 signature over roster.Message(digest, caller).
type RosterSignature struct {
	Signature []byte `json:"signature"`
}

// RosterChain is GET /v1/roster: the chain from the genesis the service
// pins. Whoever relies on it verifies it from the genesis they pin.
type RosterChain struct {
	Genesis string          `json:"genesis"`
	Version uint64          `json:"version"`
	Digest  string          `json:"digest"`
	Chain   []roster.Signed `json:"chain"`
}

// Checkin is POST /v1/roster/checkins: the caller's signature over
// "mediator-checkin-v1\n" + approver id + "\n" + at + "\n".
type Checkin struct {
	At        time.Time `json:"at"`
	Signature []byte    `json:"signature"`
}

// CheckinAnswer is a recorded check-in.
type CheckinAnswer struct {
	ApproverID string    `json:"approver_id"`
	KeyID      string    `json:"key_id"`
	At         time.Time `json:"at"`
}

// Empty is a body with no fields (revoke, release).
type Empty struct{}

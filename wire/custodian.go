package wire

import (
	"crypto/ed25519"
	"time"

	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/seal"
	"github.com/mediatorhq/mediator/shares"
)

// This file holds the bodies of the custodian service's API (`mediator
// custodian serve`), which the mediator calls as the coordinator and the
// custodian checks for itself.

// CustodianInfo is GET /v1/custodian: the custodian's public keys and the
// revision of the release policy it enforces.
type CustodianInfo struct {
	Name           string            `json:"name"`
	HPKEKey        seal.PublicKey    `json:"hpke_public_key"`
	SigningKey     ed25519.PublicKey `json:"signing_key"`
	PolicyRevision string            `json:"policy_revision"`
	// WitnessKey is the note verifier key of the custodian's cosignatures
	// when it witnesses the audit log.
	WitnessKey string `json:"witness_key,omitempty"`
}

// ShareToStore is one deposit's share for a custodian.
type ShareToStore struct {
	EscrowID       string `json:"escrow_id"`
	ConversationID string `json:"conversation_id"`
	KeyID          string `json:"key_id"`
	Index          int    `json:"index"`
	Commitment     string `json:"commitment"`
	Sealed         []byte `json:"sealed"`
	// Depositor is the depositor's token subject, as the mediator
	// authenticated it; the custodian records it.
	Depositor string `json:"depositor"`
	// DepositedAt, when set, makes this a v2 share: sealed under
	// shares.DepositInfoV2 with EscrowID and DepositedAt.
	DepositedAt string `json:"deposited_at,omitempty"`
}

// StoreShares is POST /v1/shares: shares of concurrent deposits, stored
// together.
type StoreShares struct {
	Shares []ShareToStore `json:"shares"`
}

// ItemError is why one item of a batch failed.
type ItemError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// StoredShare is a custodian's answer for a share it stored but has not
// yet committed: where it keeps it, the hex SHA-256 of the sealed share it
// received, and when. It is not signed: a deposit receipt is signed only
// at commit (POST /v1/shares/commit), after which the custodian refuses to
// abort the share.
type StoredShare struct {
	Locator      string `json:"locator"`
	SealedSHA256 string `json:"sealed_sha256"`
	StoredAt     string `json:"stored_at"`
}

// StoreResult is one share's outcome: stored, or an error.
type StoreResult struct {
	Stored *StoredShare `json:"stored,omitempty"`
	Error  *ItemError   `json:"error,omitempty"`
}

// CommitResult is one share's outcome at commit: the custodian's signed
// deposit receipt, or an error.
type CommitResult struct {
	Receipt *shares.SignedReceipt `json:"receipt,omitempty"`
	Error   *ItemError            `json:"error,omitempty"`
}

// CommitAnswer is the answer to POST /v1/shares/commit (a ShareRefs), one
// result per share in order.
type CommitAnswer struct {
	Results []CommitResult `json:"results"`
}

// StoreAnswer is the answer to POST /v1/shares, one result per share in
// order.
type StoreAnswer struct {
	Results []StoreResult `json:"results"`
}

// ShareRef names a share a custodian keeps: the escrow and the locator its
// deposit receipt gave.
type ShareRef struct {
	EscrowID string `json:"escrow_id"`
	Locator  string `json:"locator"`
}

// ShareRefs is the body of POST /v1/shares/commit, /v1/shares/abort and
// /v1/shares/destroy.
type ShareRefs struct {
	Shares []ShareRef `json:"shares"`
}

// RefResult is the outcome for one ShareRef: "destroyed", "aborted",
// "held", "too_young", "not_found" or "failed".
type RefResult struct {
	EscrowID string `json:"escrow_id"`
	Outcome  string `json:"outcome"`
	Message  string `json:"message,omitempty"`
}

// RefAnswer is the answer to a ShareRefs call, one result per share.
type RefAnswer struct {
	Results []RefResult `json:"results"`
}

// Hold is POST /v1/holds: a legal hold on a conversation, which the
// custodian records and enforces itself.
type Hold struct {
	HoldID         string `json:"hold_id"`
	ConversationID string `json:"conversation_id"`
	// Released asks to lift the hold. A custodian refuses it on this
	// route (403 hold_lift_needs_signatures): lifting takes approvers'
	// signatures (SignedHold).
	Released bool `json:"released,omitempty"`
}

// SignedHold is POST /v1/holds/signed on a custodian: a legal hold placed
// or lifted by roster members' own signatures, delivered with no
// credential, so that neither placing nor lifting depends on the
// mediator. The custodian verifies Roster from the genesis it pins (as a
// pushed chain) and each signature over approval.HoldMessage(HoldID,
// ConversationID, Action, SignerID) with the signer's key in the version
// it then holds. Action "place" needs one officer's or approver's
// signature; "lift" needs approvers (not officers) who meet the roster's
// rule.
type SignedHold struct {
	Roster         []roster.Signed `json:"roster"`
	HoldID         string          `json:"hold_id"`
	ConversationID string          `json:"conversation_id"`
	Action         string          `json:"action"`
	Signatures     []HoldSignature `json:"signatures"`
}

// HoldSignature is one roster member's signature over a hold statement.
type HoldSignature struct {
	SignerID  string `json:"signer_id"`
	Signature []byte `json:"signature"`
}

// HoldRecorded is a custodian's answer to a SignedHold it holds on
// record: Status "recorded" when this call wrote it, "already_recorded"
// when an earlier call did (a hold and its lift are each written once).
// Signers are the members whose signatures this call verified.
type HoldRecorded struct {
	Custodian      string    `json:"custodian"`
	Status         string    `json:"status"`
	HoldID         string    `json:"hold_id"`
	ConversationID string    `json:"conversation_id"`
	Action         string    `json:"action"`
	Signers        []string  `json:"signers"`
	RecordedAt     time.Time `json:"recorded_at"`
	RosterVersion  uint64    `json:"roster_version"`
}

// EvidenceApproval is one approval as the mediator recorded it; the
// custodian verifies the signature with the approver keys it trusts.
type EvidenceApproval struct {
	ApproverID string    `json:"approver_id"`
	Decision   string    `json:"decision"`
	Signature  []byte    `json:"signature"`
	ApprovedAt time.Time `json:"approved_at"`
}

// ReleaseEvidence is POST /v1/releases: the request exactly as approvers
// signed it, the approvals, and the custodian's shares the mediator asks
// for.
type ReleaseEvidence struct {
	Canonical []byte `json:"canonical"`
	// OfficerSignature is the filing officer's Ed25519 signature over
	// approval.RequestMessage(digest of Canonical); the custodian checks
	// it with the officer's key in the roster it verified.
	OfficerSignature []byte             `json:"officer_signature"`
	Approvals        []EvidenceApproval `json:"approvals"`
	// Roster is the roster chain from its genesis: the custodian verifies
	// it from the genesis it pins and takes approvers from its last
	// version.
	Roster []roster.Signed `json:"roster"`
	// Log, for a custodian that witnesses the audit log, proves the
	// request and the approvals are in it (LogEvidence).
	Log    *LogEvidence `json:"log,omitempty"`
	Shares []ShareRef   `json:"shares"`
}

// CustodianShare is one share re-sealed to the request's recipient, with the
// custodian's signed release receipt.
type CustodianShare struct {
	EscrowID string                `json:"escrow_id"`
	Index    int                   `json:"index"`
	Sealed   []byte                `json:"sealed"`
	Receipt  *shares.SignedReceipt `json:"receipt,omitempty"`
	Error    *ItemError            `json:"error,omitempty"`
}

// ReleaseAnswer is the answer to POST /v1/releases when the custodian's
// checks pass: one result per share asked for. When they do not, it answers
// 403 custodian_refused with its reasons.
type ReleaseAnswer struct {
	PolicyRevision string           `json:"policy_revision"`
	Shares         []CustodianShare `json:"shares"`
}

// RewrapAnswer is POST /v1/rewrap (the custodian's operator): what moved to
// the current wrapping key.
type RewrapAnswer struct {
	Rewrapped int      `json:"rewrapped"`
	Unchanged int      `json:"unchanged"`
	Failed    []string `json:"failed"`
}

// LogEvidence proves that a release's request and approvals are in the
// audit log: each entry's leaf and its inclusion proof in the tree of
// TreeSize entries, a checkpoint the custodian itself cosigned as a
// witness.
type LogEvidence struct {
	TreeSize int64      `json:"tree_size"`
	Entries  []LogEntry `json:"entries"`
}

// LogEntry is one audit log entry and its inclusion proof.
type LogEntry struct {
	Seq   int64    `json:"seq"`
	Leaf  []byte   `json:"leaf"`
	Proof [][]byte `json:"proof"`
}

// RosterPush is POST /v1/roster on a custodian: a roster chain from its
// genesis, from anyone. The chain authenticates itself: the custodian
// verifies it from the genesis it pins and records its last version if
// that is newer than the newest it has verified.
type RosterPush struct {
	Chain []roster.Signed `json:"chain"`
}

// CustodianRoster is the newest roster version a custodian has verified
// from the genesis it pins (version 0 and no digest when it has verified
// none): the answer to POST /v1/roster and GET /v1/roster/status on a
// custodian. Approvals count there only as this version or a later one
// says.
type CustodianRoster struct {
	Custodian string `json:"custodian"`
	Genesis   string `json:"genesis"`
	Version   uint64 `json:"version"`
	Digest    string `json:"digest"`
}

// Veto is POST /v1/vetoes on a custodian: an approver's deny vote on a
// request, delivered by the approver's own tool rather than through the
// mediator, so that a mediator that withholds it cannot hide it. It
// authenticates itself: the custodian parses the request's id and digest
// from Canonical, verifies Roster from the genesis it pins (as a pushed
// chain), and the Signature over approval.Message(id, digest, "deny",
// ApproverID) with ApproverID's key in the version it then holds.
type Veto struct {
	Roster     []roster.Signed `json:"roster"`
	Canonical  []byte          `json:"canonical"`
	ApproverID string          `json:"approver_id"`
	Decision   string          `json:"decision"`
	Signature  []byte          `json:"signature"`
}

// VetoRecorded is a custodian's answer to a Veto it holds on record:
// Status "recorded" when this call wrote it, "already_recorded" when an
// earlier one did (the record is written once). From then on the
// custodian refuses every release of RequestID while ApproverID's key in
// the roster in force verifies the vote.
type VetoRecorded struct {
	Custodian     string    `json:"custodian"`
	Status        string    `json:"status"`
	RequestID     string    `json:"request_id"`
	Digest        string    `json:"digest"`
	ApproverID    string    `json:"approver_id"`
	RecordedAt    time.Time `json:"recorded_at"`
	RosterVersion uint64    `json:"roster_version"`
}

// Revocation is POST /v1/revocations on a custodian: the filing
// officer's withdrawal of their request, delivered by the officer's own
// tool rather than through the mediator, so that a mediator that ignores
// it cannot still have the request released. It authenticates itself:
// the custodian parses the request's id, digest and requester from
// Canonical, verifies Roster from the genesis it pins (as a pushed
// chain), and the Signature over approval.RevocationMessage(id, digest)
// with the key of OfficerID, who must be the request's requester and an
// officer of the version it then holds.
type Revocation struct {
	Roster    []roster.Signed `json:"roster"`
	Canonical []byte          `json:"canonical"`
	OfficerID string          `json:"officer_id"`
	Signature []byte          `json:"signature"`
}

// RevocationRecorded is a custodian's answer to a Revocation it holds on
// record: Status "recorded" when this call wrote it, "already_recorded"
// when an earlier one did (the record is written once). From then on the
// custodian refuses every release of the request RequestID with digest
// Digest.
type RevocationRecorded struct {
	Custodian     string    `json:"custodian"`
	Status        string    `json:"status"`
	RequestID     string    `json:"request_id"`
	Digest        string    `json:"digest"`
	OfficerID     string    `json:"officer_id"`
	RecordedAt    time.Time `json:"recorded_at"`
	RosterVersion uint64    `json:"roster_version"`
}

// StatusQuery is POST /v1/shares/status: which shares of this key does
// the custodian keep? The answer is a shares.SignedInventory.
type StatusQuery struct {
	ConversationID string `json:"conversation_id"`
	KeyID          string `json:"key_id"`
}

// InventoryQuery is POST /v1/shares/inventory: which shares did the
// custodian store in [Since, Until)? The answer is a
// shares.SignedInventory.
type InventoryQuery struct {
	Since time.Time `json:"since"`
	Until time.Time `json:"until"`
}

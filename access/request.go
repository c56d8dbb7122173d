package access

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/mediatorhq/mediator/redact"
)

// Status is where a request is in its life. pending is the only state with
// a way out; the four others are final.
type Status string

// The request states.
const (
	StatusPending  Status = "pending"
	StatusReleased Status = "released"
	StatusDenied   Status = "denied"
	StatusExpired  Status = "expired"
	StatusRevoked  Status = "revoked"
)

// ParseStatus accepts the five state names.
func ParseStatus(s string) (Status, bool) {
	switch st := Status(s); st {
	case StatusPending, StatusReleased, StatusDenied, StatusExpired, StatusRevoked:
		return st, true
	}
	return "", false
}

// Draft is a request as an officer files it.
type Draft struct {
	CaseID        string
	LegalBasis    string
	WarrantRef    string
	Jurisdiction  string
	Justification string
	Scope         Scope
	Recipient     RecipientKey
	ExpiresAt     time.Time
}

// Scope is what a request covers: the escrowed keys of these conversations
// deposited within [From, To].
type Scope struct {
	ConversationIDs []string
	From, To        time.Time
}

// Request is a filed lawful-access request.
type Request struct {
	ID        string
	Requester string // the filing officer's token subject
	Draft
	CreatedAt time.Time
	// Canonical is the RFC 8785 JSON of the request (see Canonical); Digest
	// is "sha256:" + hex SHA-256 of it, what approvers sign.
	Canonical []byte
	Digest    string
	AuditSeq  int64

	// Status is the request's state now: its final state if it has one,
	// expired once ExpiresAt has passed, else pending.
	Status Status
	// Final is set once the request left pending.
	Final *Final
	// DeniedReleases counts release attempts the policy denied.
	DeniedReleases int
}

// Final is a request's one transition out of pending.
type Final struct {
	Status     Status
	By         string // who or what caused it ("mediator" for expiry and the denial lock)
	DecisionID string // the allowing (released) or last denying (denied) decision, if any
	AuditSeq   int64
	At         time.Time
}

// Limits on a draft.
const (
	maxIDLen            = 128
	maxConversations    = 1000
	maxJustificationLen = 2000
	maxWarrantRefLen    = 256
	// maxRequestLifetime bounds expires_at: a request is for an
	// investigation step, not a standing permission.
	maxRequestLifetime = 90 * 24 * time.Hour
)

var (
	legalBasisPattern   = regexp.MustCompile(`^[a-z0-9_]{1,64}$`)
	jurisdictionPattern = regexp.MustCompile(`^[A-Z][A-Z0-9-]{1,15}$`)
)

// requestVersion names the canonical request format inside it, so that a
// signature over one format can never be read as over another.
const requestVersion = "mediator-access-request-v1"

// canonicalRequest is the JSON the digest covers. Times are RFC 3339 in UTC
// to the second.
type canonicalRequest struct {
	Version       string         `json:"v"`
	ID            string         `json:"id"`
	Requester     string         `json:"requester"`
	CaseID        string         `json:"case_id"`
	LegalBasis    string         `json:"legal_basis"`
	WarrantRef    string         `json:"warrant_ref"`
	Jurisdiction  string         `json:"jurisdiction"`
	Justification string         `json:"justification"`
	Scope         canonicalScope `json:"scope"`
	Recipient     canonicalKey   `json:"recipient_public_key"`
	CreatedAt     string         `json:"created_at"`
	ExpiresAt     string         `json:"expires_at"`
}

type canonicalScope struct {
	ConversationIDs []string `json:"conversation_ids"`
	From            string   `json:"from"`
	To              string   `json:"to"`
}

type canonicalKey struct {
	KEMID     uint16 `json:"kem_id"`
	PublicKey string `json:"public_key"`
}

// formatTime is how request times appear in the canonical JSON.
func formatTime(t time.Time) string { return t.UTC().Truncate(time.Second).Format(time.RFC3339) }

// Canonical returns the RFC 8785 canonical JSON of r's identity and content:
// every field an approver must see, none that changes later (not the
// status). The digest is SHA-256 of exactly these bytes.
func Canonical(r Request) ([]byte, error) {
	// encoding/json would replace invalid UTF-8 with U+FFFD, and the digest
	// would then cover text other than the request's: refuse it instead.
	for _, s := range append([]string{r.ID, r.Requester, r.CaseID, r.LegalBasis, r.WarrantRef, r.Jurisdiction, r.Justification},
		r.Scope.ConversationIDs...) {
		if !utf8.ValidString(s) {
			return nil, fmt.Errorf("%w: text must be valid UTF-8", ErrInvalid)
		}
	}
	raw, err := json.Marshal(canonicalRequest{
		Version: requestVersion, ID: r.ID, Requester: r.Requester, CaseID: r.CaseID, LegalBasis: r.LegalBasis,
		WarrantRef: r.WarrantRef, Jurisdiction: r.Jurisdiction, Justification: r.Justification,
		Scope:     canonicalScope{ConversationIDs: r.Scope.ConversationIDs, From: formatTime(r.Scope.From), To: formatTime(r.Scope.To)},
		Recipient: canonicalKey{KEMID: r.Recipient.KEMID, PublicKey: base64.StdEncoding.EncodeToString(r.Recipient.PublicKey)},
		CreatedAt: formatTime(r.CreatedAt), ExpiresAt: formatTime(r.ExpiresAt),
	})
	if err != nil {
		return nil, fmt.Errorf("access: canonical request: %w", err)
	}
	v := jsontext.Value(raw)
	if err := v.Canonicalize(); err != nil {
		return nil, fmt.Errorf("access: canonical request: %w", err)
	}
	return v, nil
}

// Digest returns "sha256:" + hex SHA-256 of canonical.
func Digest(canonical []byte) string {
	sum := sha256.Sum256(canonical)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Approval decisions.
const (
	DecisionApprove = "approve"
	DecisionDeny    = "deny"
)

// ApprovalMessage is exactly what an approver signs with Ed25519:
// "mediator-approval-v1\n" + request id + "\n" + digest + "\n" + decision +
// "\n" + approver id + "\n". Binding all four means a signature counts for
// one decision by one person on one request as filed, and nothing else.
func ApprovalMessage(requestID, digest, decision, approverID string) []byte {
	return []byte("mediator-approval-v1\n" + requestID + "\n" + digest + "\n" + decision + "\n" + approverID + "\n")
}

// VerifyApproval reports whether sig is pub's Ed25519 signature over
// ApprovalMessage(requestID, digest, decision, approverID). Malformed keys
// and signatures are simply not valid.
func VerifyApproval(pub ed25519.PublicKey, requestID, digest, decision, approverID string, sig []byte) bool {
	if len(pub) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize {
		return false
	}
	return ed25519.Verify(pub, ApprovalMessage(requestID, digest, decision, approverID), sig)
}

// Approval is one approver's signed vote on a request.
type Approval struct {
	RequestID  string
	ApproverID string
	Decision   string
	Signature  []byte
	// KeyID names the approver key the signature verified with.
	KeyID string
	// Roles are the approver's roles when the approval was made.
	Roles []string
	// ByRequester: the requester approved their own request. Recorded, and
	// it counts for nothing.
	ByRequester bool
	ApprovedAt  time.Time
	AuditSeq    int64
}

// Approver is a person whose signed approvals the release policy weighs.
type Approver struct {
	ID    string // the sub of their bearer token
	Roles []string
	// Keys are their Ed25519 keys, oldest first; the last is current.
	Keys         []ApproverKey
	Active       bool
	RegisteredAt time.Time
	AuditSeq     int64
}

// ApproverKey is one registered Ed25519 public key.
type ApproverKey struct {
	ID        string // KeyID of PublicKey
	PublicKey ed25519.PublicKey
	AddedAt   time.Time
	AuditSeq  int64
}

// CurrentKey is the key new signatures must verify with.
func (a Approver) CurrentKey() (ApproverKey, bool) {
	if len(a.Keys) == 0 {
		return ApproverKey{}, false
	}
	return a.Keys[len(a.Keys)-1], true
}

// Key returns the key with id.
func (a Approver) Key(id string) (ApproverKey, bool) {
	for _, k := range a.Keys {
		if k.ID == id {
			return k, true
		}
	}
	return ApproverKey{}, false
}

// KeyID names an Ed25519 public key: "ed25519:" and the first 16 bytes of
// its SHA-256, in hex.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return "ed25519:" + hex.EncodeToString(sum[:16])
}

var approverRolePattern = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)

// validID checks an id that is embedded in signed messages and info
// strings: 1–128 bytes of printable UTF-8, no newline.
func validID(name, v string) error {
	if v == "" || len(v) > maxIDLen || !redact.Printable(v) {
		return fmt.Errorf("%w: %s must be 1–%d printable characters", ErrInvalid, name, maxIDLen)
	}
	return nil
}

// validateDraft checks a draft filed at now.
func validateDraft(d Draft, now time.Time) error {
	if err := validID("case_id", d.CaseID); err != nil {
		return err
	}
	if !legalBasisPattern.MatchString(d.LegalBasis) {
		return fmt.Errorf("%w: legal_basis must be 1–64 of a–z, 0–9 and _ (such as court_order)", ErrInvalid)
	}
	if d.WarrantRef == "" || len(d.WarrantRef) > maxWarrantRefLen || !redact.Printable(d.WarrantRef) {
		return fmt.Errorf("%w: warrant_ref must be 1–%d printable characters", ErrInvalid, maxWarrantRefLen)
	}
	if !jurisdictionPattern.MatchString(d.Jurisdiction) {
		return fmt.Errorf("%w: jurisdiction must be an upper-case code such as US, EU or GB", ErrInvalid)
	}
	j := strings.TrimSpace(d.Justification)
	if j == "" || len(d.Justification) > maxJustificationLen || !redact.Printable(strings.ReplaceAll(d.Justification, "\n", " ")) {
		return fmt.Errorf("%w: justification must be 1–%d printable characters", ErrInvalid, maxJustificationLen)
	}
	// The request is kept and logged forever: identifiers of people belong
	// in the case file it references, not here.
	if redact.RedactText(d.Justification) != d.Justification {
		return ErrIdentifierInText
	}
	ids := d.Scope.ConversationIDs
	if len(ids) == 0 || len(ids) > maxConversations {
		return fmt.Errorf("%w: scope.conversation_ids must list 1–%d conversations", ErrInvalid, maxConversations)
	}
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if err := validID("each scope.conversation_ids entry", id); err != nil {
			return err
		}
		if seen[id] {
			return fmt.Errorf("%w: scope.conversation_ids lists %q twice", ErrInvalid, id)
		}
		seen[id] = true
	}
	if d.Scope.From.IsZero() || d.Scope.To.IsZero() || !d.Scope.From.Before(d.Scope.To) {
		return fmt.Errorf("%w: scope.from must be before scope.to", ErrInvalid)
	}
	if err := d.Recipient.Validate(); err != nil {
		return fmt.Errorf("%w: recipient_public_key: %v", ErrInvalid, err)
	}
	if !d.ExpiresAt.After(now) || d.ExpiresAt.After(now.Add(maxRequestLifetime)) {
		return fmt.Errorf("%w: expires_at must be in the future, at most %d days ahead", ErrInvalid, int(maxRequestLifetime.Hours()/24))
	}
	return nil
}

// Errors a caller maps to answers.
var (
	// ErrInvalid wraps a request that breaks a rule (422).
	ErrInvalid = errors.New("access: invalid request")
	// ErrIdentifierInText: free text carries a phone number, an email
	// address or a URL (422).
	ErrIdentifierInText = errors.New("access: the justification contains a phone number, email address or URL; refer to the case file instead")
	// ErrNotFound: no such request or approver (404).
	ErrNotFound = errors.New("access: not found")
	// ErrApproverExists: the approver id is registered (409).
	ErrApproverExists = errors.New("access: approver already registered")
	// ErrNotRequester: only the requesting officer may do this (403).
	ErrNotRequester = errors.New("access: only the requesting officer may do this")
	// ErrFinal: the request is in a final state (409).
	ErrFinal = errors.New("access: the request is final")
	// ErrUnknownApprover: the caller is not a registered approver (403).
	ErrUnknownApprover = errors.New("access: the caller is not a registered approver")
	// ErrApproverInactive: the approver was deactivated (422).
	ErrApproverInactive = errors.New("access: the approver is deactivated")
	// ErrBadSignature: the signature does not verify over this request's
	// approval message with the approver's current key (422).
	ErrBadSignature = errors.New("access: the signature does not verify over this request's approval message with the approver's registered key")
	// ErrSelfApproval: the requester approved their own request; recorded,
	// counts for nothing (422).
	ErrSelfApproval = errors.New("access: the requester's own approval is recorded but counts for nothing")
	// ErrDuplicateApproval: this approver already voted on the request (409).
	ErrDuplicateApproval = errors.New("access: this approver has already voted on this request")
	// ErrDenied: the policy denied the release (403); see DeniedError.
	ErrDenied = errors.New("access: the release policy denied the release")
	// ErrUnavailable wraps a database, escrow or policy failure (503).
	ErrUnavailable = errors.New("access: a dependency is unavailable")
)

// FinalError says which final state a request is in.
type FinalError struct{ Status Status }

func (e *FinalError) Error() string { return fmt.Sprintf("access: the request is %s", e.Status) }

// Is makes a FinalError match ErrFinal.
func (e *FinalError) Is(target error) bool { return target == ErrFinal }

// DeniedError carries the policy's decision and whether this denial locked
// the request as denied.
type DeniedError struct {
	DecisionID string
	Reasons    []string
	Locked     bool
}

func (e *DeniedError) Error() string {
	return "access: release denied: " + strings.Join(e.Reasons, "; ")
}

// Is makes a DeniedError match ErrDenied.
func (e *DeniedError) Is(target error) bool { return target == ErrDenied }

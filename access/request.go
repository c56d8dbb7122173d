package access

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/invalid"
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

// Draft is a request as an officer's client built and signed it: every
// field, its ID and CreatedAt included; Create sets Requester to the
// caller.
type Draft = approval.Request

// Scope is what a request covers: the escrowed keys of these conversations
// deposited within [From, To].
type Scope = approval.Scope

// Request is a filed lawful-access request: the signed document (every
// field approvers sign) and its state.
type Request struct {
	approval.Request
	// Canonical is the RFC 8785 JSON of the request (see Canonical); Digest
	// is "sha256:" + hex SHA-256 of it, what approvers sign.
	Canonical []byte
	Digest    string
	// OfficerSignature is the filing officer's Ed25519 signature over
	// approval.RequestMessage(Digest): only a request it verifies for,
	// with the officer's key in the roster in force, is approved or
	// released.
	OfficerSignature []byte
	AuditSeq         int64

	// Status is the request's state now: its final state if it has one,
	// expired once ExpiresAt has passed, else pending.
	Status Status
	// Final is set once the request left pending.
	Final *Final
	// DeniedReleases counts release attempts the policy denied.
	DeniedReleases int

	// Corrupt: the stored canonical bytes do not parse or do not match the
	// stored digest. Nothing is approved or released for such a request.
	Corrupt bool
	// Differs names the stored columns that disagree with the canonical
	// request. The service ignores the columns; audit verify reports them.
	Differs []string
}

// Differs names the fields of r (as read from its columns) that differ
// from its canonical request, or ["canonical"] if that does not parse.
func Differs(r Request) []string {
	signed, err := approval.Parse(r.Canonical)
	if err != nil || approval.Digest(r.Canonical) != r.Digest || signed.ID != r.ID {
		return []string{"canonical"}
	}
	var out []string
	check := func(name string, same bool) {
		if !same {
			out = append(out, name)
		}
	}
	check("requester", signed.Requester == r.Requester)
	check("case_id", signed.CaseID == r.CaseID)
	check("legal_basis", signed.LegalBasis == r.LegalBasis)
	check("warrant_ref", signed.WarrantRef == r.WarrantRef)
	check("jurisdiction", signed.Jurisdiction == r.Jurisdiction)
	check("justification", signed.Justification == r.Justification)
	check("conversation_ids", slices.Equal(signed.Scope.ConversationIDs, r.Scope.ConversationIDs))
	check("scope_from", signed.Scope.From.Equal(r.Scope.From))
	check("scope_to", signed.Scope.To.Equal(r.Scope.To))
	check("recipient_public_key", signed.Recipient.KEMID == r.Recipient.KEMID && bytes.Equal(signed.Recipient.PublicKey, r.Recipient.PublicKey))
	check("created_at", signed.CreatedAt.Equal(r.CreatedAt))
	check("expires_at", signed.ExpiresAt.Equal(r.ExpiresAt))
	return out
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

// Canonical returns the RFC 8785 canonical JSON of r's identity and content
// (approval.Request.Canonical): every field an approver must see, none that
// changes later (not the status). The digest is SHA-256 of exactly these
// bytes.
func Canonical(r Request) ([]byte, error) {
	c, err := r.Request.Canonical()
	if errors.Is(err, approval.ErrNotUTF8) {
		return nil, invalid.Input("request", "text must be valid UTF-8")
	}
	return c, err
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

// validID checks an id that is embedded in signed messages and info
// strings: 1–128 bytes of printable UTF-8, no newline.
func validID(name, v string) error {
	if v == "" || len(v) > maxIDLen || !redact.Printable(v) {
		return invalid.Input(name, fmt.Sprintf("must be 1–%d printable characters", maxIDLen))
	}
	return nil
}

// validateDraft checks a draft filed at now.
func validateDraft(d Draft, now time.Time) error {
	if err := validID("case_id", d.CaseID); err != nil {
		return err
	}
	if !legalBasisPattern.MatchString(d.LegalBasis) {
		return invalid.Input("legal_basis", "must be 1–64 of a–z, 0–9 and _ (such as court_order)")
	}
	if d.WarrantRef == "" || len(d.WarrantRef) > maxWarrantRefLen || !redact.Printable(d.WarrantRef) {
		return invalid.Input("warrant_ref", fmt.Sprintf("must be 1–%d printable characters", maxWarrantRefLen))
	}
	if !jurisdictionPattern.MatchString(d.Jurisdiction) {
		return invalid.Input("jurisdiction", "must be an upper-case code such as US, EU or GB")
	}
	j := strings.TrimSpace(d.Justification)
	if j == "" || len(d.Justification) > maxJustificationLen || !redact.Printable(strings.ReplaceAll(d.Justification, "\n", " ")) {
		return invalid.Input("justification", fmt.Sprintf("must be 1–%d printable characters", maxJustificationLen))
	}
	// The request is kept and logged forever: identifiers of people belong
	// in the case file it references, not here.
	if redact.ContainsIdentifier(d.Justification) {
		return invalid.Coded(redact.CodeIdentifierInOpaqueField, "justification", "contains a phone number, email address or URL; refer to the case file instead")
	}
	ids := d.Scope.ConversationIDs
	if len(ids) == 0 || len(ids) > maxConversations {
		return invalid.Input("scope.conversation_ids", fmt.Sprintf("must list 1–%d conversations", maxConversations))
	}
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if err := validID("each scope.conversation_ids entry", id); err != nil {
			return err
		}
		// A conversation is named by its pseudonym. The ids deposits
		// carried before pseudonyms (stored as sent, never shaped like a
		// number or an address) still name their conversations.
		if !redact.NamesConversation(id) {
			return invalid.Coded(redact.CodeNotAPseudonym, "scope.conversation_ids", "must be conversation pseudonyms (ps1_…): the CLI computes them from the real ids")
		}
		if seen[id] {
			return invalid.Input("scope.conversation_ids", fmt.Sprintf("lists %q twice", id))
		}
		seen[id] = true
	}
	if d.Scope.From.IsZero() || d.Scope.To.IsZero() || !d.Scope.From.Before(d.Scope.To) {
		return invalid.Input("scope.from", "must be before scope.to")
	}
	if err := d.Recipient.Validate(); err != nil {
		return invalid.Input("recipient_public_key", err.Error())
	}
	if !d.ExpiresAt.After(now) || d.ExpiresAt.After(now.Add(maxRequestLifetime)) {
		return invalid.Input("expires_at", fmt.Sprintf("must be in the future, at most %d days ahead", int(maxRequestLifetime.Hours()/24)))
	}
	return nil
}

// Errors a caller maps to answers. Input that breaks a rule is an
// *invalid.Error (422).
var (
	// ErrNotFound: no such request (404).
	ErrNotFound = errors.New("access: not found")
	// ErrNotRequester: only the requesting officer may do this (403).
	ErrNotRequester = errors.New("access: only the requesting officer may do this")
	// ErrFinal: the request is in a final state (409).
	ErrFinal = errors.New("access: the request is final")
	// ErrBadSignature: the signature does not verify over this request's
	// approval message with the approver's current key (422).
	ErrBadSignature = errors.New("access: the signature does not verify over this request's approval message with the approver's registered key")
	// ErrSelfApproval matches a *SelfApprovalError (422).
	ErrSelfApproval = errors.New("access: the requester's own approval is recorded but counts for nothing")
	// ErrNotOfficer: the requester is not an officer of the roster in
	// force (403).
	ErrNotOfficer = errors.New("access: the requester is not an officer of the roster in force")
	// ErrBadOfficerSignature: the request does not carry its officer's
	// signature over its digest, with their key in the roster in force
	// (422).
	ErrBadOfficerSignature = errors.New("access: the request is not signed by its officer with their key in the roster in force")
	// ErrDuplicateApproval: this approver already voted on the request (409).
	ErrDuplicateApproval = errors.New("access: this approver has already voted on this request")
	// ErrDenied: the policy denied the release (403); see DeniedError.
	ErrDenied = errors.New("access: the release policy denied the release")
	// ErrUnavailable wraps a database, escrow or policy failure (503).
	ErrUnavailable = errors.New("access: a dependency is unavailable")
)

// SelfApprovalError: the requester approved their own request. The vote is
// recorded, at AuditSeq in the log, and counts for nothing.
type SelfApprovalError struct {
	AuditSeq int64
}

func (e *SelfApprovalError) Error() string { return ErrSelfApproval.Error() }

// Is makes a SelfApprovalError match ErrSelfApproval.
func (e *SelfApprovalError) Is(target error) bool { return target == ErrSelfApproval }

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

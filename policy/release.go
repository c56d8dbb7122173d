package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/google/uuid"
	"github.com/open-policy-agent/opa/v1/rego"
)

// ReleaseInput is the input document of data.mediator.release.decision:
// the request, every approval on it as verified now, and the time of the
// decision. Times are sent as RFC 3339 in UTC.
type ReleaseInput struct {
	Now       time.Time         `json:"now"`
	Request   ReleaseRequest    `json:"request"`
	Approvals []ReleaseApproval `json:"approvals"`
}

// LastApproval is when the last approval that can count was made: one
// whose signature verified, by an approver active in the roster in force,
// to approve (zero without one). A request releases only the escrows
// stored by then: what existed when it was approved. Approval times are
// the mediator's record; the signature does not cover them.
func (in ReleaseInput) LastApproval() time.Time {
	var last time.Time
	for _, a := range in.Approvals {
		if a.SignatureVerified && a.ApproverActive && a.Decision == "approve" && a.ApprovedAt.After(last) {
			last = a.ApprovedAt
		}
	}
	return last
}

// ReleaseRequest is what the policy sees of a request.
type ReleaseRequest struct {
	ID           string       `json:"id"`
	Requester    string       `json:"requester"`
	CaseID       string       `json:"case_id"`
	LegalBasis   string       `json:"legal_basis"`
	Jurisdiction string       `json:"jurisdiction"`
	Scope        ReleaseScope `json:"scope"`
	CreatedAt    time.Time    `json:"created_at"`
	ExpiresAt    time.Time    `json:"expires_at"`
}

// ReleaseScope is a request's conversations and time window.
type ReleaseScope struct {
	ConversationIDs []string  `json:"conversation_ids"`
	From            time.Time `json:"from"`
	To              time.Time `json:"to"`
}

// ReleaseApproval is one approval as the policy sees it.
type ReleaseApproval struct {
	ApproverID string   `json:"approver_id"`
	Roles      []string `json:"roles"`
	// Decision is "approve" or "deny".
	Decision   string    `json:"decision"`
	ApprovedAt time.Time `json:"approved_at"`
	// SignatureVerified: the signature verified, at decision time, over
	// this request's approval message with the key it was made with.
	SignatureVerified bool `json:"signature_verified"`
	// ApproverActive: the approver has not been deactivated since.
	ApproverActive bool `json:"approver_active"`
}

// Decision is a release decision and the record that makes it provable:
// which policy made it, over which input.
type Decision struct {
	// ID is a random UUID naming this decision in the log and in answers.
	ID      string
	Allow   bool
	Reasons []string
	// PolicyRevision is the Revision of the engine that decided.
	PolicyRevision string
	// InputHash is "sha256:" + hex SHA-256 of the RFC 8785 canonical JSON
	// of the input document, so the decision can be replayed and checked.
	InputHash string
	DecidedAt time.Time
}

// DecideRelease evaluates the release policy on in. An evaluation error or
// an undefined decision is an error, which callers must treat as a denial.
func (e *Engine) DecideRelease(ctx context.Context, in ReleaseInput) (Decision, error) {
	if in.Approvals == nil {
		in.Approvals = []ReleaseApproval{}
	}
	in.Now = in.Now.UTC()
	raw, err := json.Marshal(in)
	if err != nil {
		return Decision{}, fmt.Errorf("policy: release input: %w", err)
	}
	canon := jsontext.Value(raw)
	if err := canon.Canonicalize(); err != nil {
		return Decision{}, fmt.Errorf("policy: release input: %w", err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return Decision{}, fmt.Errorf("policy: release input: %w", err)
	}
	rs, err := e.release.Eval(ctx, rego.EvalInput(doc))
	if err != nil {
		return Decision{}, fmt.Errorf("policy: evaluate release: %w", err)
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return Decision{}, errors.New("policy: release decision is undefined")
	}
	out, ok := rs[0].Expressions[0].Value.(map[string]any)
	if !ok {
		return Decision{}, errors.New("policy: release decision is not an object")
	}
	allow, ok := out["allow"].(bool)
	if !ok {
		return Decision{}, errors.New("policy: release decision has no boolean allow")
	}
	rawReasons, _ := out["reasons"].([]any)
	reasons := make([]string, 0, len(rawReasons))
	for _, r := range rawReasons {
		s, ok := r.(string)
		if !ok {
			return Decision{}, errors.New("policy: release decision has a reason that is not a string")
		}
		reasons = append(reasons, s)
	}
	if allow && len(reasons) > 0 {
		return Decision{}, errors.New("policy: release decision allows with reasons against it")
	}
	id, err := uuid.NewRandom()
	if err != nil {
		return Decision{}, fmt.Errorf("policy: decision id: %w", err)
	}
	sum := sha256.Sum256(canon)
	return Decision{ID: id.String(), Allow: allow, Reasons: reasons, PolicyRevision: e.revision,
		InputHash: "sha256:" + hex.EncodeToString(sum[:]), DecidedAt: time.Now().UTC()}, nil
}

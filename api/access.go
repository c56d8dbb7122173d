package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/mediatorhq/mediator/access"
)

// AccessWorkflow is the lawful-access workflow (access.Service).
type AccessWorkflow interface {
	RegisterApprover(ctx context.Context, by, id string, roles []string, pub []byte) (access.Approver, error)
	Approvers(ctx context.Context) ([]access.Approver, error)
	AddApproverKey(ctx context.Context, by, id string, pub []byte) (access.Approver, error)
	DeactivateApprover(ctx context.Context, by, id, reason string) (access.Approver, error)
	Create(ctx context.Context, requester string, d access.Draft) (access.Request, error)
	Get(ctx context.Context, id string) (access.Request, []access.Approval, error)
	List(ctx context.Context, status access.Status, limit int) ([]access.Request, error)
	Revoke(ctx context.Context, caller, id string) (access.Request, error)
	Approve(ctx context.Context, approverID, requestID, decision string, signature []byte) (access.Approval, error)
	Release(ctx context.Context, caller, requestID string) (access.Release, error)
}

// Error codes of the workflow.
const (
	codeNotRequester      = "not_requester"
	codeRequestFinal      = "request_final"
	codeNotAnApprover     = "not_an_approver"
	codeApproverInactive  = "approver_inactive"
	codeBadSignature      = "bad_signature"
	codeSelfApproval      = "self_approval"
	codeDuplicateApproval = "duplicate_approval"
	codePolicyDenied      = "policy_denied"
	codeIdentifierInText  = "identifier_in_text"
)

// decodeJSON decodes a JSON body into v, refusing other content types,
// unknown fields and trailing data. It writes the error answer and returns
// false when the body is unusable.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		writeError(w, http.StatusUnsupportedMediaType, codeUnsupportedMediaType, "Content-Type must be application/json")
		return false
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("trailing data after the JSON object")
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, codeBodyTooLarge, "request body too large")
			return false
		}
		writeError(w, http.StatusBadRequest, codeBadRequest, "body is not the expected JSON object: "+jsonProblem(err))
		return false
	}
	return true
}

// jsonProblem says what is wrong with a body in the client's terms: the
// JSON field and the kind of value expected, never Go type names.
func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		want := "another kind of value"
		switch te.Type.Kind() {
		case reflect.String:
			want = "a string"
		case reflect.Bool:
			want = "true or false"
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			want = "an integer in range"
		case reflect.Float32, reflect.Float64:
			want = "a number"
		case reflect.Slice, reflect.Array:
			want = "an array (or, for bytes, a base64 string)"
		case reflect.Struct, reflect.Map:
			want = "an object"
		}
		if te.Field == "" {
			return "the body must be a JSON object"
		}
		return fmt.Sprintf("field %s must be %s", te.Field, want)
	case errors.As(err, &se):
		return fmt.Sprintf("malformed JSON at byte %d", se.Offset)
	case errors.Is(err, io.EOF):
		return "the body is empty"
	}
	// Unknown fields, depth and trailing data: the decoder's words name
	// only the field.
	return strings.TrimPrefix(err.Error(), "json: ")
}

// caller is the authenticated subject; guard admits no one without one.
func caller(r *http.Request) string {
	p, _ := PrincipalFrom(r.Context())
	return p.Subject
}

// accessError writes the answer for a workflow error.
func (s *server) accessError(w http.ResponseWriter, r *http.Request, what string, err error) {
	var fe *access.FinalError
	var de *access.DeniedError
	switch {
	case errors.As(err, &de):
		writeError(w, http.StatusForbidden, codePolicyDenied, "the release policy denied the release: "+strings.Join(de.Reasons, "; "),
			map[string]any{"decision_id": de.DecisionID, "reasons": de.Reasons, "locked": de.Locked})
	case errors.As(err, &fe):
		writeError(w, http.StatusConflict, codeRequestFinal, "the request is "+string(fe.Status)+"; it can no longer change",
			map[string]string{"status": string(fe.Status)})
	case errors.Is(err, access.ErrIdentifierInText):
		writeError(w, http.StatusUnprocessableEntity, codeIdentifierInText, strings.TrimPrefix(err.Error(), "access: "))
	case errors.Is(err, access.ErrInvalid):
		writeError(w, http.StatusUnprocessableEntity, codeValidationFailed, strings.TrimPrefix(err.Error(), "access: invalid request: "))
	case errors.Is(err, access.ErrNotFound):
		writeError(w, http.StatusNotFound, codeNotFound, "no such request or approver")
	case errors.Is(err, access.ErrApproverExists):
		writeError(w, http.StatusConflict, codeConflict, "an approver with that id is registered")
	case errors.Is(err, access.ErrNotRequester):
		writeError(w, http.StatusForbidden, codeNotRequester, "only the officer who filed the request may do this")
	case errors.Is(err, access.ErrUnknownApprover):
		writeError(w, http.StatusForbidden, codeNotAnApprover, "your token's subject is not a registered approver")
	case errors.Is(err, access.ErrApproverInactive):
		writeError(w, http.StatusUnprocessableEntity, codeApproverInactive, "the approver is deactivated; their signatures are refused")
	case errors.Is(err, access.ErrBadSignature):
		writeError(w, http.StatusUnprocessableEntity, codeBadSignature,
			`the signature does not verify with your registered key over "mediator-approval-v1\n" + id + "\n" + digest + "\n" + decision + "\n" + approver id + "\n"`)
	case errors.Is(err, access.ErrDuplicateApproval):
		writeError(w, http.StatusConflict, codeDuplicateApproval, "you have already voted on this request")
	case errors.Is(err, access.ErrUnavailable):
		s.logFailure(r, what, err)
		unavailable(w, "access", "a dependency (database, policy or escrow) is unavailable; nothing was released")
	default:
		s.logFailure(r, what, err)
		writeError(w, http.StatusInternalServerError, codeInternal, what+" failed; quote request id "+RequestIDFrom(r.Context()))
	}
}

type scopeJSON struct {
	ConversationIDs []string  `json:"conversation_ids"`
	From            time.Time `json:"from"`
	To              time.Time `json:"to"`
}

type createRequestBody struct {
	CaseID        string              `json:"case_id"`
	LegalBasis    string              `json:"legal_basis"`
	WarrantRef    string              `json:"warrant_ref"`
	Jurisdiction  string              `json:"jurisdiction"`
	Justification string              `json:"justification"`
	Scope         scopeJSON           `json:"scope"`
	Recipient     access.RecipientKey `json:"recipient_public_key"`
	ExpiresAt     time.Time           `json:"expires_at"`
}

// createRequest is POST /v1/access-requests (officer): 201
// {"id","status","digest","audit_seq"}.
func (s *server) createRequest(w http.ResponseWriter, r *http.Request) {
	var b createRequestBody
	if !decodeJSON(w, r, &b) {
		return
	}
	req, err := s.access.Create(r.Context(), caller(r), access.Draft{
		CaseID: b.CaseID, LegalBasis: b.LegalBasis, WarrantRef: b.WarrantRef, Jurisdiction: b.Jurisdiction,
		Justification: b.Justification, Recipient: b.Recipient, ExpiresAt: b.ExpiresAt,
		Scope: access.Scope{ConversationIDs: b.Scope.ConversationIDs, From: b.Scope.From, To: b.Scope.To},
	})
	if err != nil {
		s.accessError(w, r, "access request", err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"id": req.ID, "status": req.Status, "digest": req.Digest, "audit_seq": req.AuditSeq})
}

type finalJSON struct {
	Status     access.Status `json:"status"`
	By         string        `json:"by"`
	DecisionID string        `json:"decision_id,omitempty"`
	At         time.Time     `json:"at"`
	AuditSeq   int64         `json:"audit_seq"`
}

type approvalJSON struct {
	ApproverID  string    `json:"approver_id"`
	Decision    string    `json:"decision"`
	Roles       []string  `json:"roles"`
	ByRequester bool      `json:"by_requester"`
	KeyID       string    `json:"key_id"`
	Signature   []byte    `json:"signature"`
	ApprovedAt  time.Time `json:"approved_at"`
	AuditSeq    int64     `json:"audit_seq"`
}

type requestJSON struct {
	ID             string              `json:"id"`
	Status         access.Status       `json:"status"`
	Requester      string              `json:"requester"`
	CaseID         string              `json:"case_id"`
	LegalBasis     string              `json:"legal_basis"`
	WarrantRef     string              `json:"warrant_ref"`
	Jurisdiction   string              `json:"jurisdiction"`
	Justification  string              `json:"justification"`
	Scope          scopeJSON           `json:"scope"`
	Recipient      access.RecipientKey `json:"recipient_public_key"`
	CreatedAt      time.Time           `json:"created_at"`
	ExpiresAt      time.Time           `json:"expires_at"`
	Digest         string              `json:"digest"`
	Canonical      []byte              `json:"canonical"` // base64 of exactly the bytes the digest covers
	AuditSeq       int64               `json:"audit_seq"`
	DeniedReleases int                 `json:"denied_releases"`
	Final          *finalJSON          `json:"final,omitempty"`
	Approvals      []approvalJSON      `json:"approvals,omitempty"`
}

func requestView(q access.Request, approvals []access.Approval) requestJSON {
	out := requestJSON{ID: q.ID, Status: q.Status, Requester: q.Requester, CaseID: q.CaseID, LegalBasis: q.LegalBasis,
		WarrantRef: q.WarrantRef, Jurisdiction: q.Jurisdiction, Justification: q.Justification,
		Scope:     scopeJSON{ConversationIDs: q.Scope.ConversationIDs, From: q.Scope.From, To: q.Scope.To},
		Recipient: q.Recipient, CreatedAt: q.CreatedAt, ExpiresAt: q.ExpiresAt, Digest: q.Digest, Canonical: q.Canonical,
		AuditSeq: q.AuditSeq, DeniedReleases: q.DeniedReleases}
	if f := q.Final; f != nil {
		out.Final = &finalJSON{Status: f.Status, By: f.By, DecisionID: f.DecisionID, At: f.At, AuditSeq: f.AuditSeq}
	}
	for _, a := range approvals {
		out.Approvals = append(out.Approvals, approvalJSON{ApproverID: a.ApproverID, Decision: a.Decision, Roles: a.Roles,
			ByRequester: a.ByRequester, KeyID: a.KeyID, Signature: a.Signature, ApprovedAt: a.ApprovedAt, AuditSeq: a.AuditSeq})
	}
	return out
}

// getRequest is GET /v1/access-requests/{id}: the request, its canonical
// form and digest (so an approver can check what they sign), and its
// approvals.
func (s *server) getRequest(w http.ResponseWriter, r *http.Request) {
	q, approvals, err := s.access.Get(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		s.accessError(w, r, "access request", err)
		return
	}
	writeJSON(w, http.StatusOK, requestView(q, approvals))
}

// listRequests is GET /v1/access-requests?status=&limit=.
func (s *server) listRequests(w http.ResponseWriter, r *http.Request) {
	var status access.Status
	if v := r.URL.Query().Get("status"); v != "" {
		st, ok := access.ParseStatus(v)
		if !ok {
			writeError(w, http.StatusUnprocessableEntity, codeValidationFailed, "status must be pending, released, denied, expired or revoked")
			return
		}
		status = st
	}
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 500 {
			writeError(w, http.StatusUnprocessableEntity, codeValidationFailed, "limit must be 1–500")
			return
		}
		limit = n
	}
	qs, err := s.access.List(r.Context(), status, limit)
	if err != nil {
		s.accessError(w, r, "access request list", err)
		return
	}
	out := make([]requestJSON, 0, len(qs))
	for _, q := range qs {
		out = append(out, requestView(q, nil))
	}
	writeJSON(w, http.StatusOK, map[string]any{"requests": out})
}

// revokeRequest is POST /v1/access-requests/{id}/revoke (the requester).
func (s *server) revokeRequest(w http.ResponseWriter, r *http.Request) {
	q, err := s.access.Revoke(r.Context(), caller(r), chi.URLParam(r, "id"))
	if err != nil {
		s.accessError(w, r, "access request revocation", err)
		return
	}
	writeJSON(w, http.StatusOK, requestView(q, nil))
}

type approvalBody struct {
	Decision  string `json:"decision"`
	Signature []byte `json:"signature"` // standard base64
}

// approveRequest is POST /v1/access-requests/{id}/approvals (approver):
// 201 when recorded; the requester's own approval is recorded but answered
// 422 self_approval, since it counts for nothing.
func (s *server) approveRequest(w http.ResponseWriter, r *http.Request) {
	var b approvalBody
	if !decodeJSON(w, r, &b) {
		return
	}
	a, err := s.access.Approve(r.Context(), caller(r), chi.URLParam(r, "id"), b.Decision, b.Signature)
	if errors.Is(err, access.ErrSelfApproval) {
		writeError(w, http.StatusUnprocessableEntity, codeSelfApproval,
			"you filed this request: your approval is recorded but counts for nothing", map[string]any{"audit_seq": a.AuditSeq})
		return
	}
	if err != nil {
		s.accessError(w, r, "approval", err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"request_id": a.RequestID, "approver_id": a.ApproverID,
		"decision": a.Decision, "key_id": a.KeyID, "approved_at": a.ApprovedAt, "audit_seq": a.AuditSeq})
}

// releaseRequest is POST /v1/access-requests/{id}/release (the requester):
// 200 {"keys":[...],"decision_id","audit_seq"} with every key in scope
// sealed to the request's recipient key, or 403 policy_denied.
func (s *server) releaseRequest(w http.ResponseWriter, r *http.Request) {
	rel, err := s.access.Release(r.Context(), caller(r), chi.URLParam(r, "id"))
	if err != nil {
		s.accessError(w, r, "release", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"keys": rel.Keys, "decision_id": rel.DecisionID, "audit_seq": rel.AuditSeq})
}

type approverKeyJSON struct {
	KeyID     string    `json:"key_id"`
	PublicKey []byte    `json:"public_key"`
	AddedAt   time.Time `json:"added_at"`
	AuditSeq  int64     `json:"audit_seq"`
}

type approverJSON struct {
	ID           string            `json:"id"`
	Roles        []string          `json:"roles"`
	Active       bool              `json:"active"`
	CurrentKeyID string            `json:"current_key_id"`
	Keys         []approverKeyJSON `json:"keys"`
	RegisteredAt time.Time         `json:"registered_at"`
	AuditSeq     int64             `json:"audit_seq"`
}

func approverView(a access.Approver) approverJSON {
	out := approverJSON{ID: a.ID, Roles: a.Roles, Active: a.Active, RegisteredAt: a.RegisteredAt, AuditSeq: a.AuditSeq}
	for _, k := range a.Keys {
		out.Keys = append(out.Keys, approverKeyJSON{KeyID: k.ID, PublicKey: k.PublicKey, AddedAt: k.AddedAt, AuditSeq: k.AuditSeq})
	}
	if k, ok := a.CurrentKey(); ok {
		out.CurrentKeyID = k.ID
	}
	return out
}

type approverBody struct {
	ID        string   `json:"id"`
	Roles     []string `json:"roles"`
	PublicKey []byte   `json:"public_key"`
}

// registerApprover is POST /v1/approvers (admin).
func (s *server) registerApprover(w http.ResponseWriter, r *http.Request) {
	var b approverBody
	if !decodeJSON(w, r, &b) {
		return
	}
	a, err := s.access.RegisterApprover(r.Context(), caller(r), b.ID, b.Roles, b.PublicKey)
	if err != nil {
		s.accessError(w, r, "approver registration", err)
		return
	}
	writeJSON(w, http.StatusCreated, approverView(a))
}

// listApprovers is GET /v1/approvers.
func (s *server) listApprovers(w http.ResponseWriter, r *http.Request) {
	as, err := s.access.Approvers(r.Context())
	if err != nil {
		s.accessError(w, r, "approver list", err)
		return
	}
	out := make([]approverJSON, 0, len(as))
	for _, a := range as {
		out = append(out, approverView(a))
	}
	writeJSON(w, http.StatusOK, map[string]any{"approvers": out})
}

// rotateApproverKey is POST /v1/approvers/{id}/keys (admin): the new key
// is the one future signatures must verify with.
func (s *server) rotateApproverKey(w http.ResponseWriter, r *http.Request) {
	var b struct {
		PublicKey []byte `json:"public_key"`
	}
	if !decodeJSON(w, r, &b) {
		return
	}
	a, err := s.access.AddApproverKey(r.Context(), caller(r), chi.URLParam(r, "id"), b.PublicKey)
	if err != nil {
		s.accessError(w, r, "approver key rotation", err)
		return
	}
	writeJSON(w, http.StatusCreated, approverView(a))
}

// deactivateApprover is POST /v1/approvers/{id}/deactivate (admin).
func (s *server) deactivateApprover(w http.ResponseWriter, r *http.Request) {
	var b struct {
		Reason string `json:"reason"`
	}
	if !decodeJSON(w, r, &b) {
		return
	}
	a, err := s.access.DeactivateApprover(r.Context(), caller(r), chi.URLParam(r, "id"), b.Reason)
	if err != nil {
		s.accessError(w, r, "approver deactivation", err)
		return
	}
	writeJSON(w, http.StatusOK, approverView(a))
}

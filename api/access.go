package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/mediatorhq/mediator/access"
	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/escrow"
	"github.com/mediatorhq/mediator/wire"
)

// Error codes of the workflow.
const (
	codeNotRequester      = "not_requester"
	codeRequestFinal      = "request_final"
	codeNotAnApprover     = "not_an_approver"
	codeNotAnOfficer      = "not_an_officer"
	codeBadOfficerSig     = "bad_officer_signature"
	codeBadSignature      = "bad_signature"
	codeSelfApproval      = "self_approval"
	codeDuplicateApproval = "duplicate_approval"
	codePolicyDenied      = "policy_denied"
	codeCustodiansRefused = "custodians_refused"
	codeCustodiansDown    = "custodians_unavailable"
	codeNotGenesis        = "not_genesis"
	codeStaleProposal     = "stale_proposal"
	codeRosterRequired    = "roster_required"
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
		err = errTrailingData
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
	case errors.Is(err, errTrailingData):
		return errTrailingData.Error()
	}
	// An unknown field or a body nested too deep: the decoder's own words,
	// which name only the field.
	return err.Error()
}

// errTrailingData: the body goes on after its JSON object.
var errTrailingData = errors.New("trailing data after the JSON object")

// caller is the authenticated subject; guard admits no one without one.
func caller(r *http.Request) string {
	p, _ := PrincipalFrom(r.Context())
	return p.Subject
}

// accessError writes the answer for a lawful-access error. Errors of the
// roster a request depends on are governanceError's.
func (s *server) accessError(w http.ResponseWriter, r *http.Request, what string, err error) {
	var fe *access.FinalError
	var de *access.DeniedError
	var ce *access.CustodiansError
	var se *access.SelfApprovalError
	switch {
	case writeInvalid(w, err):
	case errors.As(err, &ce):
		s.custodiansError(w, r, what, ce)
	case errors.As(err, &de):
		writeError(w, http.StatusForbidden, codePolicyDenied, "the release policy denied the release: "+strings.Join(de.Reasons, "; "),
			wire.Denial{DecisionID: de.DecisionID, Reasons: de.Reasons, Locked: de.Locked})
	case errors.As(err, &fe):
		writeError(w, http.StatusConflict, codeRequestFinal, "the request is "+string(fe.Status)+"; it can no longer change",
			map[string]string{"status": string(fe.Status)})
	case errors.As(err, &se):
		writeError(w, http.StatusUnprocessableEntity, codeSelfApproval,
			"you filed this request: your approval is recorded but counts for nothing", map[string]any{"audit_seq": se.AuditSeq})
	case errors.Is(err, access.ErrNotFound):
		writeError(w, http.StatusNotFound, codeNotFound, "no such request, roster version or proposal")
	case errors.Is(err, access.ErrNotRequester):
		writeError(w, http.StatusForbidden, codeNotRequester, "only the officer who filed the request may do this")
	case errors.Is(err, access.ErrNotOfficer):
		writeError(w, http.StatusForbidden, codeNotAnOfficer, "the requester is not an officer of the roster in force")
	case errors.Is(err, access.ErrBadOfficerSignature):
		writeError(w, http.StatusUnprocessableEntity, codeBadOfficerSig,
			"the request does not carry its officer's signature with their key in the roster in force over "+approval.RequestMessageFormat)
	case errors.Is(err, access.ErrBadSignature):
		writeError(w, http.StatusUnprocessableEntity, codeBadSignature,
			"the signature does not verify with your key in the roster in force over "+approval.MessageFormat)
	case errors.Is(err, access.ErrDuplicateApproval):
		writeError(w, http.StatusConflict, codeDuplicateApproval, "you have already voted on this request")
	case errors.Is(err, access.ErrUnavailable):
		s.logFailure(r, what, err)
		unavailable(w, "access", "a dependency (database, policy or escrow) is unavailable; nothing was released")
	default:
		s.governanceError(w, r, what, err)
	}
}

// custodiansError answers a release the custodians left short: 503 when
// some could not be reached (ask again), else 403 with their refusals.
func (s *server) custodiansError(w http.ResponseWriter, r *http.Request, what string, ce *access.CustodiansError) {
	detail := wire.Shortfall{DecisionID: ce.DecisionID, Refusals: refusalsView(ce.Refusals), Unavailable: ce.Unavailable, KeysShort: len(ce.Short)}
	if detail.Unavailable == nil {
		detail.Unavailable = []string{}
	}
	if len(ce.Unavailable) > 0 {
		s.logFailure(r, what, ce)
		unavailableCode(w, codeCustodiansDown, "custodian", fmt.Sprintf("%d keys lack shares: custodians unavailable: %s; the shares released so far are kept, ask again",
			len(ce.Short), strings.Join(ce.Unavailable, ", ")), detail)
		return
	}
	var reasons []string
	for _, rf := range ce.Refusals {
		reasons = append(reasons, rf.Custodian+": "+strings.Join(rf.Reasons, "; "))
	}
	writeError(w, http.StatusForbidden, codeCustodiansRefused, "the custodians refused the release: "+strings.Join(reasons, " | "), detail)
}

// createRequest is POST /v1/access-requests (officer): 201
// {"id","status","digest","audit_seq"}.
func (s *server) createRequest(w http.ResponseWriter, r *http.Request) {
	var b wire.CreateRequest
	if !decodeJSON(w, r, &b) {
		return
	}
	req, err := s.access.Create(r.Context(), caller(r), access.Draft{
		ID: b.ID, CreatedAt: b.CreatedAt, CaseID: b.CaseID, LegalBasis: b.LegalBasis, WarrantRef: b.WarrantRef, Jurisdiction: b.Jurisdiction,
		Justification: b.Justification, Recipient: b.Recipient, ExpiresAt: b.ExpiresAt,
		Scope: access.Scope{ConversationIDs: b.Scope.ConversationIDs, From: b.Scope.From, To: b.Scope.To},
	}, b.OfficerSignature)
	if err != nil {
		s.accessError(w, r, "access request", err)
		return
	}
	writeJSON(w, http.StatusCreated, wire.Created{ID: req.ID, Status: string(req.Status), Digest: req.Digest, AuditSeq: req.AuditSeq})
}

func requestView(q access.Request, approvals []access.Approval) wire.Request {
	out := wire.Request{ID: q.ID, Status: string(q.Status), Requester: q.Requester, CaseID: q.CaseID, LegalBasis: q.LegalBasis,
		WarrantRef: q.WarrantRef, Jurisdiction: q.Jurisdiction, Justification: q.Justification,
		Scope:     wire.Scope{ConversationIDs: q.Scope.ConversationIDs, From: q.Scope.From, To: q.Scope.To},
		Recipient: q.Recipient, CreatedAt: q.CreatedAt, ExpiresAt: q.ExpiresAt, Digest: q.Digest, Canonical: q.Canonical,
		OfficerSignature: q.OfficerSignature, AuditSeq: q.AuditSeq, DeniedReleases: q.DeniedReleases}
	if f := q.Final; f != nil {
		out.Final = &wire.Final{Status: string(f.Status), By: f.By, DecisionID: f.DecisionID, At: f.At, AuditSeq: f.AuditSeq}
	}
	for _, a := range approvals {
		out.Approvals = append(out.Approvals, wire.Approval{ApproverID: a.ApproverID, Decision: a.Decision, Roles: a.Roles,
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
	out := make([]wire.Request, 0, len(qs))
	for _, q := range qs {
		out = append(out, requestView(q, nil))
	}
	writeJSON(w, http.StatusOK, wire.RequestList{Requests: out})
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

// approveRequest is POST /v1/access-requests/{id}/approvals (approver):
// 201 when recorded; the requester's own approval is recorded but answered
// 422 self_approval, since it counts for nothing.
func (s *server) approveRequest(w http.ResponseWriter, r *http.Request) {
	var b wire.ApprovalRequest
	if !decodeJSON(w, r, &b) {
		return
	}
	a, err := s.access.Approve(r.Context(), caller(r), chi.URLParam(r, "id"), b.Decision, b.Signature)
	if err != nil {
		s.accessError(w, r, "approval", err)
		return
	}
	writeJSON(w, http.StatusCreated, wire.ApprovalRecorded{RequestID: a.RequestID, ApproverID: a.ApproverID,
		Decision: a.Decision, KeyID: a.KeyID, ApprovedAt: a.ApprovedAt, AuditSeq: a.AuditSeq})
}

// releaseRequest is POST /v1/access-requests/{id}/release (the requester):
// 200 with every key in scope as shares its custodians sealed to the
// request's recipient key; 202 with the progress when the call's time ran
// out before every share was asked for (post again); 403 policy_denied or
// custodians_refused; 503 custodians_unavailable.
func (s *server) releaseRequest(w http.ResponseWriter, r *http.Request) {
	rel, err := s.access.Release(r.Context(), caller(r), chi.URLParam(r, "id"))
	var ip *access.InProgressError
	if errors.As(err, &ip) {
		// The call's time ran out with nothing refused: what came back is
		// kept, and the next call asks only for the rest.
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusAccepted, wire.ReleaseProgress{RequestID: chi.URLParam(r, "id"), Status: "releasing",
			DecisionID: ip.DecisionID, KeysTotal: ip.KeysTotal, KeysReady: ip.KeysReady})
		return
	}
	if err != nil {
		s.accessError(w, r, "release", err)
		return
	}
	writeJSON(w, http.StatusOK, releaseView(rel))
}

// releasedAgain is GET /v1/access-requests/{id}/release?after=&limit=
// (the requester): a completed release's shares again, a page at a time,
// for an officer whose answer was lost or held only its first page.
func (s *server) releasedAgain(w http.ResponseWriter, r *http.Request) {
	after, limit := r.URL.Query().Get("after"), 0
	if after != "" {
		if u, err := uuid.Parse(after); err != nil || u.String() != after {
			writeError(w, http.StatusUnprocessableEntity, codeValidationFailed, "after must be an escrow id (a UUID) from next_after")
			return
		}
	}
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > access.AnswerPage {
			writeError(w, http.StatusUnprocessableEntity, codeValidationFailed, fmt.Sprintf("limit must be 1–%d", access.AnswerPage))
			return
		}
		limit = n
	}
	rel, err := s.access.Released(r.Context(), caller(r), chi.URLParam(r, "id"), after, limit)
	if err != nil {
		s.accessError(w, r, "release", err)
		return
	}
	writeJSON(w, http.StatusOK, releaseView(rel))
}

// releaseView is a release as the requesting officer is answered it.
func releaseView(rel access.Release) wire.Release { return rel.Answer() }

func refusalsView(rs []*escrow.RefusedError) []wire.CustodianRefusal {
	out := make([]wire.CustodianRefusal, len(rs))
	for i, r := range rs {
		out[i] = wire.CustodianRefusal{Custodian: r.Custodian, Reasons: r.Reasons, PolicyRevision: r.PolicyRevision}
	}
	return out
}

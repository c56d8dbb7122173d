package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/mediatorhq/mediator/client"
	"github.com/mediatorhq/mediator/pseudonym"
	"github.com/mediatorhq/mediator/shares"
	"github.com/mediatorhq/mediator/wire"
)

// Error codes the agent answers with itself, in the mediator's envelope
// (wire.Error). The mediator's own answers are passed on with its code.
const (
	codeBadRequest           = "bad_request"
	codeBodyTooLarge         = "body_too_large"
	codeUnsupportedMediaType = "unsupported_media_type"
	codeValidationFailed     = "validation_failed"
	codeNotFound             = "not_found"
	codeMethodNotAllowed     = "method_not_allowed"
	codeMisdirected          = "misdirected_request"
	codeInternal             = "internal_error"
	codePseudonymUnavailable = "pseudonym_service_unavailable"
	codePseudonymUnverified  = "pseudonym_unverified"
	codeMediatorUnreachable  = "mediator_unreachable"
	codeReceiptUnverified    = "receipt_unverified"
	codeRosterUnverified     = "roster_unverified"
	// codeSetMismatch is the mediator's answer to a deposit sealed for
	// another custodian set than its own (api/escrow.go).
	codeSetMismatch = "custodian_set_mismatch"
)

// Bounds of a request body.
const (
	// maxEventsBody is the mediator's own bound on an ingest request.
	maxEventsBody = 8 << 20
	// maxDepositBody holds two ids of 128 bytes and a key of 64 in
	// base64, with room for white space and escapes.
	maxDepositBody = 16 << 10
)

// retryAfter is the Retry-After, in seconds, of an answer that a
// dependency is unavailable, as the mediator gives it.
const retryAfter = "5"

// routes is every endpoint of the agent.
func (a *Agent) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/events", a.local(a.events))
	mux.HandleFunc("POST /v1/escrow/keys", a.local(a.deposit))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	for path, allow := range map[string]string{"/v1/events": "POST", "/v1/escrow/keys": "POST", "/healthz": "GET, HEAD"} {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			wire.WriteError(w, http.StatusMethodNotAllowed, codeMethodNotAllowed, "method not allowed; use "+allow)
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		wire.WriteError(w, http.StatusNotFound, codeNotFound, "the agent serves POST /v1/events, POST /v1/escrow/keys and GET /healthz")
	})
	return mux
}

// local refuses a request that reached a TCP listener under a name other
// than localhost or a loopback address: a web page whose domain was made
// to resolve to 127.0.0.1 (DNS rebinding) must not act as the gateway.
// A unix socket is out of a browser's reach.
func (a *Agent) local(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if _, tcp := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr); tcp {
			host := r.Host
			if h, _, err := net.SplitHostPort(r.Host); err == nil {
				host = h
			}
			if !loopbackHost(host) {
				wire.WriteError(w, http.StatusMisdirectedRequest, codeMisdirected, "the agent answers only requests addressed to localhost or a loopback address")
				return
			}
		}
		h(w, r)
	}
}

// events is POST /v1/events: the mediator's ingest body with raw
// identifiers, pseudonymised here and forwarded (client.SendRawEvents).
func (a *Agent) events(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	ndjson, ok := eventsFormat(r.Header.Get("Content-Type"))
	if !ok {
		wire.WriteError(w, http.StatusUnsupportedMediaType, codeUnsupportedMediaType, "Content-Type must be application/json or application/x-ndjson")
		return
	}
	body, ok := readBody(w, r, maxEventsBody)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	res, err := a.mediator.SendRawEvents(ctx, body, ndjson, r.URL.Query().Get("atomic") == "true")
	if err != nil {
		a.fail(w, "events", err)
		return
	}
	if res.Problems == nil {
		res.Problems = []wire.Problem{}
	}
	a.log.Debug("agent: events", "accepted", res.Accepted, "duplicates", res.Duplicates, "rejected", res.Rejected,
		"duration_ms", durationMS(start))
	wire.WriteJSON(w, http.StatusOK, res)
}

// durationMS is the time since start in milliseconds, as the mediator's
// access log gives it.
func durationMS(start time.Time) float64 { return float64(time.Since(start).Microseconds()) / 1000 }

// eventsFormat reads an ingest Content-Type: NDJSON or JSON, or neither.
func eventsFormat(header string) (ndjson, ok bool) {
	mt, _, err := mime.ParseMediaType(header)
	switch {
	case err != nil:
		return false, false
	case mt == "application/json":
		return false, true
	case mt == "application/x-ndjson":
		return true, true
	}
	return false, false
}

// readBody reads the whole body, at most limit bytes, answering 413 or
// 400 when it cannot.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		wire.WriteError(w, http.StatusRequestEntityTooLarge, codeBodyTooLarge, "request body too large")
		return nil, false
	case err != nil:
		wire.WriteError(w, http.StatusBadRequest, codeBadRequest, "could not read the request body")
		return nil, false
	}
	return body, true
}

// depositRequest is POST /v1/escrow/keys as the agent takes it: the raw
// conversation id and the key itself, which never leaves this host.
type depositRequest struct {
	ConversationID string `json:"conversation_id"`
	KeyID          string `json:"key_id"`
	// Key is the key's bytes, base64 (standard alphabet, padded) on the
	// wire.
	Key []byte `json:"key"`
}

// depositAnswer is the mediator's answer to the deposit and the
// conversation's pseudonym, under which the key is escrowed.
type depositAnswer struct {
	wire.DepositResponse
	Conversation string `json:"conversation"`
}

// deposit is POST /v1/escrow/keys: the key is split and sealed here to
// the custodians of the roster in force, and zeroed once sent.
func (a *Agent) deposit(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		wire.WriteError(w, http.StatusUnsupportedMediaType, codeUnsupportedMediaType, "Content-Type must be application/json")
		return
	}
	body, ok := readBody(w, r, maxDepositBody)
	if !ok {
		return
	}
	var req depositRequest
	status, problem := decodeDeposit(body, &req)
	clear(body)
	defer clear(req.Key)
	if problem != nil {
		code := codeValidationFailed
		if status == http.StatusBadRequest {
			code = codeBadRequest
		}
		wire.WriteError(w, status, code, problem.Field+" "+problem.Reason, *problem)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	d, err := a.depositKey(ctx, req)
	if err != nil {
		a.fail(w, "deposit", err)
		return
	}
	status = http.StatusOK
	if d.Created {
		status = http.StatusCreated
	}
	a.log.Debug("agent: deposit", "created", d.Created, "roster_version", a.RosterVersion(), "duration_ms", durationMS(start))
	wire.WriteJSON(w, status, depositAnswer{DepositResponse: d.DepositResponse, Conversation: d.Conversation})
}

// decodeDeposit decodes body strictly into req (an unknown or repeated
// field is refused) and checks every field. It returns the status and the
// problem of a body it refuses: 400 for one that is not a JSON object,
// else 422. No problem quotes a value.
func decodeDeposit(body []byte, req *depositRequest) (int, *wire.FieldProblem) {
	err := jsonv2.Unmarshal(body, req, jsonv2.RejectUnknownMembers(true))
	var se *jsonv2.SemanticError
	var dup *jsontext.SyntacticError
	switch {
	case err == nil:
	case errors.Is(err, jsontext.ErrDuplicateName) && errors.As(err, &dup):
		return http.StatusUnprocessableEntity, &wire.FieldProblem{Field: strings.TrimPrefix(string(dup.JSONPointer), "/"), Reason: "is given twice"}
	case errors.As(err, &se) && se.JSONPointer != "":
		field := strings.TrimPrefix(string(se.JSONPointer), "/")
		switch {
		case errors.Is(se.Err, jsonv2.ErrUnknownName):
			return http.StatusUnprocessableEntity, &wire.FieldProblem{Field: field, Reason: "is not a field of a deposit; send conversation_id, key_id and key"}
		case field == "key":
			return http.StatusUnprocessableEntity, &wire.FieldProblem{Field: field, Reason: "must be the key's bytes in base64 (standard alphabet, padded)"}
		}
		return http.StatusUnprocessableEntity, &wire.FieldProblem{Field: field, Reason: "must be a string"}
	default:
		return http.StatusBadRequest, &wire.FieldProblem{Field: "body", Reason: `is not a JSON object {"conversation_id","key_id","key"}`}
	}
	for _, f := range []struct{ name, value string }{{"conversation_id", req.ConversationID}, {"key_id", req.KeyID}} {
		switch {
		case f.value == "":
			return http.StatusUnprocessableEntity, &wire.FieldProblem{Field: f.name, Reason: "is required"}
		case !shares.ValidID(f.value):
			return http.StatusUnprocessableEntity, &wire.FieldProblem{Field: f.name, Reason: "must be 1–128 bytes of printable text"}
		}
	}
	switch {
	case len(req.Key) == 0:
		return http.StatusUnprocessableEntity, &wire.FieldProblem{Field: "key", Reason: "is required"}
	case len(req.Key) < shares.MinKeyLen || len(req.Key) > shares.MaxKeyLen:
		return http.StatusUnprocessableEntity, &wire.FieldProblem{Field: "key", Reason: "must be 16–64 bytes (before base64)"}
	}
	return 0, nil
}

// depositKey escrows req's key with the custodian set in force. If the
// mediator refuses the set as not its own, the agent verifies the roster
// chain again, once, and, if the roster in force now names another set,
// deposits again for it.
func (a *Agent) depositKey(ctx context.Context, req depositRequest) (client.Deposited, error) {
	cu := a.custody.Load()
	d, err := a.mediator.DepositTo(ctx, cu.splitter, cu.pinned, req.ConversationID, req.KeyID, req.Key)
	if !client.IsCode(err, codeSetMismatch) {
		return d, err
	}
	fresh, rerr := a.refresh(ctx, cu)
	if rerr != nil {
		return d, rerr
	}
	if fresh.pinned == cu.pinned {
		// The roster in force names the set the key was sealed for: the
		// mediator is configured with another, and only its operator can
		// change that.
		return d, err
	}
	a.log.Info("agent: the mediator refused a deposit for the custodian set of roster version; sealing again for the version now in force",
		"from", cu.version, "to", fresh.version)
	return a.mediator.DepositTo(ctx, fresh.splitter, fresh.pinned, req.ConversationID, req.KeyID, req.Key)
}

// fail answers a request that failed: the mediator's answer as it gave
// it, or the agent's own code for a dependency that failed. It logs the
// failure by its kind; no message names an identifier or a key.
func (a *Agent) fail(w http.ResponseWriter, op string, err error) {
	var apiErr *client.Error
	var pe *pseudonymError
	var ue *url.Error
	var re *rosterError
	switch {
	case errors.As(err, &apiErr):
		details := make([]any, len(apiErr.Details))
		for i, d := range apiErr.Details {
			details[i] = d
		}
		if apiErr.Status == http.StatusServiceUnavailable || apiErr.Status == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", retryAfter)
		}
		a.log.Debug("agent: the mediator refused", "op", op, "status", apiErr.Status, "code", apiErr.Code)
		wire.WriteError(w, apiErr.Status, apiErr.Code, apiErr.Message, details...)
	case errors.Is(err, pseudonym.ErrUnverified):
		a.log.Error("agent: the pseudonym service's evaluation does not verify against the roster's key", "op", op, "err", err)
		wire.WriteError(w, http.StatusBadGateway, codePseudonymUnverified,
			"the pseudonym service's answer does not verify against the key the roster names; nothing was sent to the mediator")
	case errors.As(err, &pe):
		a.log.Warn("agent: the pseudonym service failed", "op", op, "err", err)
		w.Header().Set("Retry-After", retryAfter)
		wire.WriteError(w, http.StatusServiceUnavailable, codePseudonymUnavailable,
			"the pseudonym service is unavailable; nothing was sent to the mediator", map[string]string{"dependency": "pseudonym"})
	case errors.Is(err, client.ErrReceipt):
		// Its text names the conversation's pseudonym and the key id:
		// logged by kind only.
		a.log.Error("agent: the mediator's answer to a deposit lacks a custodian's receipt that verifies", "op", op)
		wire.WriteError(w, http.StatusBadGateway, codeReceiptUnverified,
			"the mediator's answer lacks a custodian's receipt that verifies for this deposit: do not count the key as escrowed; deposit it again")
	case errors.As(err, &ue):
		a.log.Warn("agent: the mediator cannot be reached", "op", op, "err", err)
		w.Header().Set("Retry-After", retryAfter)
		wire.WriteError(w, http.StatusServiceUnavailable, codeMediatorUnreachable,
			"the mediator cannot be reached; nothing was acknowledged", map[string]string{"dependency": "mediator"})
	case errors.As(err, &re):
		a.log.Error("agent: the roster chain does not verify", "op", op, "err", err)
		wire.WriteError(w, http.StatusBadGateway, codeRosterUnverified,
			"the roster chain the mediator serves does not verify from the pinned genesis, or is older than one verified before; nothing was sent")
	default:
		a.log.Error("agent: request failed", "op", op, "kind", errorKind(err))
		wire.WriteError(w, http.StatusInternalServerError, codeInternal, "the agent failed; nothing is known to be kept")
	}
}

// errorKind names the type of the innermost error of err's chain, for a
// log line that must not carry its text.
func errorKind(err error) string {
	for next := errors.Unwrap(err); next != nil; next = errors.Unwrap(err) {
		err = next
	}
	return fmt.Sprintf("%T", err)
}

package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/wire"
)

// PushRoster posts chain to the custodian serving at custodianURL (its
// POST /v1/roster, which needs no credential: the chain authenticates
// itself) and returns the version the custodian holds afterwards, as it
// answers. A custodian that does not accept the chain answers an *Error:
// code roster_rollback (it has verified a version the chain does not
// hold), roster_unverified (the chain does not verify from the genesis it
// pins) or roster_missing. httpClient may be nil.
//
// Cost: one POST carrying the whole chain.
func PushRoster(ctx context.Context, httpClient *http.Client, custodianURL string, chain []roster.Signed) (wire.CustodianRoster, error) {
	body, err := json.Marshal(wire.RosterPush{Chain: chain})
	if err != nil {
		return wire.CustodianRoster{}, fmt.Errorf("client: encode the roster chain: %w", err)
	}
	var out wire.CustodianRoster
	return out, custodianCall(ctx, httpClient, http.MethodPost, custodianURL, "/v1/roster", body, &out)
}

// CustodianRosterStatus returns the newest roster version the custodian
// serving at custodianURL says it has verified (its GET
// /v1/roster/status). httpClient may be nil.
func CustodianRosterStatus(ctx context.Context, httpClient *http.Client, custodianURL string) (wire.CustodianRoster, error) {
	var out wire.CustodianRoster
	return out, custodianCall(ctx, httpClient, http.MethodGet, custodianURL, "/v1/roster/status", nil, &out)
}

// custodianCall calls one of a custodian's public routes and decodes a
// 200 answer into out; any other answer is an *Error.
func custodianCall(ctx context.Context, httpClient *http.Client, method, base, path string, body []byte, out any) error {
	if httpClient == nil {
		httpClient = &http.Client{Timeout: defaultTimeout}
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(base, "/")+path, rd)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return fmt.Errorf("client: cannot reach the custodian at %s: %w", base, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return fmt.Errorf("client: read the custodian's answer to %s %s: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return decodeError(resp.StatusCode, raw)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("client: the custodian's answer to %s %s: %w", method, path, err)
	}
	return nil
}

// SendVeto delivers an approver's signed deny vote to the custodian
// serving at custodianURL (its POST /v1/vetoes, which needs no
// credential: the vote authenticates itself with the approver's key in
// the roster chain it carries) and returns the record the custodian
// holds. A custodian that does not record it answers an *Error: code
// veto_bad_signature, veto_not_approver, veto_not_canonical,
// veto_not_deny, veto_conflict, or a roster chain's code
// (roster_rollback, roster_unverified, roster_missing). httpClient may be
// nil.
//
// Cost: one POST carrying the chain and the canonical request.
func SendVeto(ctx context.Context, httpClient *http.Client, custodianURL string, veto wire.Veto) (wire.VetoRecorded, error) {
	body, err := json.Marshal(veto)
	if err != nil {
		return wire.VetoRecorded{}, fmt.Errorf("client: encode the veto: %w", err)
	}
	var out wire.VetoRecorded
	return out, custodianCall(ctx, httpClient, http.MethodPost, custodianURL, "/v1/vetoes", body, &out)
}

// SendRevocation delivers an officer's signed withdrawal of their request
// to the custodian serving at custodianURL (its POST /v1/revocations,
// which needs no credential: the revocation authenticates itself with the
// officer's key in the roster chain it carries) and returns the record
// the custodian holds. A custodian that does not record it answers an
// *Error: code revocation_bad_signature, revocation_not_requester,
// revocation_not_officer, revocation_not_canonical, revocation_conflict,
// or a roster chain's code (roster_rollback, roster_unverified,
// roster_missing). httpClient may be nil.
//
// Cost: one POST carrying the chain and the canonical request.
func SendRevocation(ctx context.Context, httpClient *http.Client, custodianURL string, revocation wire.Revocation) (wire.RevocationRecorded, error) {
	body, err := json.Marshal(revocation)
	if err != nil {
		return wire.RevocationRecorded{}, fmt.Errorf("client: encode the revocation: %w", err)
	}
	var out wire.RevocationRecorded
	return out, custodianCall(ctx, httpClient, http.MethodPost, custodianURL, "/v1/revocations", body, &out)
}

// SendSignedHold delivers a legal hold statement signed by roster members
// to the custodian serving at custodianURL (its POST /v1/holds/signed,
// which needs no credential: the statement authenticates itself with the
// signers' keys in the roster chain it carries) and returns the record
// the custodian holds. A placement takes one officer's or approver's
// signature; a lift, approvers who meet the roster's rule. A custodian
// that does not record it answers an *Error: code hold_not_valid,
// hold_not_member, hold_not_approver, hold_bad_signature, hold_unknown,
// hold_conflict, hold_lift_rule_unmet, or a roster chain's code.
// httpClient may be nil.
//
// Cost: one POST carrying the chain and the signatures.
func SendSignedHold(ctx context.Context, httpClient *http.Client, custodianURL string, hold wire.SignedHold) (wire.HoldRecorded, error) {
	body, err := json.Marshal(hold)
	if err != nil {
		return wire.HoldRecorded{}, fmt.Errorf("client: encode the hold: %w", err)
	}
	var out wire.HoldRecorded
	return out, custodianCall(ctx, httpClient, http.MethodPost, custodianURL, "/v1/holds/signed", body, &out)
}

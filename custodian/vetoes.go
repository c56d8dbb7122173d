package custodian

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/invalid"
	"github.com/mediatorhq/mediator/policy"
	"github.com/mediatorhq/mediator/shares"
	"github.com/mediatorhq/mediator/wire"
)

// A deny vote reaches a custodian on two roads: inside the evidence of a
// release, which the mediator chooses, and delivered by the approver's
// own tool (POST /v1/vetoes), so that a mediator that withholds it cannot
// have two approvals release where a third approver vetoed. The custodian
// records a delivered veto once, under the request's id, and every
// release of that request it checks afterwards counts it as a verified
// deny vote, whatever the evidence carries.

// maxVetoBody bounds a delivered veto: a roster chain as large as a push
// may carry (maxRosterBody) and a canonical request with room to spare.
// The call needs no credential, so the bound is what anyone can make this
// custodian verify at once.
const maxVetoBody = maxRosterBody + 1<<20

// vetoesPath holds the vetoes: vetoes/<request-id>/<approver>, the
// approver's id in unpadded base64url, so that no id names another path.
const vetoesPath = "vetoes"

// Codes of a veto this custodian does not record (besides a roster
// chain's: roster_missing, roster_unverified, roster_rollback).
const (
	// vetoNotCanonical: the request is not a canonical request with a
	// UUID id.
	vetoNotCanonical = "veto_not_canonical"
	// vetoNotDeny: the vote is not a deny vote; an approval counts only in
	// a release's evidence.
	vetoNotDeny = "veto_not_deny"
	// vetoNotApprover: the voter is not an approver of the roster version
	// in force (an officer is not).
	vetoNotApprover = "veto_not_approver"
	// vetoBadSignature: the signature does not verify with the approver's
	// key in the roster version in force.
	vetoBadSignature = "veto_bad_signature"
	// vetoConflict: the approver's veto of this request id is on record
	// over other canonical bytes.
	vetoConflict = "veto_conflict"
)

// vetoRecord is what a custodian keeps of one delivered veto.
type vetoRecord struct {
	RequestID     string `json:"request_id"`
	RequestDigest string `json:"request_digest"`
	ApproverID    string `json:"approver_id"`
	Signature     []byte `json:"signature"`
	RecordedAt    string `json:"recorded_at"`
	RosterVersion uint64 `json:"roster_version"`
	RosterDigest  string `json:"roster_digest"`
}

// RecordVeto verifies an approver's deny vote delivered directly and
// records it, once, under the request's id. When it returns without
// error, the request was parsed from its canonical bytes (its id a UUID),
// the roster chain verified from the pinned genesis and holds the newest
// version this custodian has seen (a newer one is recorded, as a push
// would), the voter is an approver (not an officer) of that version whose
// key verifies the signature over approval.Message(id, digest, "deny",
// voter), and the veto is on record: from then on Release refuses the
// request while the roster in force still verifies it. The same veto
// again is answered "already_recorded" and changes nothing.
//
// A veto it does not accept is an *invalid.Error with a code (veto_*), a
// *RosterError, or, for the approver's veto of this id over other bytes,
// an *invalid.Error coded veto_conflict; a store it cannot read or write
// is an error wrapping errUnavailable.
//
// Cost: what acceptRoster costs, one Ed25519 verification, one store
// write, and one read when the record exists.
func (c *Custodian) RecordVeto(ctx context.Context, v wire.Veto) (wire.VetoRecorded, error) {
	ans, err := c.recordVeto(ctx, v)
	c.metrics.veto(ans.Status, err)
	return ans, err
}

func (c *Custodian) recordVeto(ctx context.Context, v wire.Veto) (wire.VetoRecorded, error) {
	req, err := approval.Parse(v.Canonical)
	if err != nil || !validUUID(req.ID) {
		return wire.VetoRecorded{}, invalid.Coded(vetoNotCanonical, "canonical", "must be a canonical request with a UUID id")
	}
	if v.Decision != approval.Deny {
		return wire.VetoRecorded{}, invalid.Coded(vetoNotDeny, "decision", `must be "deny": an approval counts only in a release's evidence`)
	}
	if len(v.Roster) == 0 {
		return wire.VetoRecorded{}, &RosterError{Code: rosterMissing, Reason: "no roster chain was offered"}
	}
	current, rosterDigest, err := c.acceptRoster(ctx, v.Roster)
	if err != nil {
		return wire.VetoRecorded{}, err
	}
	digest := approval.Digest(v.Canonical)
	ap, ok := current.Approver(v.ApproverID)
	if !ok {
		return wire.VetoRecorded{}, invalid.Coded(vetoNotApprover, "approver_id", fmt.Sprintf("must be an approver (not an officer) of roster version %d", current.Version))
	}
	if !approval.Verify(ap.PublicKey, req.ID, digest, approval.Deny, ap.ID, v.Signature) {
		return wire.VetoRecorded{}, invalid.Coded(vetoBadSignature, "signature",
			fmt.Sprintf("must verify with the approver's key in roster version %d over the deny message of this request", current.Version))
	}
	rec := vetoRecord{RequestID: req.ID, RequestDigest: digest, ApproverID: ap.ID, Signature: v.Signature,
		RecordedAt: c.now().UTC().Format(shares.TimeLayout), RosterVersion: current.Version, RosterDigest: rosterDigest}
	status, err := recordOnce(func() error { return c.store.putVeto(ctx, rec) },
		func() (string, error) {
			var err error
			rec, err = c.store.veto(ctx, req.ID, ap.ID)
			return rec.RequestDigest, err
		}, digest, "veto", vetoConflict, "a deny vote by this approver is")
	if err != nil {
		return wire.VetoRecorded{}, err
	}
	if status == "recorded" {
		c.log.Info("veto recorded", "custodian", c.cfg.Name, "request_id", req.ID, "digest", digest, "approver_id", ap.ID,
			"roster_version", current.Version)
	}
	at, _ := time.Parse(shares.TimeLayout, rec.RecordedAt)
	return wire.VetoRecorded{Custodian: c.cfg.Name, Status: status, RequestID: req.ID, Digest: rec.RequestDigest, ApproverID: ap.ID,
		RecordedAt: at, RosterVersion: rec.RosterVersion}, nil
}

// postVeto is POST /v1/vetoes: 200 with the record, 422 with a veto_* or
// roster code, 409 roster_rollback or veto_conflict.
func (c *Custodian) postVeto(w http.ResponseWriter, r *http.Request) {
	var body wire.Veto
	if !decodeLimited(w, r, &body, maxVetoBody) {
		return
	}
	ans, err := c.RecordVeto(r.Context(), body)
	c.writeStatement(w, r, "veto", vetoConflict, ans, err, "approver_id", body.ApproverID)
}

// vetoName is the record name of approverID's veto.
func vetoName(approverID string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(approverID))
}

// putVeto writes rec once; errExists if the approver's veto of the
// request is on record.
func (s *store) putVeto(ctx context.Context, rec vetoRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return s.putOnce(ctx, s.path(vetoesPath, rec.RequestID, vetoName(rec.ApproverID)), map[string]any{"record": string(b)})
}

// veto reads approverID's veto of request requestID.
func (s *store) veto(ctx context.Context, requestID, approverID string) (vetoRecord, error) {
	sec, err := s.get(ctx, s.path(vetoesPath, requestID, vetoName(approverID)))
	if err != nil {
		return vetoRecord{}, err
	}
	return vetoIn(sec.Data)
}

// vetoes reads every veto of request requestID (a UUID) on record.
// Cost: one list, one read per veto.
func (s *store) vetoes(ctx context.Context, requestID string) ([]vetoRecord, error) {
	names, err := s.list(ctx, vetoesPath+"/"+requestID)
	if err != nil {
		return nil, err
	}
	out := make([]vetoRecord, 0, len(names))
	for _, n := range names {
		sec, err := s.get(ctx, s.path(vetoesPath, requestID, n))
		if err != nil {
			return nil, err
		}
		rec, err := vetoIn(sec.Data)
		if err != nil || rec.RequestID != requestID || vetoName(rec.ApproverID) != n {
			return nil, fmt.Errorf("custodian: veto record %s/%s is unreadable", requestID, n)
		}
		out = append(out, rec)
	}
	return out, nil
}

func vetoIn(data map[string]any) (vetoRecord, error) {
	raw, _ := data["record"].(string)
	var rec vetoRecord
	if err := json.Unmarshal([]byte(raw), &rec); err != nil {
		return vetoRecord{}, errors.New("custodian: a veto record is unreadable")
	}
	return rec, nil
}

// recordedVetoes reads the vetoes on record for a release's request. A
// record it cannot read is errUnavailable: a release is never decided
// without them.
func (c *Custodian) recordedVetoes(ctx context.Context, requestID string) ([]vetoRecord, error) {
	vs, err := c.store.vetoes(ctx, requestID)
	if err != nil {
		return nil, fmt.Errorf("%w: veto records: %v", errUnavailable, err)
	}
	return vs, nil
}

// addVetoes adds each veto on record to in as a deny vote, verified
// against the roster in force as an approval in the evidence is (an
// approver removed or re-keyed since no longer vetoes), unless the
// evidence carries the same approver's verified deny already. It returns,
// for the reasons of a denial, one line per veto the evidence withheld
// that counts; the policy's own rule on a verified deny vote refuses the
// release.
func addVetoes(in *policy.ReleaseInput, vetoes []vetoRecord, cr checkedRequest, evidence []wire.EvidenceApproval) (withheld []string) {
	for _, v := range vetoes {
		carried := false
		for _, a := range evidence {
			if a.ApproverID == v.ApproverID && a.Decision == approval.Deny {
				_, ok, _ := verifyApproval(cr.roster, a.ApproverID, cr.req.ID, cr.digest, a.Decision, a.Signature)
				carried = carried || ok
			}
		}
		if carried {
			continue
		}
		roles, verified, active := verifyApproval(cr.roster, v.ApproverID, v.RequestID, v.RequestDigest, approval.Deny, v.Signature)
		at, err := time.Parse(shares.TimeLayout, v.RecordedAt)
		if err != nil || at.After(in.Now) || at.Before(cr.req.CreatedAt) {
			at = in.Now
		}
		in.Approvals = append(in.Approvals, policy.ReleaseApproval{ApproverID: v.ApproverID, Roles: roles, Decision: approval.Deny,
			ApprovedAt: at, SignatureVerified: verified, ApproverActive: active})
		if verified {
			withheld = append(withheld, fmt.Sprintf("%s's deny vote, delivered to this custodian directly at %s (roster version %d), is not in the release evidence",
				v.ApproverID, v.RecordedAt, v.RosterVersion))
		}
	}
	return withheld
}

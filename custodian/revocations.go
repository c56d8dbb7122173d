package custodian

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/invalid"
	"github.com/mediatorhq/mediator/shares"
	"github.com/mediatorhq/mediator/wire"
)

// An officer withdraws a request at the mediator, which then neither
// approves nor releases it; a compromised mediator could ignore that and
// ask for the release all the same. So the officer's tool also signs the
// withdrawal (approval.RevocationMessage) and delivers it to every
// custodian directly (POST /v1/revocations). The custodian records it
// once, under the request's id, and refuses every later release of that
// request, whatever the evidence carries.

// maxRevocationBody bounds a delivered revocation as maxVetoBody bounds a
// veto: a roster chain as large as a push may carry and a canonical
// request with room to spare.
const maxRevocationBody = maxVetoBody

// revocationsPath holds the revocations: revoked/<request-id>, one per
// request.
const revocationsPath = "revoked"

// Codes of a revocation this custodian does not record (besides a roster
// chain's: roster_missing, roster_unverified, roster_rollback).
const (
	// revocationNotCanonical: the request is not a canonical request with
	// a UUID id.
	revocationNotCanonical = "revocation_not_canonical"
	// revocationNotRequester: the signer is not the request's requester;
	// only the officer who filed a request withdraws it.
	revocationNotRequester = "revocation_not_requester"
	// revocationNotOfficer: the requester is not an officer of the roster
	// version in force.
	revocationNotOfficer = "revocation_not_officer"
	// revocationBadSignature: the signature does not verify with the
	// officer's key in the roster version in force.
	revocationBadSignature = "revocation_bad_signature"
	// revocationConflict: a revocation of this request id is on record
	// over other canonical bytes.
	revocationConflict = "revocation_conflict"
)

// revokedReason begins the reason of a release refused for a revocation
// on record.
const revokedReason = "request revoked by its officer"

// revocationRecord is what a custodian keeps of one delivered revocation.
type revocationRecord struct {
	RequestID     string `json:"request_id"`
	RequestDigest string `json:"request_digest"`
	OfficerID     string `json:"officer_id"`
	Signature     []byte `json:"signature"`
	RecordedAt    string `json:"recorded_at"`
	RosterVersion uint64 `json:"roster_version"`
	RosterDigest  string `json:"roster_digest"`
}

// RecordRevocation verifies an officer's withdrawal of their request,
// delivered directly, and records it once under the request's id. When
// it returns without error, the request was parsed from its canonical
// bytes (its id a UUID), the signer is its requester, the roster chain
// verified from the pinned genesis and holds the newest version this
// custodian has seen (a newer one is recorded, as a push would), the
// requester is an officer of that version whose key verifies the
// signature over approval.RevocationMessage(id, digest), and the
// revocation is on record: from then on Release refuses every release of
// that request (those bytes under that id). The same revocation again is
// answered "already_recorded" and changes nothing.
//
// A revocation it does not accept is an *invalid.Error with a code
// (revocation_*), a *RosterError, or, for a revocation of this id on
// record over other bytes, an *invalid.Error coded revocation_conflict;
// a store it cannot read or write is an error wrapping errUnavailable.
//
// Cost: what acceptRoster costs, one Ed25519 verification, one store
// write, and one read when the record exists.
func (c *Custodian) RecordRevocation(ctx context.Context, r wire.Revocation) (wire.RevocationRecorded, error) {
	ans, err := c.recordRevocation(ctx, r)
	c.metrics.revocation(ans.Status, err)
	return ans, err
}

func (c *Custodian) recordRevocation(ctx context.Context, r wire.Revocation) (wire.RevocationRecorded, error) {
	req, err := approval.Parse(r.Canonical)
	if err != nil || !validUUID(req.ID) {
		return wire.RevocationRecorded{}, invalid.Coded(revocationNotCanonical, "canonical", "must be a canonical request with a UUID id")
	}
	if r.OfficerID != req.Requester {
		return wire.RevocationRecorded{}, invalid.Coded(revocationNotRequester, "officer_id",
			fmt.Sprintf("must be the request's requester (%s): only the officer who filed a request withdraws it", req.Requester))
	}
	if len(r.Roster) == 0 {
		return wire.RevocationRecorded{}, &RosterError{Code: rosterMissing, Reason: "no roster chain was offered"}
	}
	current, rosterDigest, err := c.acceptRoster(ctx, r.Roster)
	if err != nil {
		return wire.RevocationRecorded{}, err
	}
	digest := approval.Digest(r.Canonical)
	o, ok := current.Officer(r.OfficerID)
	if !ok {
		return wire.RevocationRecorded{}, invalid.Coded(revocationNotOfficer, "officer_id", fmt.Sprintf("must be an officer of roster version %d", current.Version))
	}
	if !approval.VerifyRevocation(o.PublicKey, req.ID, digest, r.Signature) {
		return wire.RevocationRecorded{}, invalid.Coded(revocationBadSignature, "signature",
			fmt.Sprintf("must verify with the officer's key in roster version %d over the revocation message of this request", current.Version))
	}
	rec := revocationRecord{RequestID: req.ID, RequestDigest: digest, OfficerID: o.ID, Signature: r.Signature,
		RecordedAt: c.now().UTC().Format(shares.TimeLayout), RosterVersion: current.Version, RosterDigest: rosterDigest}
	status, err := recordOnce(func() error { return c.store.putRevocation(ctx, rec) },
		func() (string, error) {
			var err error
			rec, err = c.store.revocation(ctx, req.ID)
			return rec.RequestDigest, err
		}, digest, "revocation", revocationConflict, "a revocation is")
	if err != nil {
		return wire.RevocationRecorded{}, err
	}
	if status == "recorded" {
		c.log.Info("revocation recorded", "custodian", c.cfg.Name, "request_id", req.ID, "digest", digest, "officer_id", o.ID,
			"roster_version", current.Version)
	}
	at, _ := time.Parse(shares.TimeLayout, rec.RecordedAt)
	return wire.RevocationRecorded{Custodian: c.cfg.Name, Status: status, RequestID: req.ID, Digest: rec.RequestDigest, OfficerID: rec.OfficerID,
		RecordedAt: at, RosterVersion: rec.RosterVersion}, nil
}

// postRevocation is POST /v1/revocations: 200 with the record, 422 with a
// revocation_* or roster code, 409 roster_rollback or revocation_conflict.
func (c *Custodian) postRevocation(w http.ResponseWriter, r *http.Request) {
	var body wire.Revocation
	if !decodeLimited(w, r, &body, maxRevocationBody) {
		return
	}
	ans, err := c.RecordRevocation(r.Context(), body)
	c.writeStatement(w, r, "revocation", revocationConflict, ans, err, "officer_id", body.OfficerID)
}

// putRevocation writes rec once; errExists if a revocation of the
// request is on record.
func (s *store) putRevocation(ctx context.Context, rec revocationRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return s.putOnce(ctx, s.path(revocationsPath, rec.RequestID), map[string]any{"record": string(b)})
}

// revocation reads the revocation of request requestID (a UUID);
// errNoRecord when there is none.
func (s *store) revocation(ctx context.Context, requestID string) (revocationRecord, error) {
	sec, err := s.get(ctx, s.path(revocationsPath, requestID))
	if err != nil {
		return revocationRecord{}, err
	}
	raw, _ := sec.Data["record"].(string)
	var rec revocationRecord
	if err := json.Unmarshal([]byte(raw), &rec); err != nil || rec.RequestID != requestID {
		return revocationRecord{}, fmt.Errorf("custodian: the revocation record of %s is unreadable", requestID)
	}
	return rec, nil
}

// checkRevoked refuses a release of a request its officer revoked at this
// custodian: a revocation on record under the request's id, over the
// same digest. It was verified when recorded and is final: no later
// roster version takes it back. A record it cannot read is
// errUnavailable: a release is never decided without it.
//
// Cost: one store read.
func (c *Custodian) checkRevoked(ctx context.Context, cr checkedRequest) error {
	rec, err := c.store.revocation(ctx, cr.req.ID)
	switch {
	case errors.Is(err, errNoRecord):
		return nil
	case err != nil:
		return fmt.Errorf("%w: revocation record: %v", errUnavailable, err)
	case rec.RequestDigest != cr.digest:
		// The officer withdrew other bytes under this id, not the request
		// released: it is not revoked.
		return nil
	}
	c.log.Warn("release refused: revoked", "custodian", c.cfg.Name, "request_id", cr.req.ID, "officer_id", rec.OfficerID, "recorded_at", rec.RecordedAt)
	c.metrics.revokedRefused()
	reason := fmt.Sprintf("%s (%s, delivered to this custodian directly at %s, roster version %d)", revokedReason, rec.OfficerID, rec.RecordedAt, rec.RosterVersion)
	return &RefusedError{Reasons: []string{reason}, PolicyRevision: cr.rev}
}

package custodian

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/invalid"
	"github.com/mediatorhq/mediator/redact"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/shares"
	"github.com/mediatorhq/mediator/wire"
)

// A legal hold reaches a custodian on two roads: from the mediator (POST
// /v1/holds, with its token), which may only place one, and signed by
// roster members (POST /v1/holds/signed, no credential), which may place
// one with a single officer's or approver's signature and is the only way
// to lift one: approvers who meet the roster's rule, as adopting a roster
// version takes. A mediator that is compromised can then neither lift a
// hold nor keep one from a custodian. Both roads write the same record,
// holds/<id>, which Destroy reads; a lift writes hold-releases/<id>.

// maxHoldBody bounds a signed hold: a roster chain as large as a push may
// carry and room for the signatures. The call needs no credential, so the
// bound is what anyone can make this custodian verify at once.
const maxHoldBody = maxRosterBody + 1<<20

// maxHoldSignatures bounds the signatures one statement carries: a quorum
// of a large roster, and no more Ed25519 verifications than that.
const maxHoldSignatures = 64

// Codes of a hold this custodian does not record (besides a roster
// chain's: roster_missing, roster_unverified, roster_rollback).
const (
	// holdNotValid: the hold id is no UUID, the conversation id is not
	// valid, the action is neither place nor lift, or there are no (or
	// too many) signatures.
	holdNotValid = "hold_not_valid"
	// holdNotMember: a signer of a placement is not in the roster version
	// in force.
	holdNotMember = "hold_not_member"
	// holdNotApprover: a signer of a lift is not an approver of the
	// roster version in force (an officer is not).
	holdNotApprover = "hold_not_approver"
	// holdBadSignature: a signature does not verify with its signer's key
	// in the roster version in force.
	holdBadSignature = "hold_bad_signature"
	// holdUnknown: a lift names a hold this custodian has no record of.
	holdUnknown = "hold_unknown"
	// holdConflict: the hold id is on record for another conversation.
	holdConflict = "hold_conflict"
	// holdLiftRuleUnmet: the lift's verified approvers do not meet the
	// roster's rule.
	holdLiftRuleUnmet = "hold_lift_rule_unmet"
	// holdLiftNeedsSignatures: the mediator's token alone asked to lift a
	// hold.
	holdLiftNeedsSignatures = "hold_lift_needs_signatures"
)

// HoldRefusedError is a hold action the signatures or credential offered
// do not authorise: a lift by the mediator's token alone, or by
// approvers who do not meet the roster's rule. Nothing was recorded.
type HoldRefusedError struct {
	Code   string
	Reason string
}

func (e *HoldRefusedError) Error() string { return "custodian: hold refused: " + e.Reason }

// Where a hold's record says it came from.
const placedByMediator = "mediator"

// PlaceHold records a legal hold sent with the mediator's token in the
// custodian's own store: while it stands, Destroy keeps the
// conversation's shares. Placing it again, or with an id a signed
// placement used for the same conversation, changes nothing. A lift
// (h.Released) is a *HoldRefusedError coded hold_lift_needs_signatures:
// only SignedHold lifts a hold.
func (c *Custodian) PlaceHold(ctx context.Context, h wire.Hold) error {
	if h.Released {
		c.log.Warn("hold lift by the mediator's token refused", "custodian", c.cfg.Name, "hold_id", h.HoldID)
		return &HoldRefusedError{Code: holdLiftNeedsSignatures,
			Reason: "the mediator's token cannot lift a legal hold: approvers who meet the roster's rule sign the lift (POST /v1/holds/signed)"}
	}
	if !validUUID(h.HoldID) || !shares.ValidID(h.ConversationID) {
		return invalid.Input("hold", "a hold needs a hold id (a UUID) and a conversation id")
	}
	if !redact.NamesConversation(h.ConversationID) {
		return invalid.Coded(redact.CodeNotAPseudonym, "conversation_id", "must be the conversation's pseudonym (ps1_…)")
	}
	_, _, err := c.recordHold(ctx, h.HoldID, h.ConversationID, placedByMediator, 0)
	return err
}

// recordHold writes holds/<id> once. It returns whether this call wrote
// it and the time on record. An id on record for another conversation is
// an *invalid.Error coded hold_conflict.
func (c *Custodian) recordHold(ctx context.Context, holdID, conversationID, by string, version uint64) (bool, time.Time, error) {
	now := shares.FormatTime(c.now())
	data := map[string]any{"conversation_id": conversationID, "at": now, "placed_by": by, "roster_version": fmt.Sprint(version)}
	switch err := c.store.putOnce(ctx, c.store.path("holds", holdID), data); {
	case errors.Is(err, errExists):
		convo, at, err := c.heldConversation(ctx, holdID)
		if err != nil {
			return false, time.Time{}, err
		}
		if convo != conversationID {
			return false, time.Time{}, invalid.Coded(holdConflict, "hold_id", "is on record for another conversation")
		}
		return false, at, nil
	case err != nil:
		return false, time.Time{}, fmt.Errorf("%w: hold record: %v", errUnavailable, err)
	}
	at, _ := time.Parse(shares.TimeLayout, now)
	return true, at, nil
}

// heldConversation reads the conversation and time of hold holdID's
// record; errNoRecord when there is none.
func (c *Custodian) heldConversation(ctx context.Context, holdID string) (string, time.Time, error) {
	sec, err := c.store.get(ctx, c.store.path("holds", holdID))
	if errors.Is(err, errNoRecord) {
		return "", time.Time{}, errNoRecord
	}
	if err != nil {
		return "", time.Time{}, fmt.Errorf("%w: hold record: %v", errUnavailable, err)
	}
	convo, _ := sec.Data["conversation_id"].(string)
	s, _ := sec.Data["at"].(string)
	at, _ := time.Parse(shares.TimeLayout, s)
	return convo, at, nil
}

// RecordSignedHold verifies a hold statement signed by roster members and
// records it. When it returns without error, the roster chain verified
// from the pinned genesis and holds the newest version this custodian has
// seen (a newer one is recorded, as a push would), every signature
// verifies over approval.HoldMessage with its signer's key in that
// version, and:
//   - for "place", every signer is a member (officer or approver) and
//     the hold is on record: Destroy keeps the conversation's shares;
//   - for "lift", the hold is on record for that conversation, every
//     signer is an approver, the signers meet the version's rule
//     (roster.Rule.Satisfied), and the lift is on record: Destroy no
//     longer counts the hold.
//
// The same statement again is answered "already_recorded" and changes
// nothing. A statement it does not accept is an *invalid.Error (hold_*
// codes), a *RosterError, or a *HoldRefusedError (a lift whose approvers
// do not meet the rule); a store it cannot read or write is an error
// wrapping errUnavailable. Nothing is recorded then but a newer roster.
//
// Cost: what acceptRoster costs, one Ed25519 verification per signature
// (at most maxHoldSignatures), one or two store reads, one write.
func (c *Custodian) RecordSignedHold(ctx context.Context, h wire.SignedHold) (wire.HoldRecorded, error) {
	ans, err := c.recordSignedHold(ctx, h)
	c.metrics.signedHold(h.Action, ans.Status, err)
	return ans, err
}

func (c *Custodian) recordSignedHold(ctx context.Context, h wire.SignedHold) (wire.HoldRecorded, error) {
	if !validUUID(h.HoldID) || !redact.NamesConversation(h.ConversationID) || (h.Action != approval.HoldPlace && h.Action != approval.HoldLift) ||
		len(h.Signatures) == 0 || len(h.Signatures) > maxHoldSignatures {
		return wire.HoldRecorded{}, invalid.Coded(holdNotValid, "hold",
			fmt.Sprintf("needs a hold id (a UUID), a conversation id, an action (place or lift) and 1 to %d signatures", maxHoldSignatures))
	}
	if len(h.Roster) == 0 {
		return wire.HoldRecorded{}, &RosterError{Code: rosterMissing, Reason: "no roster chain was offered"}
	}
	current, _, err := c.acceptRoster(ctx, h.Roster)
	if err != nil {
		return wire.HoldRecorded{}, err
	}
	signers, err := verifyHoldSignatures(current, h)
	if err != nil {
		return wire.HoldRecorded{}, err
	}
	ids := make([]string, 0, len(signers))
	for _, s := range signers {
		if !slices.Contains(ids, s.ID) {
			ids = append(ids, s.ID)
		}
	}
	ans := wire.HoldRecorded{Custodian: c.cfg.Name, Status: "recorded", HoldID: h.HoldID, ConversationID: h.ConversationID,
		Action: h.Action, Signers: ids, RosterVersion: current.Version}
	by := strings.Join(ids, ",")
	if h.Action == approval.HoldPlace {
		wrote, at, err := c.recordHold(ctx, h.HoldID, h.ConversationID, by, current.Version)
		if err != nil {
			return wire.HoldRecorded{}, err
		}
		if !wrote {
			ans.Status = "already_recorded"
		} else {
			c.log.Info("legal hold placed by signature", "custodian", c.cfg.Name, "hold_id", h.HoldID,
				"conversation_id", h.ConversationID, "signers", by, "roster_version", current.Version)
		}
		ans.RecordedAt = at
		return ans, nil
	}

	convo, _, err := c.heldConversation(ctx, h.HoldID)
	switch {
	case errors.Is(err, errNoRecord):
		return wire.HoldRecorded{}, invalid.Coded(holdUnknown, "hold_id", "names no hold this custodian has on record")
	case err != nil:
		return wire.HoldRecorded{}, err
	case convo != h.ConversationID:
		return wire.HoldRecorded{}, invalid.Coded(holdConflict, "hold_id", "is on record for another conversation")
	}
	if ok, missing := current.Rule.Satisfied(signers); !ok {
		return wire.HoldRecorded{}, &HoldRefusedError{Code: holdLiftRuleUnmet,
			Reason: fmt.Sprintf("lifting a legal hold takes what roster version %d's rule takes; missing: %s", current.Version, strings.Join(missing, ", "))}
	}
	now := shares.FormatTime(c.now())
	data := map[string]any{"at": now, "conversation_id": h.ConversationID, "lifted_by": by, "roster_version": fmt.Sprint(current.Version)}
	switch err := c.store.putOnce(ctx, c.store.path("hold-releases", h.HoldID), data); {
	case errors.Is(err, errExists):
		ans.Status = "already_recorded"
		if sec, err := c.store.get(ctx, c.store.path("hold-releases", h.HoldID)); err == nil {
			now, _ = sec.Data["at"].(string)
		}
	case err != nil:
		return wire.HoldRecorded{}, fmt.Errorf("%w: hold lift record: %v", errUnavailable, err)
	default:
		c.log.Info("legal hold lifted by signatures", "custodian", c.cfg.Name, "hold_id", h.HoldID,
			"conversation_id", h.ConversationID, "signers", by, "roster_version", current.Version)
	}
	ans.RecordedAt, _ = time.Parse(shares.TimeLayout, now)
	return ans, nil
}

// verifyHoldSignatures returns the members whose signatures over h
// verify with their keys in r, refusing the whole statement if any
// signer is not of the kind the action takes (a member to place, an
// approver to lift) or any signature does not verify.
func verifyHoldSignatures(r roster.Roster, h wire.SignedHold) ([]roster.Approver, error) {
	out := make([]roster.Approver, 0, len(h.Signatures))
	for _, s := range h.Signatures {
		var (
			m  roster.Approver
			ok bool
		)
		if h.Action == approval.HoldLift {
			if m, ok = r.Approver(s.SignerID); !ok {
				return nil, invalid.Coded(holdNotApprover, "signer_id",
					fmt.Sprintf("%q must be an approver (not an officer) of roster version %d to lift a hold", s.SignerID, r.Version))
			}
		} else if m, ok = r.Member(s.SignerID); !ok {
			return nil, invalid.Coded(holdNotMember, "signer_id", fmt.Sprintf("%q must be an officer or approver of roster version %d", s.SignerID, r.Version))
		}
		if !approval.VerifyHold(m.PublicKey, h.HoldID, h.ConversationID, h.Action, m.ID, s.Signature) {
			return nil, invalid.Coded(holdBadSignature, "signature",
				fmt.Sprintf("of %q must verify with its key in roster version %d over the %s statement of this hold", s.SignerID, r.Version, h.Action))
		}
		out = append(out, m)
	}
	return out, nil
}

// postSignedHold is POST /v1/holds/signed: 200 with the record; 422 with
// a hold_* or roster code; 409 roster_rollback or hold_conflict; 404
// hold_unknown; 403 hold_lift_rule_unmet.
func (c *Custodian) postSignedHold(w http.ResponseWriter, r *http.Request) {
	var body wire.SignedHold
	if !decodeLimited(w, r, &body, maxHoldBody) {
		return
	}
	ans, err := c.RecordSignedHold(r.Context(), body)
	var (
		re  *RosterError
		hre *HoldRefusedError
	)
	bad, malformed := invalid.As(err)
	switch {
	case errors.As(err, &re):
		c.log.Warn("signed hold refused", "custodian", c.cfg.Name, "code", re.Code, "err", err)
		c.writeRosterError(w, r, re)
	case errors.As(err, &hre):
		c.log.Warn("signed hold refused", "custodian", c.cfg.Name, "code", hre.Code, "hold_id", body.HoldID)
		wire.WriteError(w, http.StatusForbidden, hre.Code, c.cfg.Name+": "+hre.Reason)
	case malformed:
		_, reason, code := bad.Invalid()
		c.log.Warn("signed hold refused", "custodian", c.cfg.Name, "code", code, "hold_id", body.HoldID)
		status := http.StatusUnprocessableEntity
		switch code {
		case holdConflict:
			status = http.StatusConflict
		case holdUnknown:
			status = http.StatusNotFound
		}
		wire.WriteError(w, status, code, c.cfg.Name+": "+bad.Field+" "+reason)
	case err != nil:
		c.callError(w, "signed hold", err)
	default:
		wire.WriteJSON(w, http.StatusOK, ans)
	}
}

// hold is POST /v1/holds with the mediator's token: 200 for a placement,
// 403 hold_lift_needs_signatures for a lift.
func (c *Custodian) hold(w http.ResponseWriter, r *http.Request) {
	var body wire.Hold
	if !decode(w, r, &body) {
		return
	}
	err := c.PlaceHold(r.Context(), body)
	var hre *HoldRefusedError
	switch {
	case errors.As(err, &hre):
		wire.WriteError(w, http.StatusForbidden, hre.Code, c.cfg.Name+": "+hre.Reason)
	case err != nil:
		c.callError(w, "hold", err)
	default:
		wire.WriteJSON(w, http.StatusOK, body)
	}
}

package custodian

import (
	"context"
	"errors"
	"net/http"

	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/wire"
)

// A roster version reaches a custodian on two roads: inside the evidence
// of a release, which the mediator chooses, and pushed by anyone (POST
// /v1/roster), so that a mediator that withholds a version removing or
// re-keying an approver cannot keep the old key counting here. Both roads
// run acceptRoster: the same verification from the pinned genesis, the
// same refusal of a rollback, the same record.

// maxRosterBody bounds a pushed chain. The call needs no credential, so
// the bound is what anyone can make this custodian verify at once; a
// chain of dozens of versions of a roster of hundreds of approvers fits.
const maxRosterBody = 4 << 20

// AcceptRoster verifies chain from the genesis this custodian pins and,
// when its last version is newer than the newest this custodian has
// verified and the chain holds that one, records it: from then on a
// release whose evidence carries an older chain is refused as a rollback,
// and approvals count as the recorded version says. It returns the
// version this custodian holds afterwards. A chain it does not accept is a
// *RosterError (the record is unchanged); a store it cannot read or write
// is an error wrapping errUnavailable.
//
// Cost: one roster.Check per version (none when the chain is the one
// verified last), one store read, one write when the version is new.
func (c *Custodian) AcceptRoster(ctx context.Context, chain []roster.Signed) (wire.CustodianRoster, error) {
	if len(chain) == 0 {
		return wire.CustodianRoster{}, &RosterError{Code: rosterMissing, Reason: "no roster chain was offered"}
	}
	latest, digest, err := c.acceptRoster(ctx, chain)
	if err != nil {
		return wire.CustodianRoster{}, err
	}
	return c.rosterAnswer(latest.Version, digest), nil
}

// RosterStatus returns the newest roster version this custodian has
// verified (version 0 when none yet). Cost: one store read.
func (c *Custodian) RosterStatus(ctx context.Context) (wire.CustodianRoster, error) {
	seen, _, err := c.seenRoster(ctx)
	if err != nil {
		return wire.CustodianRoster{}, err
	}
	return c.rosterAnswer(seen.Version, seen.Digest), nil
}

func (c *Custodian) rosterAnswer(version uint64, digest string) wire.CustodianRoster {
	return wire.CustodianRoster{Custodian: c.cfg.Name, Genesis: c.cfg.RosterGenesis, Version: version, Digest: digest}
}

// showRosterVersion sets mediator_custodian_roster_version from the
// record at start, so that a restarted custodian reports the version it
// holds before any release or push, and the disagreement alert does not
// fire for it. A record it cannot read is logged: the gauge stays 0 until
// the next version is verified. It returns the version (0 if none, or
// unreadable).
func (c *Custodian) showRosterVersion(ctx context.Context) uint64 {
	seen, _, err := c.seenRoster(ctx)
	if err != nil {
		c.log.Warn("roster record unreadable at start", "custodian", c.cfg.Name, "err", err)
		return 0
	}
	c.metrics.rosterVersion(seen.Version)
	return seen.Version
}

// pushRoster is POST /v1/roster: 200 with the version held, 409
// roster_rollback, 422 roster_unverified or roster_missing.
func (c *Custodian) pushRoster(w http.ResponseWriter, r *http.Request) {
	var body wire.RosterPush
	if !decodeLimited(w, r, &body, maxRosterBody) {
		return
	}
	ans, err := c.AcceptRoster(r.Context(), body.Chain)
	var re *RosterError
	switch {
	case errors.As(err, &re):
		c.log.Warn("roster push refused", "custodian", c.cfg.Name, "code", re.Code, "err", err)
		c.writeRosterError(w, r, re)
	case err != nil:
		c.callError(w, "roster push", err)
	default:
		wire.WriteJSON(w, http.StatusOK, ans)
	}
}

// writeRosterError answers a call whose roster chain this custodian did
// not accept (a push, a veto, a signed hold): 409 for a rollback, 422
// otherwise, with the version it holds in the details.
func (c *Custodian) writeRosterError(w http.ResponseWriter, r *http.Request, re *RosterError) {
	status := http.StatusUnprocessableEntity
	if re.Code == rosterRollback {
		status = http.StatusConflict
	}
	held, _ := c.RosterStatus(r.Context())
	wire.WriteError(w, status, re.Code, c.cfg.Name+": "+re.Reason, held)
}

// rosterStatus is GET /v1/roster/status.
func (c *Custodian) rosterStatus(w http.ResponseWriter, r *http.Request) {
	ans, err := c.RosterStatus(r.Context())
	if err != nil {
		c.callError(w, "roster status", err)
		return
	}
	wire.WriteJSON(w, http.StatusOK, ans)
}

package custodian

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/mediatorhq/mediator/invalid"
	"github.com/mediatorhq/mediator/wire"
)

// A signed statement is what a person's tool delivers to a custodian
// directly, so that the mediator cannot withhold it: an approver's veto
// (vetoes.go) or an officer's revocation (revocations.go). Each is
// verified against the roster, recorded once under the request's id, and
// answered the same way; this file holds what they share.

// recordOnce writes a statement's record once (put) and says what
// happened: "recorded", or "already_recorded" when the same statement
// is on record, read back by stored, whose digest must be digest; one on
// record over another digest is an *invalid.Error coded conflict, whose
// reason says which statement conflicts. A store it cannot read or write
// is an error wrapping errUnavailable.
func recordOnce(put func() error, stored func() (string, error), digest, what, conflict, conflictReason string) (string, error) {
	switch err := put(); {
	case errors.Is(err, errExists):
		got, err := stored()
		if err != nil {
			return "", fmt.Errorf("%w: %s record: %v", errUnavailable, what, err)
		}
		if got != digest {
			return "", invalid.Coded(conflict, "canonical", fmt.Sprintf("%s on record for this request id over another digest (%s)", conflictReason, got))
		}
		return "already_recorded", nil
	case err != nil:
		return "", fmt.Errorf("%w: %s record: %v", errUnavailable, what, err)
	}
	return "recorded", nil
}

// writeStatement answers the delivery of a statement of kind what: 200
// with ans; a refused roster chain as writeRosterError does; 409 for the
// conflict code; 422 with the code of any other refusal; otherwise as
// callError does. A refusal is logged with its code and the attrs (the
// signer), never the statement's bytes.
func (c *Custodian) writeStatement(w http.ResponseWriter, r *http.Request, what, conflict string, ans any, err error, attrs ...any) {
	var re *RosterError
	bad, malformed := invalid.As(err)
	switch {
	case errors.As(err, &re):
		c.log.Warn(what+" refused", "custodian", c.cfg.Name, "code", re.Code, "err", err)
		c.writeRosterError(w, r, re)
	case malformed:
		_, reason, code := bad.Invalid()
		c.log.Warn(what+" refused", append([]any{"custodian", c.cfg.Name, "code", code}, attrs...)...)
		status := http.StatusUnprocessableEntity
		if code == conflict {
			status = http.StatusConflict
		}
		wire.WriteError(w, status, code, c.cfg.Name+": "+bad.Field+" "+reason)
	case err != nil:
		c.callError(w, what, err)
	default:
		wire.WriteJSON(w, http.StatusOK, ans)
	}
}

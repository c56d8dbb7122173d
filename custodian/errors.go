package custodian

import (
	"errors"
	"strings"
)

// The errors of a call as a whole, each answered once in callError: a
// *RefusedError, an *invalid.Error (a call malformed in itself, whatever
// its evidence; its reason names only what the caller sent and the bounds
// it broke), or any other error (wrapping errUnavailable where a
// dependency failed), which changed nothing.

// RefusedError is a release the custodian's own checks refuse, with its
// reasons (the policy's, or what the evidence lacks).
type RefusedError struct {
	Reasons        []string
	PolicyRevision string
}

func (e *RefusedError) Error() string {
	return "custodian: release refused: " + strings.Join(e.Reasons, "; ")
}

// errUnavailable: a dependency (Vault, the HSM, the policy engine) failed.
var errUnavailable = errors.New("custodian: a dependency is unavailable")

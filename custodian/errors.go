package custodian

import (
	"errors"
	"fmt"
	"strings"
)

// The errors of a call as a whole, each answered once in callError: a
// *RefusedError, a *badRequestError, or any other error (wrapping
// errUnavailable where a dependency failed), which changed nothing.

// RefusedError is a release the custodian's own checks refuse, with its
// reasons (the policy's, or what the evidence lacks).
type RefusedError struct {
	Reasons        []string
	PolicyRevision string
}

func (e *RefusedError) Error() string {
	return "custodian: release refused: " + strings.Join(e.Reasons, "; ")
}

// badRequestError is a call malformed in itself, whatever its evidence.
// Its reason is written to the caller as it is, so it names only what the
// caller sent and the bounds it broke.
type badRequestError struct{ reason string }

func (e *badRequestError) Error() string { return "custodian: bad request: " + e.reason }

// badRequest is a *badRequestError with the reason format makes.
func badRequest(format string, args ...any) error {
	return &badRequestError{reason: fmt.Sprintf(format, args...)}
}

// errUnavailable: a dependency (Vault, the HSM, the policy engine) failed.
var errUnavailable = errors.New("custodian: a dependency is unavailable")

// Package invalid is the one error for input that breaks a rule: the field
// at fault, why, and, when the rule has a code of its own, that code. It
// never quotes the offending value, which may be an identifier or a secret.
//
// Every package that checks input returns an *Error; the API answers each
// one 422 with the envelope's field problem, in one place, by asking the
// error for Invalid.
package invalid

import "errors"

// CodeValidationFailed is the code of a rule without a code of its own.
const CodeValidationFailed = "validation_failed"

// Error is input that breaks a rule.
type Error struct {
	// Field names the input at fault ("case_id", "scope.from").
	Field string
	// Reason says what the field must be, for people.
	Reason string
	// Code is the rule's stable code, or empty for CodeValidationFailed.
	Code string
}

// Input returns an *Error for field without a code of its own.
func Input(field, reason string) error { return &Error{Field: field, Reason: reason} }

// Coded returns an *Error for field under the rule named code.
func Coded(code, field, reason string) error { return &Error{Field: field, Reason: reason, Code: code} }

func (e *Error) Error() string { return "invalid " + e.Field + ": " + e.Reason }

// Invalid returns the field at fault, why, and the rule's code
// (CodeValidationFailed when it has none of its own): everything a
// client is told.
func (e *Error) Invalid() (field, reason, code string) {
	code = e.Code
	if code == "" {
		code = CodeValidationFailed
	}
	return e.Field, e.Reason, code
}

// As returns the *Error in err's chain, if there is one.
func As(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

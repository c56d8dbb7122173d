package invalid

import (
	"fmt"
	"testing"
)

func TestInvalidNamesFieldReasonAndCode(t *testing.T) {
	err := fmt.Errorf("access: file request: %w", Input("case_id", "must be 1–128 printable characters"))
	e, ok := As(err)
	if !ok {
		t.Fatalf("As(%v) found no *Error", err)
	}
	if f, r, c := e.Invalid(); f != "case_id" || r != "must be 1–128 printable characters" || c != CodeValidationFailed {
		t.Errorf("Invalid() = %q, %q, %q", f, r, c)
	}
	coded, _ := As(Coded("identifier_in_opaque_field", "justification", "contains a phone number"))
	if _, _, c := coded.Invalid(); c != "identifier_in_opaque_field" {
		t.Errorf("code = %q, want the rule's own", c)
	}
	if _, ok := As(fmt.Errorf("plain")); ok {
		t.Error("As found an *Error in a plain error")
	}
}

package client

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestErrorNamesTheCustodian: a deposit's 503 that names the custodian
// that failed surfaces its name and reason in the Error, whose text says
// them; an answer that names none leaves them empty.
func TestErrorNamesTheCustodian(t *testing.T) {
	raw := `{"error":{"code":"dependency_unavailable","message":"custodian custodian-2 refused: 403 forbidden: not this token; nothing was kept",` +
		`"details":[{"dependency":"custodian","custodian":"custodian-2","reason":"refused: 403 forbidden: not this token","custodians":["custodian-2"]}]}}`
	err := fmt.Errorf("escrow deposit: %w", decodeError(503, []byte(raw)))
	var e *Error
	if !errors.As(err, &e) || e.Custodian != "custodian-2" || e.Reason != "refused: 403 forbidden: not this token" ||
		!strings.Contains(err.Error(), "custodian custodian-2 refused") {
		t.Fatalf("%v (%+v)", err, e)
	}
	old := decodeError(503, []byte(`{"error":{"code":"dependency_unavailable","message":"a custodian or the database is unavailable; nothing was kept","details":[{"dependency":"custodian"}]}}`))
	if !errors.As(old, &e) || e.Custodian != "" || e.Reason != "" {
		t.Fatalf("an answer naming no custodian: %+v", e)
	}
}

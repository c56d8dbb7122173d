package dev

import "testing"

// TestEveryStateDirHasItsOwnDatabase: a state dir named by
// MEDIATOR_DEV_STATE_DIR gets a database of its own, not the user's
// mediator_dev, whose log another checkpoint key signed.
func TestEveryStateDirHasItsOwnDatabase(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", "/home/u/.local/state")
	t.Setenv("MEDIATOR_DEV_STATE_DIR", "/tmp/other")
	if got := databaseFor("/home/u/.local/state/mediator/dev"); got != "mediator_dev" {
		t.Fatalf("the user's own state dir: %s", got)
	}
	a, b := databaseFor("/tmp/other"), databaseFor("/tmp/another")
	if a == "mediator_dev" || b == "mediator_dev" || a == b {
		t.Fatalf("other state dirs: %s and %s", a, b)
	}
}

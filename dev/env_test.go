package dev

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mediatorhq/mediator/dev/servers"
)

// TestEnvExportsTheKeysAndWitnesses: `mediator dev env` exports each dev
// approver's and the officer's signing key and the witness policy by
// absolute path, so the README's commands work under any --state-dir,
// from any directory.
func TestEnvExportsTheKeysAndWitnesses(t *testing.T) {
	base := t.TempDir()
	t.Chdir(base)
	os.Mkdir("state", 0o700)
	in := &Instance{StateDir: "state", Vault: &servers.Vault{Addr: "http://127.0.0.1:1", Token: "root-x"},
		WitnessesFile: filepath.Join("state", "custodians", "mediator-witnesses.json")}
	if err := in.Publish("http://127.0.0.1:8080", "sha256:set", "sha256:genesis"); err != nil {
		t.Fatal(err)
	}
	defer in.Unpublish()
	lines, err := EnvLines("state")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, l := range lines {
		k, v, _ := strings.Cut(strings.TrimPrefix(l, "export "), "=")
		got[k] = strings.Trim(v, "'")
	}
	state := filepath.Join(base, "state")
	for k, want := range map[string]string{
		"MEDIATOR_DEV_LEGAL_KEY":    filepath.Join(state, "dev-legal.key"),
		"MEDIATOR_DEV_SECURITY_KEY": filepath.Join(state, "dev-security.key"),
		"MEDIATOR_DEV_OFFICER_KEY":  filepath.Join(state, "dev-officer.key"),
		"MEDIATOR_WITNESSES":        filepath.Join(state, "custodians", "mediator-witnesses.json"),
		"MEDIATOR_ROSTER_GENESIS":   "sha256:genesis",
	} {
		if got[k] != want {
			t.Errorf("dev env %s = %q, want %q\n%s", k, got[k], want, strings.Join(lines, "\n"))
		}
	}
	if KeyVar("dev-legal") != "MEDIATOR_DEV_LEGAL_KEY" {
		t.Errorf("KeyVar(dev-legal) = %s", KeyVar("dev-legal"))
	}
}

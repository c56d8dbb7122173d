//go:build cgo

package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mediatorhq/mediator/dev/servers"
	"github.com/mediatorhq/mediator/roster"
)

// TestCustodianInitMakesTheHSMKey: an HSM custodian's operator runs
// `vault bootstrap --custodian NAME --hsm` (KV prefix, policy, AppRole; no
// Transit) against a real Vault, writes a pkcs11 section naming a fresh
// SoftHSM2 token, and `custodian init` creates the key on the token and
// says so; run again, it uses that key and prints the same roster entry.
func TestCustodianInitMakesTheHSMKey(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	vault, err := servers.StartVault(ctx, nil, servers.VaultOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer vault.Stop()
	module, err := servers.SoftHSMToken(ctx, nil, dir, "cli-token", "1618-pin")
	if err != nil {
		t.Fatal(err)
	}
	name := "hsm-cli-" + strings.ToLower(rand.Text()[:8])
	env := map[string]string{"VAULT_ADDR": vault.Addr, "VAULT_TOKEN": vault.Token}
	if _, _, _, err := runArgs([]string{"vault", "bootstrap", "--hsm", "--secret-id-file", filepath.Join(dir, "x")}, env); err == nil ||
		!strings.Contains(err.Error(), "--hsm needs --custodian") {
		t.Fatalf("--hsm without --custodian: %v", err)
	}
	secretID := filepath.Join(dir, name+".secret-id")
	_, stdout, _, err := runArgs([]string{"vault", "bootstrap", "--custodian", name, "--hsm", "--secret-id-file", secretID}, env)
	if err != nil {
		t.Fatal(err)
	}
	var parts map[string]json.RawMessage
	if err := json.Unmarshal([]byte(stdout), &parts); err != nil || parts["vault"] == nil || parts["kv"] == nil || parts["transit"] != nil {
		t.Fatalf("bootstrap printed %s (%v); want vault and kv, no transit", stdout, err)
	}

	for f, v := range map[string]string{"pin": "1618-pin", "mediator-token": rand.Text(), "operator-token": rand.Text()} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	config := filepath.Join(dir, name+".json")
	body := fmt.Sprintf(`{"name": %q, "listen": "127.0.0.1:8443", "vault": %s, "kv": %s,
		"pkcs11": {"module": %q, "token_label": "cli-token", "key_label": %q, "pin_file": %q},
		"mediator_token_file": %q, "operator_token_file": %q, "roster_genesis": ""}`,
		name, parts["vault"], parts["kv"], module, name, filepath.Join(dir, "pin"),
		filepath.Join(dir, "mediator-token"), filepath.Join(dir, "operator-token"))
	if err := os.WriteFile(config, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	var entries []roster.Custodian
	for _, want := range []string{"created the key", "using the existing key"} {
		_, stdout, stderr, err := runArgs([]string{"custodian", "init", "--config", config}, nil)
		if err != nil {
			t.Fatalf("custodian init: %v\n%s", err, stderr)
		}
		if line := fmt.Sprintf("pkcs11: %s %q on token %q", want, name, "cli-token"); !strings.Contains(stderr, line) {
			t.Errorf("custodian init said %q, want %q", stderr, line)
		}
		var e roster.Custodian
		if err := json.Unmarshal([]byte(stdout), &e); err != nil || e.Name != name {
			t.Fatalf("roster entry %s: %v", stdout, err)
		}
		entries = append(entries, e)
	}
	if !entries[0].SigningKey.Equal(entries[1].SigningKey) {
		t.Error("the second init made other keys")
	}
}

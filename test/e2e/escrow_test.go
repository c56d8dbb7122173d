package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mediatorhq/mediator/dev/servers"
)

// TestDepositStory: a gateway escrows a conversation key; the same key again
// is idempotent, another key under the same id conflicts, the deposit is in
// the audit log without key material, and with Vault down a deposit is
// refused with nothing kept.
func TestDepositStory(t *testing.T) {
	ctx := context.Background()
	vault, err := servers.StartVault(ctx, nil, servers.VaultOptions{IgnoreEnv: true})
	if err != nil {
		t.Fatal(err)
	}
	defer vault.Stop()
	in := startServe(t, serveOpts{vault: vault})
	waitStatus(t, in.proc, in.base+"/readyz", 200, 60*time.Second)
	dep, _ := in.issuer.Issue("gateway-7", []string{"depositor"}, time.Hour)
	aud, _ := in.issuer.Issue("auditor-1", []string{"auditor"}, time.Hour)
	url := in.base + "/v1/escrow/keys"

	key := make([]byte, 32)
	rand.Read(key)
	keyB64 := base64.StdEncoding.EncodeToString(key)
	body := func(convo, keyID, k string) []byte {
		b, _ := json.Marshal(map[string]string{"conversation_id": convo, "key_id": keyID, "key": k})
		return b
	}

	if code, _ := post(t, url, "application/json", aud, body("c", "k", keyB64)); code != 403 {
		t.Fatalf("auditor deposit: %d", code)
	}
	code, first := post(t, url, "application/json", dep, body("conv-9", "epoch-1", keyB64))
	if code != 201 || first["threshold"] != 3.0 || first["shares"] != 5.0 || !strings.HasPrefix(fmt.Sprint(first["key_commitment"]), "sha256:") {
		t.Fatalf("deposit: %d %v", code, first)
	}
	code, again := post(t, url, "application/json", dep, body("conv-9", "epoch-1", keyB64))
	if code != 200 || fmt.Sprint(again) != fmt.Sprint(first) {
		t.Fatalf("same key again: %d %v", code, again)
	}
	other := make([]byte, 32)
	rand.Read(other)
	if code, b := post(t, url, "application/json", dep, body("conv-9", "epoch-1", base64.StdEncoding.EncodeToString(other))); code != 409 || errorCode(b) != "conflict" {
		t.Fatalf("other key, same id: %d %v", code, b)
	}
	for name, b := range map[string][]byte{
		"short key":     body("c", "k", base64.StdEncoding.EncodeToString(key[:15])),
		"long key":      body("c", "k", base64.StdEncoding.EncodeToString(append(append(append([]byte{}, key...), key...), 1))),
		"not base64":    body("c", "k", "%%%"),
		"no conversion": body("", "k", keyB64),
	} {
		if code, resp := post(t, url, "application/json", dep, b); code != 422 || strings.Contains(fmt.Sprint(resp), keyB64) {
			t.Errorf("%s: %d %v", name, code, resp)
		}
	}
	if code, _ := post(t, url, "application/json", dep, []byte(`{"conversation_id":"c","key_id":"k","key":"`+keyB64+`","extra":1}`)); code != 400 {
		t.Errorf("unknown field: %d", code)
	}

	// The deposit is in the log, with the commitment and no key.
	_, entry, _ := call(t, "GET", fmt.Sprintf("%s/v1/audit/entries/%v", in.base, first["audit_seq"]), aud)
	rec, _ := entry["record"].(map[string]any)
	if rec["kind"] != "escrow.deposit" || rec["key_commitment"] != first["key_commitment"] || rec["escrow_id"] != first["escrow_id"] {
		t.Fatalf("audit entry: %v", entry)
	}

	// Vault down: 503 with Retry-After, and no new row.
	vault.Stop()
	req := body("conv-9", "epoch-2", keyB64)
	code, down := post(t, url, "application/json", dep, req)
	if code != 503 || errorCode(down) != "dependency_unavailable" {
		t.Fatalf("deposit with Vault down: %d %v", code, down)
	}
	conn, err := pgx.Connect(ctx, in.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM escrow_keys").Scan(&n); err != nil || n != 1 {
		t.Fatalf("escrow rows after a failed deposit: %d %v", n, err)
	}

	// The key never reached the database, the logs or the metrics.
	dump := dumpTables(t, in.dsn)
	metrics := rawGet(t, in.base+"/metrics")
	for where, text := range map[string]string{"database": dump, "logs": in.proc.Output(), "metrics": metrics} {
		for _, form := range []string{keyB64, base64.RawURLEncoding.EncodeToString(key), fmt.Sprintf("%x", key)} {
			if strings.Contains(text, form) {
				t.Errorf("key material in %s", where)
			}
		}
	}
	for _, want := range []string{`mediator_escrow_deposits_total{outcome="created"} 1`, `mediator_escrow_deposits_total{outcome="conflict"} 1`, `mediator_escrow_deposits_total{outcome="unavailable"} 1`, "mediator_escrow_custodian_seconds_bucket"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestEscrowLifecycleCLI: an operator holds one conversation and destroys
// keys past retention; the held key survives, the other is gone.
func TestEscrowLifecycleCLI(t *testing.T) {
	in := startServe(t, serveOpts{})
	waitStatus(t, in.proc, in.base+"/readyz", 200, 60*time.Second)
	dep, _ := in.issuer.Issue("gw", []string{"depositor"}, time.Hour)
	for _, convo := range []string{"conv-free", "conv-held"} {
		key := make([]byte, 16)
		rand.Read(key)
		b, _ := json.Marshal(map[string]string{"conversation_id": convo, "key_id": "k", "key": base64.StdEncoding.EncodeToString(key)})
		if code, body := post(t, in.base+"/v1/escrow/keys", "application/json", dep, b); code != 201 {
			t.Fatalf("deposit %s: %d %v", convo, code, body)
		}
	}
	op := []string{"DATABASE_URL=" + in.dsn, "VAULT_ADDR=" + env.Vault.Addr, "VAULT_TOKEN=" + env.Vault.Token}
	out, stderr, err := runCmd(t, op, "escrow", "hold", "--conversation", "conv-held", "--reason", "preservation order 17", "--by", "counsel")
	if err != nil || !strings.Contains(out, "legal hold") {
		t.Fatalf("hold: %v %s %s", err, out, stderr)
	}
	tomorrow := time.Now().Add(24 * time.Hour).Format("2006-01-02")
	out, stderr, err = runCmd(t, op, "escrow", "destroy", "--before", tomorrow)
	if err != nil || !strings.Contains(out, "destroyed 1, kept under legal hold 1, failed 0") {
		t.Fatalf("destroy: %v %s %s", err, out, stderr)
	}
	// After a custodian key rotation, the operator re-wraps; the held key's
	// shares move to the new version.
	if _, err := adminVault(t, env.Vault).Logical().Write("mediator-transit/keys/custodian-4/rotate", nil); err != nil {
		t.Fatal(err)
	}
	out, stderr, err = runCmd(t, op, "escrow", "rewrap", "--custodian", "custodian-4")
	if err != nil || !strings.Contains(out, "rewrapped") || !strings.Contains(out, "0 failed") || strings.Contains(out, "rewrapped 0 ") {
		t.Fatalf("rewrap: %v %s %s", err, out, stderr)
	}
	// The log records it all and still verifies.
	if out, _, err := runCmd(t, append(op, "MEDIATOR_LOG_ORIGIN=mediator/audit"), "audit", "verify"); err != nil {
		t.Fatalf("audit verify: %v %s", err, out)
	}
}

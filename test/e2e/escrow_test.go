package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mediatorhq/mediator/client"
	"github.com/mediatorhq/mediator/dev"
	"github.com/mediatorhq/mediator/dev/servers"
	"github.com/mediatorhq/mediator/wire"
)

// TestDepositStory: a gateway escrows a conversation key through the client
// package, which seals it to the custodian set it pinned; the same key
// again is idempotent, another key under the same id conflicts, a set it
// did not pin is refused before anything is sealed; the deposit is in the
// log without key material; and with the custodians' Vault down a deposit
// is refused with nothing kept.
func TestDepositStory(t *testing.T) {
	ctx := context.Background()
	vault, err := servers.StartVault(ctx, nil, servers.VaultOptions{IgnoreEnv: true})
	if err != nil {
		t.Fatal(err)
	}
	defer vault.Stop()
	cs := startCustodians(t, vault, dev.CustodianOptions{})
	in := startServe(t, serveOpts{custodians: cs})
	in.waitReady(t, 60*time.Second)
	dep, _ := in.issuer.Issue("gateway-7", []string{"depositor"}, time.Hour)
	aud, _ := in.issuer.Issue("auditor-1", []string{"auditor"}, time.Hour)
	gw, _ := newClient(in.base, dep, http.DefaultClient)
	auditor, _ := newClient(in.base, aud, http.DefaultClient)

	key := make([]byte, 32)
	rand.Read(key)
	keyB64 := base64.StdEncoding.EncodeToString(key)
	var first client.Deposited // the first deposit's answer

	step(t, "an auditor may not deposit", func(t *testing.T) {
		if _, err := auditor.Deposit(ctx, cs.digest, "c", "k", key); !client.IsCode(err, "forbidden") {
			t.Fatalf("auditor deposit: %v", err)
		}
	})

	step(t, "a gateway escrows a key, and again is idempotent", func(t *testing.T) {
		var err error
		first, err = gw.Deposit(ctx, cs.digest, conv("conv-9"), "epoch-1", key)
		if err != nil || !first.Created || first.Threshold != 3 || first.Shares != 5 || len(first.Receipts) != 5 {
			t.Fatalf("deposit: %+v %v", first, err)
		}
		again, err := gw.Deposit(ctx, cs.digest, conv("conv-9"), "epoch-1", key)
		// The client took the 200 only with every custodian's stored receipt.
		if err != nil || again.Created || again.EscrowID != first.EscrowID || len(again.Receipts) != 5 {
			t.Fatalf("same key again: %+v %v", again, err)
		}
	})

	step(t, "another key under the same id conflicts", func(t *testing.T) {
		other := make([]byte, 32)
		rand.Read(other)
		if _, err := gw.Deposit(ctx, cs.digest, conv("conv-9"), "epoch-1", other); !client.IsCode(err, "conflict") {
			t.Fatalf("other key, same id: %v", err)
		}
	})

	step(t, "a set not pinned and a short key are refused before sealing", func(t *testing.T) {
		if _, err := gw.Deposit(ctx, "sha256:"+strings.Repeat("ab", 32), conv("conv-9"), "epoch-2", key); err == nil || !strings.Contains(err.Error(), "pinned") {
			t.Fatalf("a set that is not the pinned one: %v", err)
		}
		if _, err := gw.Deposit(ctx, cs.digest, conv("conv-9"), "epoch-2", key[:15]); err == nil {
			t.Fatal("a short key was deposited")
		}
	})

	step(t, "malformed deposits are refused without echoing the key", func(t *testing.T) {
		for name, body := range map[string]string{
			"plaintext key":  `{"conversation_id":"` + conv("c") + `","key_id":"k","key":"` + keyB64 + `"}`,
			"no commitment":  `{"conversation_id":"` + conv("c") + `","key_id":"k","custodian_set":"` + cs.digest + `","threshold":3,"shares":[]}`,
			"no shares":      `{"conversation_id":"` + conv("c") + `","key_id":"k","commitment":"sha256:` + strings.Repeat("0", 64) + `","custodian_set":"` + cs.digest + `","threshold":3,"shares":[]}`,
			"no custody set": `{"conversation_id":"` + conv("c") + `","key_id":"k","commitment":"sha256:` + strings.Repeat("0", 64) + `","threshold":3,"shares":[]}`,
		} {
			code, resp := post(t, in.base+"/v1/escrow/keys", "application/json", dep, []byte(body))
			if (code != 422 && code != 409) || strings.Contains(fmt.Sprint(resp), keyB64) {
				t.Errorf("%s: %d %v", name, code, resp)
			}
		}
		if code, _ := post(t, in.base+"/v1/escrow/keys", "application/json", dep, []byte(`{"conversation_id":"c","extra":1}`)); code != 400 {
			t.Errorf("unknown field: %d", code)
		}
	})

	// The deposit is in the log: the commitment, the depositor, each
	// custodian's share by hashes, and no key.
	step(t, "the deposit is in the log without the key", func(t *testing.T) {
		_, entry, _ := call(t, "GET", fmt.Sprintf("%s/v1/audit/entries/%d", in.base, first.AuditSeq), aud)
		rec, _ := entry["record"].(map[string]any)
		if rec["kind"] != "escrow.deposit" || rec["key_commitment"] != first.KeyCommitment || rec["escrow_id"] != first.EscrowID ||
			rec["depositor"] != "gateway-7" || len(rec["shares"].([]any)) != 5 {
			t.Fatalf("audit entry: %v", entry)
		}
	})

	// The custodians' Vault down: 503 with Retry-After naming a
	// custodian that failed, and no new row.
	step(t, "with the custodians' Vault down a deposit is refused and nothing kept", func(t *testing.T) {
		vault.Stop()
		_, err := gw.Deposit(ctx, cs.digest, conv("conv-9"), "epoch-2", key)
		var apiErr *client.Error
		if !errorsAs(err, &apiErr) || apiErr.Status != 503 || apiErr.Code != "dependency_unavailable" ||
			!strings.HasPrefix(apiErr.Custodian, "custodian-") || !strings.Contains(apiErr.Message, "custodian "+apiErr.Custodian+" failed") {
			t.Fatalf("deposit with the custodians' Vault down: %v", err)
		}
		if n := countRows(t, in.dsn, "escrow_keys"); n != 1 {
			t.Fatalf("escrow rows after a failed deposit: %d", n)
		}
	})

	// The key never reached the database, the logs or the metrics.
	step(t, "the key is kept nowhere and the metrics count each outcome", func(t *testing.T) {
		dump := dumpTables(t, in.dsn)
		metrics := rawGet(t, in.metrics)
		for where, text := range map[string]string{"database": dump, "logs": in.proc.Output(), "metrics": metrics, "custodian logs": cs.output()} {
			for _, form := range []string{keyB64, base64.RawURLEncoding.EncodeToString(key), fmt.Sprintf("%x", key)} {
				if strings.Contains(text, form) {
					t.Errorf("key material in %s", where)
				}
			}
		}
		for _, want := range []string{`mediator_escrow_deposits_total{outcome="created"} 1`, `mediator_escrow_deposits_total{outcome="conflict"} 2`,
			`mediator_escrow_deposits_total{outcome="unavailable"} 1`, `mediator_escrow_custodian_seconds_bucket{custodian="custodian-1",op="store"`} {
			if !strings.Contains(metrics, want) {
				t.Errorf("metrics lack %s", want)
			}
		}
	})
}

// TestEscrowLifecycleCLI: an operator holds one conversation and destroys
// keys past retention; every custodian destroys its share of the free key
// and keeps the held one's; after a custodian's Transit key is rotated,
// the custodian's operator rewraps its shares.
func TestEscrowLifecycleCLI(t *testing.T) {
	ctx := context.Background()
	cs := startCustodians(t, nil, dev.CustodianOptions{MinRetention: time.Nanosecond})
	in := startServe(t, serveOpts{custodians: cs})
	in.waitReady(t, 60*time.Second)
	tok, _ := in.issuer.Issue("gw", []string{"depositor"}, time.Hour)
	gw, _ := newClient(in.base, tok, http.DefaultClient)
	for _, convo := range []string{conv("conv-free"), conv("conv-held")} {
		key := make([]byte, 16)
		rand.Read(key)
		if _, err := gw.Deposit(ctx, cs.digest, convo, "k", key); err != nil {
			t.Fatalf("deposit %s: %v", convo, err)
		}
	}
	op := []string{"DATABASE_URL=" + in.dsn, "MEDIATOR_CUSTODIANS=" + cs.file}
	out, stderr, err := runCmd(t, op, "escrow", "hold", "--conversation", conv("conv-held"), "--reason", "preservation order 17", "--by", "counsel")
	if err != nil || !strings.Contains(out, "legal hold") {
		t.Fatalf("hold: %v %s %s", err, out, stderr)
	}
	tomorrow := time.Now().Add(24 * time.Hour).Format("2006-01-02")
	// Without a terminal and without --yes, it shows what is due and
	// destroys nothing; --dry-run only shows.
	out, stderr, err = runCmd(t, op, "escrow", "destroy", "--before", tomorrow)
	if err == nil || !strings.Contains(stderr, "due        1 escrowed key of 1 conversation") || !strings.Contains(stderr, "pass --yes") {
		t.Fatalf("destroy without --yes: %v %s %s", err, out, stderr)
	}
	out, stderr, err = runCmd(t, op, "escrow", "destroy", "--before", tomorrow, "--dry-run")
	if err != nil || !strings.Contains(out, "held back  1 escrowed key of 1 conversation under a legal hold") {
		t.Fatalf("destroy --dry-run: %v %s %s", err, out, stderr)
	}
	if n := countRows(t, in.dsn, "escrow_destructions"); n != 0 {
		t.Fatalf("%d escrows destroyed without --yes", n)
	}
	out, stderr, err = runCmd(t, op, "escrow", "destroy", "--before", tomorrow, "--yes")
	if err != nil || !strings.Contains(out, "destroyed 1, kept under legal hold 1, failed 0") {
		t.Fatalf("destroy: %v %s %s", err, out, stderr)
	}
	if !strings.Contains(cs.output(), `"msg":"share destroyed"`) {
		t.Fatal("no custodian logged a destruction")
	}
	// After custodian-4's Transit key is rotated, its operator re-wraps;
	// the held key's share moves to the new version.
	if _, err := adminVault(t, env.Vault).Logical().Write("mediator-transit/keys/custodian-4/rotate", nil); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", cs.cs[3].URL+"/v1/rewrap", nil)
	req.Header.Set("Authorization", "Bearer "+cs.cs[3].OperatorToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var ans wire.RewrapAnswer
	json.NewDecoder(resp.Body).Decode(&ans)
	resp.Body.Close()
	if resp.StatusCode != 200 || ans.Rewrapped != 2 || len(ans.Failed) != 0 { // its identity and the held key's share
		t.Fatalf("rewrap: %d %+v", resp.StatusCode, ans)
	}
	// The log records it all and still verifies.
	vop := []string{"DATABASE_URL=" + in.dsn, "VAULT_ADDR=" + env.Vault.Addr, "VAULT_TOKEN=" + env.Vault.Token, "MEDIATOR_LOG_ORIGIN=mediator/audit"}
	if out, _, err := runCmd(t, vop, "audit", "verify"); err != nil {
		t.Fatalf("audit verify: %v %s", err, out)
	}
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }

package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/seal"
)

// TestAPIGuideExamples runs every sh block of docs/api.md, in order and in
// one shell, against a fresh `mediator dev`: the guide's examples work as
// written.
func TestAPIGuideExamples(t *testing.T) {
	state := t.TempDir()
	addr := freeAddr(t)
	p := start(t, []string{"DATABASE_URL=" + env.NewDatabase(t)}, "dev", "--addr", addr, "--state-dir", state)
	// Stopped as its user would (Ctrl-C), so it stops its Vault and
	// PostgreSQL and removes their directories; a kill would leave them.
	defer p.stop(t, syscall.SIGINT)
	waitStatus(t, p, "http://"+addr+"/readyz", 200, 3*time.Minute)
	// The instance is ready for the guide once it has founded its roster
	// and published its env file, which the banner follows.
	for deadline := time.Now().Add(time.Minute); !strings.Contains(p.Output(), "Ctrl-C stops everything"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no dev banner:\n%s", p.Output())
		}
	}
	out := runGuide(t, "api.md", 10, "MEDIATOR_DEV_STATE_DIR="+state)
	for _, want := range []string{`"status":"ready"`, `"accepted":2`, "ok: ", `"conversation":"ps1_`, "escrowed 14155550100@s.whatsapp.net/epoch-2-",
		"not_a_pseudonym", "(pseudonym ps1_", "policy_denied", "released 2 keys", `"group_by":"transport"`,
		"ok: roster version 1", "checked in as dev-legal"} {
		if !strings.Contains(out, want) {
			t.Errorf("the examples' output lacks %q:\n%s\n--- dev output:\n%s", want, out, p.Output())
		}
	}
}

// TestCustodianRunbook runs every sh block of docs/custodians.md, as a
// custodian's operator would, against the shared real Vault: bootstrap,
// approvers, tokens, configuration, serve, publish, metrics, rewrap.
func TestCustodianRunbook(t *testing.T) {
	port := freeAddr(t)
	port = port[strings.LastIndexByte(port, ':')+1:]
	// The two other custodians' roster entries, as their operators would
	// send them.
	var others []string
	for _, name := range []string{"other-1", "other-2"} {
		_, hpkeKey, err := seal.NewKey(seal.KEMMLKEM768X25519)
		if err != nil {
			t.Fatal(err)
		}
		signing, _, _ := ed25519.GenerateKey(nil)
		b, _ := json.Marshal(roster.Custodian{Name: name, URL: "https://" + name + ".example", HPKEKey: hpkeKey, SigningKey: signing})
		others = append(others, string(b))
	}
	// The log's checkpoint key, as the mediator's operator would send it
	// (mediator audit verifier-key --entry).
	_, logKey, err := note.GenerateKey(rand.Reader, "mediator/audit")
	if err != nil {
		t.Fatal(err)
	}
	out := runGuide(t, "custodians.md", 7, "VAULT_ADDR="+env.Vault.Addr, "VAULT_TOKEN="+env.Vault.Token,
		"NAME=runbook-"+strings.ToLower(rand.Text()[:8]), "PORT="+port, "OTHER_CUSTODIANS="+strings.Join(others, ", "), "LOG_VERIFIER_KEY="+logKey)
	for _, want := range []string{`"status":"ready"`, `"hpke_public_key":{"kem_id":25722`, `"signing_key"`, "mediator_custodian_", `"rewrapped":`, `"role_id":`,
		"genesis sha256:", `"roster_genesis": "sha256:`, "approver   lena  roles legal  key ed25519:", "log        mediator/audit  key ed25519:",
		`"witness": {"logs":[{"origin":"mediator/audit","verifier_keys":["` + logKey + `"]}]}`, `"witness_key":"runbook-`} {
		if !strings.Contains(out, want) {
			t.Errorf("the runbook's output lacks %q:\n%s", want, out)
		}
	}
}

// runGuide runs every sh block of docs/<name> in order, in one bash with
// -euo pipefail, in a fresh directory with the mediator binary on PATH and
// environ added, and returns what it printed. At least min blocks must be
// there, so a guide that lost its examples fails.
func runGuide(t *testing.T, name string, min int, environ ...string) string {
	t.Helper()
	return runGuideWithin(t, name, min, 3*time.Minute, environ...)
}

// runGuideWithin is runGuide with a time limit of its own.
func runGuideWithin(t *testing.T, name string, min int, limit time.Duration, environ ...string) string {
	t.Helper()
	guide, err := os.ReadFile(filepath.Join("..", "..", "docs", name))
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(string(guide), -1)
	if len(blocks) < min {
		t.Fatalf("docs/%s has %d sh blocks; the guide lost its examples", name, len(blocks))
	}
	var script strings.Builder
	// Whatever a block leaves running in the background stops with it.
	script.WriteString("set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n")
	for i, b := range blocks {
		// Say which block runs, so a failure points at it.
		fmt.Fprintf(&script, "echo '--- docs/%s block %02d' >&2\n", name, i)
		script.WriteString(b[1])
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script.String())
	cmd.Dir = t.TempDir()
	cmd.Env = append(append(cleanEnv(), "PATH="+filepath.Dir(mediator)+":"+os.Getenv("PATH")), environ...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("docs/%s examples failed: %v\n%s", name, err, out.String())
	}
	return out.String()
}

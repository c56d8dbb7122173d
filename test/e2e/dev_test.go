package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mediatorhq/mediator/pseudonym"
	"github.com/mediatorhq/mediator/witness"
	"golang.org/x/mod/sumdb/note"
)

// TestDevAllInOne is `make run` as a developer uses it: start `mediator dev`,
// get a token from `mediator dev token`, call the API, use `mediator dev env`
// to reach the database, press Ctrl-C, and find nothing left running.
func TestDevAllInOne(t *testing.T) {
	state := t.TempDir()
	addr := freeAddr(t)
	// With no VAULT_ADDR, dev starts Vault itself; the database is this
	// test's own, so the log holds only what this test writes.
	dsn := env.NewDatabase(t)
	p := start(t, []string{"DATABASE_URL=" + dsn}, "dev", "--addr", addr, "--state-dir", state)
	base := "http://" + addr
	waitStatus(t, p, base+"/readyz", 200, 3*time.Minute)

	var vars map[string]string // what `mediator dev env` exports

	step(t, "dev prints a banner with the URL and examples", func(t *testing.T) {
		for deadline := time.Now().Add(30 * time.Second); !strings.Contains(p.Output(), "Ctrl-C stops everything"); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no dev banner:\n%s", p.Output())
			}
		}
		if out := p.Output(); !strings.Contains(out, base) || !strings.Contains(out, "dev token") || !strings.Contains(out, "curl") ||
			!strings.Contains(out, "custodian-1 … custodian-5") || !strings.Contains(out, "dev-legal") {
			t.Fatalf("dev banner lacks the URL, examples, custodians or approvers:\n%s", out)
		}
	})

	step(t, "a token from dev token calls the API", func(t *testing.T) {
		tok, stderr, err := runCmd(t, nil, "dev", "token", "--state-dir", state, "--sub", "dana", "--roles", "admin", "--ttl", "10m")
		if err != nil {
			t.Fatalf("dev token: %v %s", err, stderr)
		}
		code, body, _ := call(t, "GET", base+"/v1/whoami", strings.TrimSpace(tok))
		if code != 200 || body["subject"] != "dana" {
			t.Fatalf("whoami with dev token: %d %v", code, body)
		}
	})

	step(t, "dev env reaches the database and Vault", func(t *testing.T) {
		envOut, stderr, err := runCmd(t, nil, "dev", "env", "--state-dir", state)
		if err != nil {
			t.Fatalf("dev env: %v %s", err, stderr)
		}
		vars = parseExports(t, envOut)
		for _, k := range []string{"DATABASE_URL", "VAULT_ADDR", "VAULT_TOKEN", "MEDIATOR_ADDR", "MEDIATOR_CUSTODIAN_SET", "MEDIATOR_ROSTER_GENESIS",
			"MEDIATOR_WITNESSES", "MEDIATOR_DEV_LEGAL_KEY", "MEDIATOR_DEV_SECURITY_KEY", "MEDIATOR_DEV_OFFICER_KEY"} {
			if vars[k] == "" {
				t.Fatalf("dev env lacks %s:\n%s", k, envOut)
			}
		}
		// The key paths and the witness policy are files in --state-dir.
		for _, k := range []string{"MEDIATOR_WITNESSES", "MEDIATOR_DEV_LEGAL_KEY", "MEDIATOR_DEV_SECURITY_KEY", "MEDIATOR_DEV_OFFICER_KEY"} {
			if _, err := os.Stat(vars[k]); err != nil || !strings.HasPrefix(vars[k], state+"/") {
				t.Fatalf("dev env %s=%q is not a file in the state dir %s: %v", k, vars[k], state, err)
			}
		}
		if vars["MEDIATOR_ADDR"] != base {
			t.Fatalf("MEDIATOR_ADDR = %q, want %q", vars["MEDIATOR_ADDR"], base)
		}
		// The exported DATABASE_URL reaches the migrated dev database.
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, vars["DATABASE_URL"])
		if err != nil {
			t.Fatalf("connect with dev env DATABASE_URL: %v", err)
		}
		var version int64
		err = conn.QueryRow(ctx, "SELECT max(version_id) FROM goose_db_version").Scan(&version)
		conn.Close(ctx)
		if err != nil || version < 1 {
			t.Fatalf("dev database not migrated: version %d, %v", version, err)
		}
		// The exported Vault token works on the exported Vault.
		req, _ := http.NewRequest("GET", vars["VAULT_ADDR"]+"/v1/auth/token/lookup-self", nil)
		req.Header.Set("X-Vault-Token", vars["VAULT_TOKEN"])
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("dev env VAULT_TOKEN does not work: %v %v", err, resp)
		}
		resp.Body.Close()
		// The dev Vault has the bootstrap's mounts.
		req, _ = http.NewRequest("GET", vars["VAULT_ADDR"]+"/v1/sys/mounts/mediator-transit", nil)
		req.Header.Set("X-Vault-Token", vars["VAULT_TOKEN"])
		if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
			t.Fatalf("dev Vault lacks the transit mount: %v %v", err, resp)
		} else {
			resp.Body.Close()
		}
	})

	step(t, "the genesis names the dev pseudonym service, which answers the dev gateway", func(t *testing.T) {
		ctx := context.Background()
		tok, _, err := runCmd(t, nil, "dev", "token", "--state-dir", state, "--sub", "gw", "--roles", "depositor", "--ttl", "10m")
		if err != nil {
			t.Fatal(err)
		}
		cli, err := newClient(base, strings.TrimSpace(tok), nil)
		if err != nil {
			t.Fatal(err)
		}
		_, versions, err := cli.VerifiedChain(ctx, vars["MEDIATOR_ROSTER_GENESIS"])
		if err != nil {
			t.Fatal(err)
		}
		entry := versions[len(versions)-1].Pseudonym
		if entry == nil || entry.URL != vars["MEDIATOR_PSEUDONYM_URL"] {
			t.Fatalf("the roster's pseudonym service %+v, dev env's %q", entry, vars["MEDIATOR_PSEUDONYM_URL"])
		}
		gwToken, err := os.ReadFile(vars["MEDIATOR_PSEUDONYM_TOKEN_FILE"])
		if err != nil {
			t.Fatal(err)
		}
		pc, err := cli.PseudonymClient(ctx, vars["MEDIATOR_ROSTER_GENESIS"], strings.TrimSpace(string(gwToken)), -1)
		if err != nil {
			t.Fatal(err)
		}
		ps, err := pc.Pseudonyms(ctx, pseudonym.KindConversation, []string{"14155550100@s.whatsapp.net"})
		if err != nil || !pseudonym.Valid(ps[0]) {
			t.Fatalf("a pseudonym through the dev service, verified with the roster's key: %v %v", ps, err)
		}
		// Asked for a key it does not hold, the service refuses; and an
		// evaluation under a key other than the one the client trusts (a
		// service that ignores the key asked for) is refused by the client.
		rogue, err := pseudonym.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		viaHTTP := pseudonym.HTTPEvaluate(entry.URL, strings.TrimSpace(string(gwToken)), nil)
		if _, err := pseudonym.NewClient(rogue.Public(), viaHTTP, -1).Pseudonyms(ctx, pseudonym.KindConversation, []string{"x"}); err == nil ||
			!strings.Contains(err.Error(), "422 unknown_key") {
			t.Fatalf("asking the service for a key it does not hold: %v, want 422 unknown_key", err)
		}
		ignoring := func(ctx context.Context, req pseudonym.EvaluateRequest) (pseudonym.Evaluation, error) {
			req.KeyID = ""
			return viaHTTP(ctx, req)
		}
		if _, err := pseudonym.NewClient(rogue.Public(), ignoring, -1).Pseudonyms(ctx, pseudonym.KindConversation, []string{"x"}); !errors.Is(err, pseudonym.ErrUnverified) {
			t.Fatalf("an evaluation under the service's key, for a client trusting another: %v, want ErrUnverified", err)
		}
	})

	// Load it, then verify the log with nothing but the dev env.
	step(t, "loadgen's events verify with nothing but dev env", func(t *testing.T) {
		lg, stderr, err := runCmd(t, nil, "loadgen", "--url", base, "--state-dir", state, "--events", "3000", "--batch", "500", "--duration", "30s", "--proofs", "20", "--tiles", "5")
		if err != nil || !strings.Contains(lg, "events: 3000") || !strings.Contains(lg, "checkpoint lag") || !strings.Contains(lg, "full level-0 tiles at tree size 300") {
			t.Fatalf("loadgen: %v\n%s\n%s", err, lg, stderr)
		}
		var devEnv []string
		for k, v := range vars {
			devEnv = append(devEnv, k+"="+v)
		}
		// The genesis roster (its proposal, the signatures of the two dev
		// approvers and the dev officer, its adoption), then the events.
		if out, stderr, err := runCmd(t, devEnv, "audit", "verify"); err != nil || !strings.Contains(out, "ok: 3005 entries") {
			t.Fatalf("audit verify with the dev env: %v\n%s\n%s", err, out, stderr)
		}
	})

	// The checkpoint served carries the cosignatures of at least three of
	// the five custodians, each verifying with the witness key the
	// custodian itself shows, and the log's own signature.
	step(t, "the custodians cosign the served checkpoint", func(t *testing.T) {
		aud, _, _ := runCmd(t, nil, "dev", "token", "--state-dir", state, "--sub", "ann", "--roles", "auditor")
		_, cpText := getText(t, base+"/v1/audit/checkpoint", strings.TrimSpace(aud))
		logV, err := note.NewVerifier(vars["MEDIATOR_VERIFIER_KEY"])
		if err != nil {
			t.Fatal(err)
		}
		cosigned := 0
		for i := 1; i <= 5; i++ {
			var info map[string]any
			dir := filepath.Join(state, "custodians")
			b, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("custodian-%d.json", i)))
			var cfg map[string]any
			json.Unmarshal(b, &cfg)
			_, info, _ = call(t, "GET", "http://"+fmt.Sprint(cfg["listen"])+"/v1/custodian", "")
			wv, err := witness.NewVerifier(fmt.Sprint(info["witness_key"]))
			if err != nil {
				t.Fatalf("custodian-%d's witness key: %v", i, err)
			}
			if _, err := note.Open([]byte(cpText), note.VerifierList(logV, wv)); err == nil {
				if n, _ := note.Open([]byte(cpText), note.VerifierList(wv)); n != nil {
					cosigned++
				}
			}
		}
		if cosigned < 3 {
			t.Errorf("the served checkpoint carries %d custodians' cosignatures, want at least 3:\n%s", cosigned, cpText)
		}
	})

	step(t, "a second dev on the same state dir refuses to start", func(t *testing.T) {
		if _, stderr, err := runCmd(t, nil, "dev", "--addr", freeAddr(t), "--state-dir", state); err == nil || !strings.Contains(stderr, "another dev instance") {
			t.Fatalf("second dev instance: %v %s", err, stderr)
		}
	})

	step(t, "Ctrl-C stops everything dev started", func(t *testing.T) {
		if err := p.stop(t, syscall.SIGINT); err != nil {
			t.Fatalf("dev exit after Ctrl-C: %v\n%s", err, p.Output())
		}
		if _, err := http.Get(vars["VAULT_ADDR"] + "/v1/sys/health"); err == nil {
			t.Fatal("the dev Vault still answers after Ctrl-C")
		}
		if _, err := http.Get(base + "/healthz"); err == nil {
			t.Fatal("the service still answers after Ctrl-C")
		}
		if pids := processesWith("-dev-listen-address=" + strings.TrimPrefix(vars["VAULT_ADDR"], "http://")); len(pids) > 0 {
			t.Fatalf("a vault process is left running: %v", pids)
		}
		if _, _, err := runCmd(t, nil, "dev", "env", "--state-dir", state); err == nil {
			t.Fatal("dev env still answers after the instance stopped")
		}
	})

	// A new state directory on the same database: the dev approvers keep
	// their ids with the new directory's keys, in a new genesis roster
	// that this instance pins, and those keys sign. The last chapter, so
	// the instance it starts may end with it.
	step(t, "a new state directory keeps the approvers with new keys", func(t *testing.T) {
		state2, addr2 := t.TempDir(), freeAddr(t)
		p2 := start(t, []string{"DATABASE_URL=" + dsn}, "dev", "--addr", addr2, "--state-dir", state2)
		defer p2.stop(t, syscall.SIGINT) // a kill would leave its Vault's directory behind
		waitStatus(t, p2, "http://"+addr2+"/readyz", 200, 3*time.Minute)
		token := func(sub, role string) string {
			tok, stderr, err := runCmd(t, nil, "dev", "token", "--state-dir", state2, "--sub", sub, "--roles", role)
			if err != nil {
				t.Fatalf("dev token: %v %s", err, stderr)
			}
			return strings.TrimSpace(tok)
		}
		dir := t.TempDir()
		runCmd(t, nil, "keygen", "--recipient", "--out", filepath.Join(dir, "olga.key"))
		now := time.Now().UTC()
		// The instance writes its env file once it has founded the
		// roster, which may be just after it answers ready.
		var envOut, stderr string
		var err error
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			if envOut, stderr, err = runCmd(t, nil, "dev", "env", "--state-dir", state2); err == nil || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			t.Fatalf("dev env: %v %s", err, stderr)
		}
		exports := parseExports(t, envOut)
		genesis := exports["MEDIATOR_ROSTER_GENESIS"]
		// The officer names the conversation by its real id; the CLI
		// sends its pseudonym, computed through the dev pseudonym service.
		out, stderr, err := runCmd(t, []string{"MEDIATOR_URL=http://" + addr2, "MEDIATOR_TOKEN=" + token("dev-officer", "officer"),
			"MEDIATOR_ROSTER_GENESIS=" + genesis, "MEDIATOR_PSEUDONYM_TOKEN_FILE=" + exports["MEDIATOR_PSEUDONYM_TOKEN_FILE"]}, "request", "create",
			"--case", "c-1", "--legal-basis", "court_order", "--warrant", "W-1", "--jurisdiction", "US", "--justification", "See the file.",
			"--conversation", "conv-a", "--from", now.Add(-time.Hour).Format(time.RFC3339), "--to", now.Add(time.Hour).Format(time.RFC3339),
			"--recipient", filepath.Join(dir, "olga.key.pub"), "--key", exports["MEDIATOR_DEV_OFFICER_KEY"])
		var created struct{ ID string }
		if err != nil || json.Unmarshal([]byte(out), &created) != nil {
			t.Fatalf("request create: %v %s %s", err, out, stderr)
		}
		if !strings.Contains(stderr, "conversation   conv-a is ps1_") {
			t.Fatalf("request create does not show the officer the pseudonym it signed: %s", stderr)
		}
		if _, stderr, err := runCmd(t, []string{"MEDIATOR_URL=http://" + addr2, "MEDIATOR_TOKEN=" + token("dev-legal", "approver"), "MEDIATOR_ROSTER_GENESIS=" + genesis},
			"request", "approve", created.ID, "--key", exports["MEDIATOR_DEV_LEGAL_KEY"], "--yes"); err != nil {
			t.Fatalf("the new state directory's dev-legal key does not sign: %v %s", err, stderr)
		}
	})
}

func parseExports(t *testing.T, s string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		rest, ok := strings.CutPrefix(line, "export ")
		if !ok {
			t.Fatalf("not an export line: %q", line)
		}
		k, v, _ := strings.Cut(rest, "=")
		out[k] = strings.Trim(v, "'")
	}
	return out
}

// processesWith returns the pids whose command line contains arg.
func processesWith(arg string) []string {
	var pids []string
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range cmdlines {
		b, err := os.ReadFile(f)
		if err == nil && strings.Contains(strings.ReplaceAll(string(b), "\x00", " "), arg) {
			pids = append(pids, filepath.Base(filepath.Dir(f)))
		}
	}
	return pids
}

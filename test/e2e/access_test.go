package e2e

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mediatorhq/mediator/approval"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// TestLawfulAccessStory: keys are deposited for three conversations; an
// officer files a request for two of them; one approval is not enough; the
// officer's own approval and a forged signature are refused; a second
// approver from the other role makes the release allowed; the opened keys
// are exactly the deposited keys in scope; a second release is refused;
// and the log proves every step.
func TestLawfulAccessStory(t *testing.T) {
	in := startServe(t, serveOpts{extraEnv: []string{"MEDIATOR_LOG_LEVEL=debug"}})
	waitStatus(t, in.proc, in.base+"/readyz", 200, 60*time.Second)
	token := func(sub string, roles ...string) string {
		tok, err := in.issuer.Issue(sub, roles, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	admin, gw, aud := token("ada", "admin"), token("gateway-3", "depositor"), token("aud", "auditor")
	olga := token("olga", "officer", "approver") // the requesting officer, also an approver
	lena, sam := token("lena", "approver"), token("sam", "approver")
	dir := t.TempDir()
	cli := func(tok string, args ...string) (string, string, error) {
		return runCmd(t, []string{"MEDIATOR_URL=" + in.base, "MEDIATOR_TOKEN=" + tok}, args...)
	}
	var responses strings.Builder // every API answer outside the sealed keys, for the canary
	record := func(v any) { fmt.Fprintln(&responses, v) }

	// Keys: approvers make signing keys, the officer a recipient key pair.
	pubs := map[string]string{}
	for _, who := range []string{"lena", "sam", "olga"} {
		out, stderr, err := runCmd(t, nil, "keygen", "--approver", "--out", filepath.Join(dir, who+".key"))
		if err != nil {
			t.Fatalf("keygen %s: %v %s", who, err, stderr)
		}
		pubs[who] = strings.TrimSpace(out)
	}
	if _, stderr, err := runCmd(t, nil, "keygen", "--recipient", "--out", filepath.Join(dir, "olga-recipient.key")); err != nil {
		t.Fatalf("keygen --recipient: %v %s", err, stderr)
	}

	// The administrator registers the approvers.
	for who, roles := range map[string][]string{"lena": {"legal"}, "sam": {"security"}, "olga": {"security"}} {
		b, _ := json.Marshal(map[string]any{"id": who, "roles": roles, "public_key": pubs[who]})
		code, body := post(t, in.base+"/v1/approvers", "application/json", admin, b)
		if code != 201 || body["active"] != true {
			t.Fatalf("register %s: %d %v", who, code, body)
		}
	}
	if code, _ := post(t, in.base+"/v1/approvers", "application/json", olga, []byte(`{}`)); code != 403 {
		t.Fatalf("an officer registered an approver: %d", code)
	}

	// A gateway escrows keys of three conversations.
	deposited := map[string][]byte{}
	for _, ck := range [][2]string{{"conv-a", "epoch-1"}, {"conv-a", "epoch-2"}, {"conv-b", "epoch-1"}, {"conv-c", "epoch-1"}} {
		key := make([]byte, 32)
		rand.Read(key)
		deposited[ck[0]+"/"+ck[1]] = key
		b, _ := json.Marshal(map[string]string{"conversation_id": ck[0], "key_id": ck[1], "key": base64.StdEncoding.EncodeToString(key)})
		if code, body := post(t, in.base+"/v1/escrow/keys", "application/json", gw, b); code != 201 {
			t.Fatalf("deposit %v: %d %v", ck, code, body)
		}
	}

	// The officer files a request for conv-a and conv-b.
	now := time.Now().UTC()
	out, stderr, err := cli(olga, "request", "create", "--case", "case-2026-117", "--legal-basis", "court_order",
		"--warrant", "SDNY 26-MJ-0117", "--jurisdiction", "US", "--justification", "Review ordered; see the case file, exhibit 4.",
		"--conversation", "conv-a,conv-b", "--from", now.Add(-time.Hour).Format(time.RFC3339), "--to", now.Add(time.Hour).Format(time.RFC3339),
		"--recipient", filepath.Join(dir, "olga-recipient.key.pub"))
	if err != nil {
		t.Fatalf("request create: %v\n%s", err, stderr)
	}
	var created map[string]any
	if err := json.Unmarshal([]byte(out), &created); err != nil || created["status"] != "pending" || !strings.HasPrefix(fmt.Sprint(created["digest"]), "sha256:") {
		t.Fatalf("request create: %v %s", err, out)
	}
	id := created["id"].(string)
	record(out)

	// The digest is SHA-256 of the canonical request the API shows.
	code, shown, _ := call(t, "GET", in.base+"/v1/access-requests/"+id, lena)
	canonical, _ := base64.StdEncoding.DecodeString(fmt.Sprint(shown["canonical"]))
	if code != 200 || approval.Digest(canonical) != created["digest"] {
		t.Fatalf("show: %d %v", code, shown)
	}
	record(shown)

	// Legal approves; one approval is not enough.
	if _, stderr, err := cli(lena, "request", "approve", id, "--key", filepath.Join(dir, "lena.key")); err != nil {
		t.Fatalf("lena approves: %v\n%s", err, stderr)
	}
	releaseOut := filepath.Join(dir, "released.ndjson")
	_, stderr, err = cli(olga, "request", "release", id, "--key", filepath.Join(dir, "olga-recipient.key"), "--out", releaseOut)
	if err == nil || !strings.Contains(stderr, "403 policy_denied") || !strings.Contains(stderr, "no approval from an approver with the security role") {
		t.Fatalf("release with one approval: %v\n%s", err, stderr)
	}
	if _, err := os.Stat(releaseOut); !os.IsNotExist(err) {
		t.Fatal("a denied release left its output file behind")
	}

	// The officer approves her own request: recorded, refused.
	_, stderr, err = cli(olga, "request", "approve", id, "--key", filepath.Join(dir, "olga.key"))
	if err == nil || !strings.Contains(stderr, "422 self_approval") {
		t.Fatalf("self-approval: %v\n%s", err, stderr)
	}
	// Forged: sam's vote signed with lena's key, and sam's key over another digest.
	lenaKeyFile, _ := os.ReadFile(filepath.Join(dir, "lena.key"))
	lenaKey, _ := approval.ParseSigningKey(lenaKeyFile)
	samKeyFile, _ := os.ReadFile(filepath.Join(dir, "sam.key"))
	samKey, _ := approval.ParseSigningKey(samKeyFile)
	for name, sig := range map[string][]byte{
		"another's key":  ed25519.Sign(lenaKey, approval.Message(id, created["digest"].(string), "approve", "sam")),
		"another digest": ed25519.Sign(samKey, approval.Message(id, approval.Digest([]byte("forged")), "approve", "sam")),
	} {
		b, _ := json.Marshal(map[string]any{"decision": "approve", "signature": sig})
		code, body := post(t, in.base+"/v1/access-requests/"+id+"/approvals", "application/json", sam, b)
		if code != 422 || errorCode(body) != "bad_signature" {
			t.Fatalf("forged approval (%s): %d %v", name, code, body)
		}
		record(body)
	}
	// The auditor may read but not approve.
	if code, _ := post(t, in.base+"/v1/access-requests/"+id+"/approvals", "application/json", aud, []byte(`{"decision":"approve","signature":""}`)); code != 403 {
		t.Fatalf("auditor approval: %d", code)
	}

	// Security approves: dual control is met, the officer releases.
	if _, stderr, err := cli(sam, "request", "approve", id, "--key", filepath.Join(dir, "sam.key")); err != nil {
		t.Fatalf("sam approves: %v\n%s", err, stderr)
	}
	if code, body := post(t, in.base+"/v1/access-requests/"+id+"/release", "application/json", token("otto", "officer"), []byte(`{}`)); code != 403 || errorCode(body) != "not_requester" {
		t.Fatalf("release by another officer: %d %v", code, body)
	}
	out, stderr, err = cli(olga, "request", "release", id, "--key", filepath.Join(dir, "olga-recipient.key"), "--out", releaseOut)
	if err != nil || !strings.Contains(out, "released 3 keys") {
		t.Fatalf("release: %v\n%s\n%s", err, out, stderr)
	}
	record(out)
	st, err := os.Stat(releaseOut)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("released keys file: %v %v", st, err)
	}
	opened := map[string][]byte{}
	f, _ := os.Open(releaseOut)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var k struct {
			ConversationID string `json:"conversation_id"`
			KeyID          string `json:"key_id"`
			Key            []byte `json:"key"`
		}
		if err := json.Unmarshal(sc.Bytes(), &k); err != nil {
			t.Fatal(err)
		}
		opened[k.ConversationID+"/"+k.KeyID] = k.Key
	}
	f.Close()
	for _, want := range []string{"conv-a/epoch-1", "conv-a/epoch-2", "conv-b/epoch-1"} {
		if !bytes.Equal(opened[want], deposited[want]) {
			t.Errorf("opened key %s differs from the deposited one", want)
		}
	}
	for name, k := range opened {
		if bytes.Equal(k, deposited["conv-c/epoch-1"]) || strings.HasPrefix(name, "conv-c") {
			t.Fatal("the key of a conversation outside the scope was released")
		}
	}

	// Final: a second release is refused.
	code, body := post(t, in.base+"/v1/access-requests/"+id+"/release", "application/json", olga, []byte(`{}`))
	if code != 409 || errorCode(body) != "request_final" {
		t.Fatalf("second release: %d %v", code, body)
	}
	record(body)
	code, listed, _ := call(t, "GET", in.base+"/v1/access-requests?status=released", aud)
	if code != 200 || len(listed["requests"].([]any)) != 1 {
		t.Fatalf("released list: %d %v", code, listed)
	}
	record(listed)

	// The log holds the request, the approvals, both decisions and the
	// release, and each entry's inclusion proof verifies against a signed
	// checkpoint.
	seqs := map[string][]int64{}
	for _, kind := range []string{"access.request", "access.approval", "access.decision", "access.release"} {
		_, page, _ := call(t, "GET", in.base+"/v1/audit/entries?kind="+kind, aud)
		records, _ := page["entries"].([]any)
		for _, r := range records {
			m := r.(map[string]any)
			seqs[kind] = append(seqs[kind], int64(m["seq"].(float64)))
		}
		record(page)
	}
	if len(seqs["access.request"]) != 1 || len(seqs["access.approval"]) != 3 || len(seqs["access.decision"]) != 2 || len(seqs["access.release"]) != 1 {
		t.Fatalf("log entries by kind: %v", seqs)
	}
	var last int64
	for _, ss := range seqs {
		for _, s := range ss {
			last = max(last, s)
		}
	}
	size, root := signedCheckpoint(t, in, aud, last+1)
	for kind, ss := range seqs {
		for _, seq := range ss {
			_, entry, _ := call(t, "GET", fmt.Sprintf("%s/v1/audit/entries/%d", in.base, seq), aud)
			leaf, _ := base64.StdEncoding.DecodeString(entry["leaf"].(string))
			_, proof, _ := call(t, "GET", fmt.Sprintf("%s/v1/audit/proof/inclusion?seq=%d&tree_size=%d", in.base, seq, size), aud)
			if err := tlog.CheckRecord(decodeHashes(t, proof["hashes"]), size, root, seq, tlog.RecordHash(leaf)); err != nil {
				t.Fatalf("%s at %d: inclusion proof: %v", kind, seq, err)
			}
			record(entry)
		}
	}

	// Nothing of the keys outside the sealed answer: not in logs, the
	// database, the metrics or any other answer.
	dump := dumpTables(t, in.dsn)
	metrics := rawGet(t, in.base+"/metrics")
	for name, key := range deposited {
		for _, form := range []string{base64.StdEncoding.EncodeToString(key), base64.RawURLEncoding.EncodeToString(key), hex.EncodeToString(key)} {
			for where, text := range map[string]string{"logs": in.proc.Output(), "database": dump, "metrics": metrics, "answers": responses.String()} {
				if strings.Contains(text, form) {
					t.Errorf("key %s found in %s", name, where)
				}
			}
		}
	}
	for _, want := range []string{
		`mediator_access_requests_by_status{status="released"} 1`,
		`mediator_policy_decisions_total{result="allow"} 1`,
		`mediator_policy_decisions_total{result="deny"} 1`,
		`mediator_access_approvals_total{result="self_approval"} 1`,
		`mediator_access_approvals_total{result="bad_signature"} 2`,
		`mediator_access_release_seconds_count 1`,
		`mediator_policy_decision_seconds_count 2`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	// The whole log still verifies.
	op := []string{"DATABASE_URL=" + in.dsn, "VAULT_ADDR=" + env.Vault.Addr, "VAULT_TOKEN=" + env.Vault.Token, "MEDIATOR_LOG_ORIGIN=mediator/audit"}
	if out, stderr, err := runCmd(t, op, "audit", "verify"); err != nil {
		t.Fatalf("audit verify: %v %s %s", err, out, stderr)
	}
}

// signedCheckpoint waits for a checkpoint covering at least size entries,
// verifies its signature and returns its size and root.
func signedCheckpoint(t *testing.T, in *instance, token string, size int64) (int64, tlog.Hash) {
	t.Helper()
	_, vkey := getText(t, in.base+"/v1/audit/verifier-key", token)
	verifier, err := note.NewVerifier(strings.TrimSpace(vkey))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, text := getText(t, in.base+"/v1/audit/checkpoint", token)
		if n, err := note.Open([]byte(text), note.VerifierList(verifier)); err == nil {
			lines := strings.Split(n.Text, "\n")
			var got int64
			fmt.Sscan(lines[1], &got)
			if got >= size {
				raw, _ := base64.StdEncoding.DecodeString(lines[2])
				var root tlog.Hash
				copy(root[:], raw)
				return got, root
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no signed checkpoint covering %d entries", size)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestPolicyReloadsOnSIGHUP: an operator edits the policy directory and
// sends SIGHUP; a broken edit is refused and the working policy keeps
// deciding; a good edit takes effect without a restart.
func TestPolicyReloadsOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"authz.rego", "release.rego", "data.json"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "policy", name))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, name), b, 0o644)
	}
	in := startServe(t, serveOpts{extraEnv: []string{"MEDIATOR_POLICY_DIR=" + dir}})
	waitStatus(t, in.proc, in.base+"/readyz", 200, 60*time.Second)
	aud, _ := in.issuer.Issue("aud", []string{"auditor"}, time.Hour)
	infoLine := func() string {
		for _, l := range strings.Split(rawGet(t, in.base+"/metrics"), "\n") {
			if strings.HasPrefix(l, "mediator_policy_info{") {
				return l
			}
		}
		return ""
	}
	before := infoLine()
	if before == "" {
		t.Fatal("no mediator_policy_info")
	}
	waitMetric := func(want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(rawGet(t, in.base+"/metrics"), want) {
			if time.Now().After(deadline) {
				t.Fatalf("metrics never showed %s; output:\n%s", want, in.proc.Output())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	os.WriteFile(filepath.Join(dir, "authz.rego"), []byte("package mediator.authz\nallow if {"), 0o644)
	in.proc.cmd.Process.Signal(syscall.SIGHUP)
	waitMetric(`mediator_policy_reloads_total{result="failed"}`)
	if code, _, _ := call(t, "GET", in.base+"/v1/audit/checkpoint", aud); code != 200 && code != 404 {
		t.Fatalf("the working policy stopped deciding after a broken edit: %d", code)
	}
	if infoLine() != before {
		t.Fatal("a broken policy replaced the working one")
	}

	// A good edit: auditors may no longer read the log.
	authz, _ := os.ReadFile(filepath.Join("..", "..", "policy", "authz.rego"))
	os.WriteFile(filepath.Join(dir, "authz.rego"), bytes.Replace(authz, []byte(`audit_readers := {"auditor", "officer"}`), []byte(`audit_readers := {"officer"}`), 1), 0o644)
	in.proc.cmd.Process.Signal(syscall.SIGHUP)
	waitMetric(`mediator_policy_reloads_total{result="ok"}`)
	if infoLine() == before {
		t.Fatal("the revision did not change")
	}
	if code, _, _ := call(t, "GET", in.base+"/v1/audit/checkpoint", aud); code != 403 {
		t.Fatalf("the reloaded policy is not in force: %d", code)
	}
}

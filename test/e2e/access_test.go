package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/client"
	"github.com/mediatorhq/mediator/dev"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/seal"
	"github.com/mediatorhq/mediator/shares"
	"github.com/mediatorhq/mediator/wire"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// TestLawfulAccessStory: keys are split and sealed on the gateway's side
// and escrowed with five custodians (processes of their own); an officer
// files a request for two conversations; approvers see every field of it
// before they sign; one approval is not enough; the officer's own approval
// and forged signatures are refused; a second approver from the other role
// makes the release allowed; each custodian checks the release itself and
// seals its shares to the officer; the officer's CLI combines them into
// exactly the deposited keys in scope; a second release is refused; the
// log proves every step; and no key, plaintext share or custodian private
// key is anywhere the mediator keeps or says anything.
func TestLawfulAccessStory(t *testing.T) {
	dir := t.TempDir()
	approverFiles, _, rosterApprovers := approverKeys(t, dir, map[string]string{"lena": "legal", "sam": "security", "olga": roster.RoleOfficer})
	cs := startCustodians(t, nil, dev.CustodianOptions{Approvers: rosterApprovers})
	in := startServe(t, serveOpts{custodians: cs, extraEnv: []string{"MEDIATOR_LOG_LEVEL=debug"}})
	in.waitReady(t, 60*time.Second)
	token := func(t *testing.T, sub string, roles ...string) string {
		tok, err := in.issuer.Issue(sub, roles, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	admin, gw, aud := token(t, "ada", "admin"), token(t, "gateway-3", "depositor"), token(t, "aud", "auditor")
	olga := token(t, "olga", "officer") // the requesting officer, in the roster with her signing key
	lena, sam := token(t, "lena", "approver"), token(t, "sam", "approver")
	genesisDigest, _ := in.genesis.Digest()
	cli := func(t *testing.T, tok string, args ...string) (string, string, error) {
		return runCmd(t, []string{"MEDIATOR_URL=" + in.base, "MEDIATOR_TOKEN=" + tok, "MEDIATOR_ROSTER_GENESIS=" + genesisDigest}, args...)
	}
	var responses strings.Builder // every API answer, for the canary
	record := func(v any) { fmt.Fprintln(&responses, v) }

	// What the chapters learn and later ones use.
	var (
		deposited   = map[string][]byte{}
		created     map[string]any // the officer's request as filed
		id          string         // its id
		recipient   seal.PublicKey // the officer's recipient key
		releaseOut  = filepath.Join(dir, "released.ndjson")
		plainShares [][]byte
		metrics     string
	)

	// The officer makes a recipient key pair.
	step(t, "the officer makes a recipient key pair", func(t *testing.T) {
		if _, stderr, err := runCmd(t, nil, "keygen", "--recipient", "--out", filepath.Join(dir, "olga-recipient.key")); err != nil {
			t.Fatalf("keygen --recipient: %v %s", err, stderr)
		}
	})

	// The team founds the roster: the administrator proposes the genesis
	// every custodian pins, and each approver checks it and signs it with
	// their own key (proof of possession); an admin alone adopts nothing,
	// and the retired registry says where to go.
	step(t, "the team founds the roster", func(t *testing.T) {
		draft, _ := json.Marshal(wire.RosterDraft{Approvers: in.genesis.Approvers, Custodians: in.genesis.Custodians,
			Threshold: in.genesis.Threshold, Rule: in.genesis.Rule})
		draftFile := filepath.Join(dir, "genesis.json")
		os.WriteFile(draftFile, draft, 0o644)
		if out, _, err := runCmd(t, nil, "roster", "genesis", "--file", draftFile); err != nil || strings.TrimSpace(out) != genesisDigest {
			t.Fatalf("roster genesis: %v %q, want %s", err, out, genesisDigest)
		}
		out, stderr, err := cli(t, admin, "roster", "propose", "--file", draftFile, "--yes")
		if err != nil || strings.TrimSpace(out) != genesisDigest {
			t.Fatalf("roster propose: %v %s %s", err, out, stderr)
		}
		if code, body := post(t, in.base+"/v1/approvers", "application/json", admin, []byte(`{"id":"eve","roles":["legal"],"public_key":""}`)); code != 410 ||
			errorCode(body) != "roster_required" || !strings.Contains(fmt.Sprint(body), "mediator roster propose") {
			t.Fatalf("the retired registry: %d %v", code, body)
		}
		for _, who := range []string{"lena", "sam", "olga"} {
			if out, stderr, err := cli(t, token(t, who, "approver"), "roster", "sign", genesisDigest, "--key", approverFiles[who], "--yes"); err != nil {
				t.Fatalf("roster sign by %s: %v %s %s", who, err, out, stderr)
			}
		}
		if out, stderr, err := cli(t, aud, "roster", "verify"); err != nil || !strings.Contains(out, "ok: roster version 1") {
			t.Fatalf("roster verify: %v %s %s", err, out, stderr)
		}
	})

	// A gateway escrows keys of three conversations: with the CLI, and
	// with the client package as a gateway links it. The key never leaves
	// the gateway; the mediator sees a commitment and sealed shares.
	step(t, "a gateway escrows keys of three conversations", func(t *testing.T) {
		gateway, err := newClient(in.base, gw, http.DefaultClient)
		if err != nil {
			t.Fatal(err)
		}
		for i, ck := range [][2]string{{conv("conv-a"), "epoch-1"}, {conv("conv-a"), "epoch-2"}, {conv("conv-b"), "epoch-1"}, {conv("conv-c"), "epoch-1"}} {
			key := make([]byte, 32)
			rand.Read(key)
			deposited[ck[0]+"/"+ck[1]] = key
			if i == 0 {
				keyFile := filepath.Join(dir, "key")
				os.WriteFile(keyFile, key, 0o600)
				out, stderr, err := cli(t, gw, "escrow", "deposit", "--conversation", ck[0], "--key-id", ck[1], "--key-file", keyFile)
				if err != nil || !strings.Contains(out, "escrowed "+conv("conv-a")+"/epoch-1") {
					t.Fatalf("escrow deposit: %v %s %s", err, out, stderr)
				}
				os.Remove(keyFile)
				continue
			}
			d, err := gateway.Deposit(context.Background(), cs.digest, ck[0], ck[1], key)
			if err != nil || !d.Created || len(d.Receipts) != 5 {
				t.Fatalf("deposit %v: %+v %v", ck, d, err)
			}
			record(d)
		}
	})

	// The old body, with the plaintext key, is refused by name and kept
	// nowhere.
	step(t, "the old body with the plaintext key is refused", func(t *testing.T) {
		old, _ := json.Marshal(map[string]string{"conversation_id": conv("conv-z"), "key_id": "k", "key": base64.StdEncoding.EncodeToString(deposited[conv("conv-c")+"/epoch-1"])})
		if code, body := post(t, in.base+"/v1/escrow/keys", "application/json", gw, old); code != 422 || errorCode(body) != "plaintext_key_refused" {
			t.Fatalf("the plaintext body: %d %v", code, body)
		}
	})

	// The officer files a request for conv-a and conv-b.
	step(t, "officer files a request", func(t *testing.T) {
		now := time.Now().UTC()
		out, stderr, err := cli(t, olga, "request", "create", "--case", "case-2026-117", "--legal-basis", "court_order",
			"--warrant", "SDNY 26-MJ-0117", "--jurisdiction", "US", "--justification", "Review ordered; see the case file, exhibit 4.",
			"--conversation", conv("conv-a")+","+conv("conv-b"), "--from", now.Add(-time.Hour).Format(time.RFC3339), "--to", now.Add(time.Hour).Format(time.RFC3339),
			"--recipient", filepath.Join(dir, "olga-recipient.key.pub"), "--key", approverFiles["olga"])
		if err != nil || !strings.Contains(stderr, "the mediator stored exactly what you signed") {
			t.Fatalf("request create: %v\n%s", err, stderr)
		}
		if err := json.Unmarshal([]byte(out), &created); err != nil || created["status"] != "pending" || !strings.HasPrefix(fmt.Sprint(created["digest"]), "sha256:") {
			t.Fatalf("request create: %v %s", err, out)
		}
		id = created["id"].(string)
		record(out)
	})

	// The digest is SHA-256 of the canonical request the API shows.
	step(t, "the API shows the canonical request behind the digest", func(t *testing.T) {
		code, shown, _ := call(t, "GET", in.base+"/v1/access-requests/"+id, lena)
		canonical, _ := base64.StdEncoding.DecodeString(fmt.Sprint(shown["canonical"]))
		if code != 200 || approval.Digest(canonical) != created["digest"] {
			t.Fatalf("show: %d %v", code, shown)
		}
		record(shown)
		pubFile, _ := os.ReadFile(filepath.Join(dir, "olga-recipient.key.pub"))
		json.Unmarshal(pubFile, &recipient)
	})

	// Legal approves, seeing every field it signs; one approval is not
	// enough.
	step(t, "legal approves seeing every field but one approval is not enough", func(t *testing.T) {
		// Without a terminal and without --yes nothing is signed.
		_, stderr, err := cli(t, lena, "request", "approve", id, "--key", approverFiles["lena"])
		if err == nil || !strings.Contains(stderr, "not confirmed") {
			t.Fatalf("an approval nobody confirmed: %v\n%s", err, stderr)
		}
		if _, stderr, err := cli(t, lena, "request", "approve", id, "--key", approverFiles["lena"], "--yes", "--expect-digest", approval.Digest([]byte("another"))); err == nil ||
			!strings.Contains(stderr, "not the sha256:") {
			t.Fatalf("an approval expecting another digest: %v\n%s", err, stderr)
		}
		_, stderr, err = cli(t, lena, "request", "approve", id, "--key", approverFiles["lena"], "--yes", "--expect-digest", created["digest"].(string))
		if err != nil {
			t.Fatalf("lena approves: %v\n%s", err, stderr)
		}
		for _, want := range []string{conv("conv-a") + ", " + conv("conv-b"), "the officer computed them from the real ids", recipient.Fingerprint(), "court_order (US)", "SDNY 26-MJ-0117", "exhibit 4", created["digest"].(string),
			"filed and signed by officer olga (officer)"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("the approver was not shown %q:\n%s", want, stderr)
			}
		}
		_, stderr, err = cli(t, olga, "request", "release", id, "--key", filepath.Join(dir, "olga-recipient.key"), "--out", releaseOut)
		if err == nil || !strings.Contains(stderr, "403 policy_denied") || !strings.Contains(stderr, "no approval from an approver with the security role") {
			t.Fatalf("release with one approval: %v\n%s", err, stderr)
		}
		if _, err := os.Stat(releaseOut); !os.IsNotExist(err) {
			t.Fatal("a denied release left its output file behind")
		}
	})

	// The officer approves her own request: she is no approver, so her
	// tool refuses to sign, and so does the mediator.
	step(t, "the officer approving her own request is refused", func(t *testing.T) {
		_, stderr, err := cli(t, token(t, "olga", "approver"), "request", "approve", id, "--key", approverFiles["olga"], "--yes")
		if err == nil || !strings.Contains(stderr, "not an approver") {
			t.Fatalf("self-approval: %v\n%s", err, stderr)
		}
		olgaKeyFile, _ := os.ReadFile(approverFiles["olga"])
		olgaKey, _ := approval.ParseSigningKey(olgaKeyFile)
		b, _ := json.Marshal(map[string]any{"decision": "approve", "signature": ed25519.Sign(olgaKey, approval.Message(id, created["digest"].(string), "approve", "olga"))})
		if code, body := post(t, in.base+"/v1/access-requests/"+id+"/approvals", "application/json", token(t, "olga", "approver"), b); code != 403 || errorCode(body) != "not_an_approver" {
			t.Fatalf("the officer's own approval: %d %v", code, body)
		}
	})

	// Forged: sam's vote signed with lena's key, and sam's key over another
	// digest.
	step(t, "forged approvals are refused", func(t *testing.T) {
		lenaKeyFile, _ := os.ReadFile(approverFiles["lena"])
		lenaKey, _ := approval.ParseSigningKey(lenaKeyFile)
		samKeyFile, _ := os.ReadFile(approverFiles["sam"])
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
	})

	// The auditor may read but not approve.
	step(t, "the auditor may read but not approve", func(t *testing.T) {
		if code, _ := post(t, in.base+"/v1/access-requests/"+id+"/approvals", "application/json", aud, []byte(`{"decision":"approve","signature":""}`)); code != 403 {
			t.Fatalf("auditor approval: %d", code)
		}
	})

	// Security approves: dual control is met, the officer releases; each
	// custodian checks the release and seals its shares to her, and her CLI
	// combines them into exactly the deposited keys in scope.
	step(t, "security approves and the officer releases the keys in scope", func(t *testing.T) {
		if _, stderr, err := cli(t, sam, "request", "approve", id, "--key", approverFiles["sam"], "--yes"); err != nil {
			t.Fatalf("sam approves: %v\n%s", err, stderr)
		}
		if code, body := post(t, in.base+"/v1/access-requests/"+id+"/release", "application/json", token(t, "otto", "officer"), []byte(`{}`)); code != 403 || errorCode(body) != "not_requester" {
			t.Fatalf("release by another officer: %d %v", code, body)
		}
		out, stderr, err := cli(t, olga, "request", "release", id, "--key", filepath.Join(dir, "olga-recipient.key"), "--out", releaseOut)
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
			var k client.OpenedKey
			if err := json.Unmarshal(sc.Bytes(), &k); err != nil {
				t.Fatal(err)
			}
			opened[k.ConversationID+"/"+k.KeyID] = k.Key
		}
		f.Close()
		for _, want := range []string{conv("conv-a") + "/epoch-1", conv("conv-a") + "/epoch-2", conv("conv-b") + "/epoch-1"} {
			if !bytes.Equal(opened[want], deposited[want]) {
				t.Errorf("opened key %s differs from the deposited one", want)
			}
		}
		for name, k := range opened {
			if bytes.Equal(k, deposited[conv("conv-c")+"/epoch-1"]) || strings.HasPrefix(name, conv("conv-c")) {
				t.Fatal("the key of a conversation outside the scope was released")
			}
		}
	})

	// Final: a second release is refused; the shares can be fetched again,
	// and the plaintext shares are what the officer alone can open.
	step(t, "a second release is refused", func(t *testing.T) {
		code, body := post(t, in.base+"/v1/access-requests/"+id+"/release", "application/json", olga, []byte(`{}`))
		if code != 409 || errorCode(body) != "request_final" {
			t.Fatalf("second release: %d %v", code, body)
		}
		record(body)
		officer, err := newClient(in.base, olga, http.DefaultClient)
		if err != nil {
			t.Fatal(err)
		}
		again, err := officer.Released(context.Background(), id)
		if err != nil || len(again.Keys) != 3 {
			t.Fatalf("fetch the release again: %+v %v", again, err)
		}
		recipientFile, _ := os.ReadFile(filepath.Join(dir, "olga-recipient.key"))
		priv, _ := seal.ParseKey(recipientFile)
		for _, k := range again.Keys {
			for _, sh := range k.Shares {
				p, err := shares.OpenReleased(priv, id, k.ConversationID, k.KeyID, sh.Custodian, sh.Index, sh.Sealed)
				if err != nil {
					t.Fatal(err)
				}
				plainShares = append(plainShares, p)
			}
		}
		code, listed, _ := call(t, "GET", in.base+"/v1/access-requests?status=released", aud)
		if code != 200 || len(listed["requests"].([]any)) != 1 {
			t.Fatalf("released list: %d %v", code, listed)
		}
		record(listed)
	})

	// The log holds the deposits, the request, the approvals, both
	// decisions, each custodian's release and the release, and each
	// entry's inclusion proof verifies against a signed checkpoint.
	step(t, "the log proves every step", func(t *testing.T) {
		seqs := map[string][]int64{}
		for _, kind := range []string{"escrow.deposit", "access.request", "access.approval", "access.decision", "access.custodian_release", "access.release"} {
			_, page, _ := call(t, "GET", in.base+"/v1/audit/entries?kind="+kind, aud)
			records, _ := page["entries"].([]any)
			for _, r := range records {
				m := r.(map[string]any)
				seqs[kind] = append(seqs[kind], int64(m["seq"].(float64)))
				rec := m["record"].(map[string]any)
				if kind == "access.release" && (rec["request_digest"] != created["digest"] || rec["recipient_key"] != recipient.Fingerprint()) {
					t.Fatalf("the release entry does not name the request digest and recipient key: %v", rec)
				}
			}
			record(page)
		}
		if len(seqs["escrow.deposit"]) != 4 || len(seqs["access.request"]) != 1 || len(seqs["access.approval"]) != 2 ||
			len(seqs["access.decision"]) != 2 || len(seqs["access.custodian_release"]) != 5 || len(seqs["access.release"]) != 1 {
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
	})

	// The canary: no key, plaintext share or custodian private key in the
	// mediator's logs, database, metrics, answers or anywhere in Vault's KV.
	step(t, "no key or share is anywhere the mediator keeps or says anything", func(t *testing.T) {
		secrets := map[string][]byte{}
		for name, key := range deposited {
			secrets["key "+name] = key
		}
		for i, p := range plainShares {
			secrets[fmt.Sprintf("share %d", i)] = p
		}
		for i, c := range cs.cs {
			secrets["private key of "+c.Name] = custodianPrivateKey(t, c)
			_ = i
		}
		places := map[string]string{"logs": in.proc.Output(), "database": dumpTables(t, in.dsn), "metrics": rawGet(t, in.metrics),
			"answers": responses.String(), "vault kv": dumpKV(t, adminVault(t, env.Vault), "mediator-kv", "")}
		for what, secret := range secrets {
			for _, form := range []string{base64.StdEncoding.EncodeToString(secret), base64.RawURLEncoding.EncodeToString(secret), hex.EncodeToString(secret)} {
				for where, text := range places {
					if strings.Contains(text, form) {
						t.Errorf("%s found in %s", what, where)
					}
				}
			}
		}
		metrics = places["metrics"]
	})

	step(t, "the metrics count every decision", func(t *testing.T) {
		for _, want := range []string{
			`mediator_access_requests_by_status{status="released"} 1`,
			`mediator_policy_decisions_total{result="allow"} 1`,
			`mediator_policy_decisions_total{result="deny"} 1`,
			`mediator_access_approvals_total{result="unknown_approver"} 1`,
			`mediator_access_approvals_total{result="bad_signature"} 2`,
			`mediator_access_release_seconds_count 1`,
			`mediator_escrow_custodian_seconds_count{custodian="custodian-3",op="release"} 1`,
		} {
			if !strings.Contains(metrics, want) {
				t.Errorf("metrics lack %s", want)
			}
		}
	})

	// The whole log still verifies.
	step(t, "the whole log still verifies", func(t *testing.T) {
		op := []string{"DATABASE_URL=" + in.dsn, "VAULT_ADDR=" + env.Vault.Addr, "VAULT_TOKEN=" + env.Vault.Token, "MEDIATOR_LOG_ORIGIN=mediator/audit"}
		if out, stderr, err := runCmd(t, op, "audit", "verify"); err != nil {
			t.Fatalf("audit verify: %v %s %s", err, out, stderr)
		}
	})
}

// custodianPrivateKey reads custodian c's HPKE private key the only way it
// exists at rest: wrapped by its Transit key, unwrapped here with Vault's
// root token (as a test may), for canary scans.
func custodianPrivateKey(t *testing.T, c dev.Custodian) []byte {
	t.Helper()
	admin := adminVault(t, env.Vault)
	sec, err := admin.KVv2(c.Config.KV.Mount).Get(context.Background(), c.Config.KV.Prefix+"/identity")
	if err != nil {
		t.Fatal(err)
	}
	ctx := base64.StdEncoding.EncodeToString([]byte("mediator-custodian-identity-v1\n" + c.Name + "\nhpke"))
	out, err := admin.Logical().Write(c.Config.Transit.Mount+"/decrypt/"+c.Config.Transit.Key,
		map[string]any{"ciphertext": sec.Data["hpke_wrapped"], "context": ctx})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.StdEncoding.DecodeString(out.Data["plaintext"].(string))
	if len(raw) < 32 {
		t.Fatalf("custodian %s: private key of %d bytes", c.Name, len(raw))
	}
	return raw
}

// dumpKV returns every secret under path in a KV v2 mount, read with
// admin, as text.
func dumpKV(t *testing.T, admin *vaultapi.Client, mount, path string) string {
	t.Helper()
	list, err := admin.Logical().List(mount + "/metadata/" + path)
	if err != nil {
		t.Fatal(err)
	}
	if list == nil {
		return ""
	}
	var b strings.Builder
	for _, k := range list.Data["keys"].([]any) {
		name := path + k.(string)
		if strings.HasSuffix(name, "/") {
			b.WriteString(dumpKV(t, admin, mount, name))
			continue
		}
		sec, err := admin.KVv2(mount).Get(context.Background(), name)
		if err == nil {
			fmt.Fprintln(&b, name, sec.Data)
		}
	}
	return b.String()
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
	in.waitReady(t, 60*time.Second)
	aud, _ := in.issuer.Issue("aud", []string{"auditor"}, time.Hour)
	infoLine := func() string {
		for _, l := range strings.Split(rawGet(t, in.metrics), "\n") {
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
		for !strings.Contains(rawGet(t, in.metrics), want) {
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

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
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

	"github.com/ThalesGroup/crypto11"
	"github.com/google/uuid"
	vaultapi "github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/client"
	"github.com/mediatorhq/mediator/custodian"
	"github.com/mediatorhq/mediator/dev"
	"github.com/mediatorhq/mediator/dev/servers"
	"github.com/mediatorhq/mediator/escrow"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/seal"
	"github.com/mediatorhq/mediator/shares"
	"github.com/mediatorhq/mediator/wire"
)

// strictPolicy writes a release policy that wants three approvals.
func strictPolicy(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"release.rego", "data.json"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "policy", name))
		if err != nil {
			t.Fatal(err)
		}
		if name == "data.json" {
			b = bytes.Replace(b, []byte(`"min_approvals": 2`), []byte(`"min_approvals": 3`), 1)
		}
		os.WriteFile(filepath.Join(dir, name), b, 0o644)
	}
	return dir
}

// hsmCustodian makes a SoftHSM2 token with an AES key for a custodian.
func hsmCustodian(t *testing.T) *custodian.PKCS11File {
	t.Helper()
	dir := t.TempDir()
	module, err := servers.SoftHSMToken(context.Background(), env.Log, dir, "custodian-5", "4711-pin")
	if err != nil {
		t.Fatal(err)
	}
	c11, err := crypto11.Configure(&crypto11.Config{Path: module, TokenLabel: "custodian-5", Pin: "4711-pin"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c11.GenerateSecretKeyWithLabel([]byte{1}, []byte("custodian-5-key"), 256, crypto11.CipherAES); err != nil {
		t.Fatal(err)
	}
	c11.Close()
	pin := filepath.Join(dir, "pin")
	os.WriteFile(pin, []byte("4711-pin\n"), 0o600)
	// SoftHSM2 finds the token's directory through this variable, which
	// the custodian process inherits.
	return &custodian.PKCS11File{Module: module, TokenLabel: "custodian-5", KeyLabel: "custodian-5-key", PINFile: pin}
}

// TestReleaseAcrossCustodianFailures: five custodian processes, one on a
// SoftHSM2 token, one with a stricter data.json of its own. With two
// custodians down the release is short: 503 naming them, with the strict
// custodian's reasons. With them back, it completes from the three that
// agree, the strict one's refusal shown; one custodian had stored a
// corrupt share, and the officer's CLI recovers the key from the others
// and names it. Then, with that custodian down, a second release still
// succeeds with exactly K.
func TestReleaseAcrossCustodianFailures(t *testing.T) {
	ctx := context.Background()
	keys, trusted := e2eApprovers()
	hsm := hsmCustodian(t)
	cs := startCustodians(t, nil, dev.CustodianOptions{Approvers: trusted, PolicyDir: map[int]string{2: strictPolicy(t)},
		PKCS11: map[int]*custodian.PKCS11File{5: hsm}})
	in := startServe(t, serveOpts{custodians: cs})
	in.waitReady(t, 60*time.Second)
	tok := func(sub string, roles ...string) string { s, _ := in.issuer.Issue(sub, roles, time.Hour); return s }
	dep, admin, olga := tok("gw", "depositor"), tok("ada", "admin"), tok("olga", "officer")
	gw, _ := newClient(in.base, dep, http.DefaultClient)
	dir := t.TempDir()

	// What the chapters learn and later ones use.
	var (
		k1, k2 []byte // the deposited keys
		id     string // the first approved request
	)
	genesis, _ := in.genesis.Digest()
	officer := []string{"MEDIATOR_URL=" + in.base, "MEDIATOR_TOKEN=" + olga, "MEDIATOR_ROSTER_GENESIS=" + genesis}
	cli := func(t *testing.T, out string) (string, string, error) {
		return runCmd(t, officer, "request", "release", id,
			"--key", filepath.Join(dir, "olga.key"), "--out", filepath.Join(dir, out))
	}

	step(t, "the gateway escrows two keys, one with a corrupt share", func(t *testing.T) {
		k1 = make([]byte, 32)
		rand.Read(k1)
		if _, err := gw.Deposit(ctx, cs.digest, conv("conv-x"), "e1", k1); err != nil {
			t.Fatal(err)
		}
		// k2's share for custodian-3 is sealed properly but holds the wrong
		// value: custodian-3 stores it, and releases it, as a bad custodian
		// (or a corrupted store) would.
		k2 = make([]byte, 32)
		rand.Read(k2)
		set, err := gw.CustodianSet(ctx, cs.digest)
		if err != nil {
			t.Fatal(err)
		}
		commitment, sealed, _ := shares.Split(set, conv("conv-x"), "e2", k2)
		junk := make([]byte, 33)
		rand.Read(junk)
		sealed[2].Sealed, _ = seal.Seal(set.Custodians[2].HPKEKey, shares.DepositInfo(conv("conv-x"), "e2", "custodian-3", 3, commitment), junk)
		body := wire.DepositRequest{ConversationID: conv("conv-x"), KeyID: "e2", Commitment: commitment, CustodianSet: cs.digest, Threshold: 3}
		for _, s := range sealed {
			body.Shares = append(body.Shares, wire.DepositShare{Custodian: s.Custodian, Index: s.Index, Sealed: s.Sealed})
		}
		b, _ := json.Marshal(body)
		if code, resp := post(t, in.base+"/v1/escrow/keys", "application/json", dep, b); code != 201 {
			t.Fatalf("deposit with a corrupt share: %d %v", code, resp)
		}
	})

	step(t, "the officer's request is approved", func(t *testing.T) {
		if _, stderr, err := runCmd(t, nil, "keygen", "--recipient", "--out", filepath.Join(dir, "olga.key")); err != nil {
			t.Fatal(stderr)
		}
		id = approvedRequest(t, in, admin, olga, keys, conv("conv-x"), filepath.Join(dir, "olga.key.pub"))
	})

	step(t, "with two custodians down the release is short, naming them", func(t *testing.T) {
		cs.stop(t, 3)
		cs.stop(t, 4)
		_, stderr, err := cli(t, "first.ndjson")
		if err == nil || !strings.Contains(stderr, "503 custodians_unavailable") || !strings.Contains(stderr, "custodian-4, custodian-5") ||
			!strings.Contains(stderr, "custodian-2") || !strings.Contains(stderr, "at least 3 distinct approvers") {
			t.Fatalf("release with two custodians down: %v\n%s", err, stderr)
		}
	})

	// The two come back. The story starts them, not a chapter: a chapter's
	// processes end with it, and the last chapter still needs these.
	cs.start(t, 3)
	cs.start(t, 4)

	step(t, "with them back the release completes without the bad share", func(t *testing.T) {
		out, stderr, err := cli(t, "second.ndjson")
		if err != nil || !strings.Contains(out, "released 2 keys") {
			t.Fatalf("release with the custodians back: %v\n%s\n%s", err, out, stderr)
		}
		if !strings.Contains(stderr, "custodian custodian-2 refused") || !strings.Contains(stderr, conv("conv-x")+"/e2 was recovered without the bad shares of: custodian-3") {
			t.Fatalf("the refusal and the bad share were not named:\n%s", stderr)
		}
		opened := readOpened(t, filepath.Join(dir, "second.ndjson"))
		if !bytes.Equal(opened[conv("conv-x")+"/e1"], k1) || !bytes.Equal(opened[conv("conv-x")+"/e2"], k2) {
			t.Fatal("the recovered keys differ from the deposited ones")
		}
	})

	// One custodian down (the one with the corrupt share), the strict one
	// refusing: 1, 4 and 5 suffice.
	step(t, "with custodian-3 down a second release still gives the keys", func(t *testing.T) {
		cs.stop(t, 2)
		id2 := approvedRequest(t, in, admin, olga, keys, conv("conv-x"), filepath.Join(dir, "olga.key.pub"))
		out, stderr, err := runCmd(t, officer, "request", "release", id2,
			"--key", filepath.Join(dir, "olga.key"), "--out", filepath.Join(dir, "third.ndjson"))
		if err != nil || !strings.Contains(out, "released 2 keys") {
			t.Fatalf("release with custodian-3 down: %v\n%s\n%s", err, out, stderr)
		}
		opened := readOpened(t, filepath.Join(dir, "third.ndjson"))
		if !bytes.Equal(opened[conv("conv-x")+"/e1"], k1) || !bytes.Equal(opened[conv("conv-x")+"/e2"], k2) {
			t.Fatal("the keys recovered with custodian-3 down differ")
		}
	})
}

// approvedRequest files a request by olga for convo to recipient (a .pub
// file) and has lena and sam approve it with the CLI.
func approvedRequest(t *testing.T, in *instance, admin, olga string, keys map[string]ed25519.PrivateKey, convo, recipient string) string {
	t.Helper()
	r := readyRequestUnapprovedTo(t, in, admin, olga, convo, recipient)
	for who := range keys {
		sig := ed25519.Sign(keys[who], approval.Message(r.id, r.digest, "approve", who))
		b, _ := json.Marshal(map[string]any{"decision": "approve", "signature": sig})
		tok, _ := in.issuer.Issue(who, []string{"approver"}, time.Hour)
		if code, body := post(t, in.base+"/v1/access-requests/"+r.id+"/approvals", "application/json", tok, b); code != 201 {
			t.Fatalf("approval by %s: %d %v", who, code, body)
		}
	}
	return r.id
}

// readOpened reads a release's output file.
func readOpened(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]byte{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var k client.OpenedKey
		if err := json.Unmarshal(sc.Bytes(), &k); err != nil {
			t.Fatal(err)
		}
		out[k.ConversationID+"/"+k.KeyID] = k.Key
	}
	return out
}

// TestCompromisedMediator: the attacker holds everything of the mediator's:
// its Vault AppRole, a PostgreSQL superuser, admin and officer tokens, the
// mediator's custodian tokens, and write access to its policy directory.
// It holds no approver's private key and no custodian's credential. It
// tries a policy that allows everything but its load probes, invented
// approvers and approvals, request columns edited (and the canonical form
// with them), a replay of a past release, the custodian API called
// directly, and its Vault login on the custodians' keys and stores. The
// secret conversation's key stays unrecoverable: whatever comes back is
// tried with the attacker's key and combined, and never gives it.
func TestCompromisedMediator(t *testing.T) {
	ctx := context.Background()
	keys, trusted := e2eApprovers()
	cs := startCustodians(t, nil, dev.CustodianOptions{Approvers: trusted})
	policyDir := t.TempDir()
	for _, name := range []string{"authz.rego", "release.rego", "data.json"} {
		b, _ := os.ReadFile(filepath.Join("..", "..", "policy", name))
		os.WriteFile(filepath.Join(policyDir, name), b, 0o644)
	}
	in := startServe(t, serveOpts{custodians: cs, extraEnv: []string{"MEDIATOR_POLICY_DIR=" + policyDir}})
	in.waitReady(t, 60*time.Second)
	tok := func(sub string, roles ...string) string { s, _ := in.issuer.Issue(sub, roles, time.Hour); return s }
	dep, admin, olga := tok("gw", "depositor"), tok("ada", "admin"), tok("olga", "officer")
	gw, _ := newClient(in.base, dep, http.DefaultClient)
	dir := t.TempDir()

	// What the chapters learn and later ones use.
	var (
		secret        []byte          // the key the attacker is after
		mallory       hpke.PrivateKey // the attacker's recipient key
		malloryPub    seal.PublicKey
		lawful        string       // the lawful request's id
		lawfulRel     wire.Release // and its release
		grab          openRequest  // the attacker's request for the secret
		genesisDigest string
		p2            wire.RosterProposal // the genuine version 2
		genuineChain  wire.RosterChain    // versions 1 and 2, adopted by the approvers
		remotes       []*escrow.Remote    // the custodians, as the mediator calls them
		other, third  string              // lawful requests whose rows the attacker edits
		forged        []byte              // a canonical request forged for the secret
		secretRefs    [5]wire.ShareRef    // where each custodian keeps its share of the secret
	)

	// What the gateway escrowed: the secret conversation the attacker is
	// after, and conv-a, which a lawful request will release to olga.
	step(t, "the gateway escrows the secret conversation and conv-a", func(t *testing.T) {
		secret = make([]byte, 32)
		rand.Read(secret)
		if _, err := gw.Deposit(ctx, cs.digest, conv("conv-secret"), "e1", secret); err != nil {
			t.Fatal(err)
		}
		keyA := make([]byte, 32)
		rand.Read(keyA)
		if _, err := gw.Deposit(ctx, cs.digest, conv("conv-a"), "e1", keyA); err != nil {
			t.Fatal(err)
		}
	})

	step(t, "a lawful request releases conv-a to olga", func(t *testing.T) {
		runCmd(t, nil, "keygen", "--recipient", "--out", filepath.Join(dir, "olga.key"))
		runCmd(t, nil, "keygen", "--recipient", "--out", filepath.Join(dir, "mallory.key"))
		malloryFile, _ := os.ReadFile(filepath.Join(dir, "mallory.key"))
		mallory, _ = seal.ParseKey(malloryFile)
		malloryPub = seal.PublicKeyOf(mallory)
		lawful = approvedRequest(t, in, admin, olga, keys, conv("conv-a"), filepath.Join(dir, "olga.key.pub"))
		var err error
		lawfulRel, err = func() (wire.Release, error) {
			c, _ := newClient(in.base, olga, http.DefaultClient)
			return c.Release(ctx, lawful)
		}()
		if err != nil {
			t.Fatalf("the lawful release: %v", err)
		}
	})

	// Everything that comes back to the attacker, to try at the end.
	var loot []wire.Release
	tryRelease := func(t *testing.T, id string) {
		t.Helper()
		c, _ := newClient(in.base, olga, http.DefaultClient)
		rel, err := c.Release(ctx, id)
		if err == nil {
			loot = append(loot, rel)
		}
	}
	db, err := pgx.Connect(ctx, in.dsn) // a PostgreSQL superuser
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	if _, err := db.Exec(ctx, "SET session_replication_role = replica"); err != nil { // append-only triggers off
		t.Fatal(err)
	}

	// 1. A policy that allows every release but the load probes, telling
	// them by their names: refused at load, since probes look like any
	// request. Then one with a backdoor no probe can find (one case id,
	// the attacker's), which loads: the mediator's own check is then
	// worthless, and the custodians' checks are what stand.
	reload := func(t *testing.T, rego, result string) {
		t.Helper()
		os.WriteFile(filepath.Join(policyDir, "release.rego"), []byte(rego), 0o644)
		in.proc.cmd.Process.Signal(syscall.SIGHUP)
		want := fmt.Sprintf(`mediator_policy_reloads_total{result=%q}`, result)
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(rawGet(t, in.metrics), want) {
			if time.Now().After(deadline) {
				t.Fatalf("no %s after the reload", want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	step(t, "a policy that tells the load probes by name is refused", func(t *testing.T) {
		reload(t, `package mediator.release
import rego.v1
decision := {"allow": false, "reasons": ["probe"]} if startswith(input.request.id, "probe")
decision := {"allow": true, "reasons": []} if not startswith(input.request.id, "probe")
`, "refused")
	})
	step(t, "a backdoored policy loads but the custodians refuse", func(t *testing.T) {
		reload(t, `package mediator.release
import rego.v1
default decision := {"allow": false, "reasons": ["denied"]}
decision := {"allow": true, "reasons": []} if input.request.case_id == "case-1"
`, "ok")
		// The officer herself is the attacker here: she signs a request
		// for the secret to her own second key, and no one approves it.
		grab = readyRequestUnapprovedTo(t, in, admin, olga, conv("conv-secret"), filepath.Join(dir, "mallory.key.pub"))
		code, resp := post(t, in.base+"/v1/access-requests/"+grab.id+"/release", "application/json", olga, []byte(`{}`))
		if code != 403 || errorCode(resp) != "custodians_refused" {
			t.Fatalf("the mediator's own policy let it through, so the custodians must refuse: %d %v", code, resp)
		}
	})

	// 2. A forged roster version, written straight into the roster
	// tables: two invented approvers with the right roles, "signed" by
	// their own keys, and their approvals. The mediator verifies its
	// chain from the genesis it pins and refuses to work from it (503);
	// handed to the custodians directly, they refuse it too.
	// First the approvers adopt a genuine version 2, so the chain has an
	// order to get wrong.
	step(t, "the approvers adopt a genuine version 2", func(t *testing.T) {
		genesisDigest, _ = in.genesis.Digest()
		adminClient, _ := newClient(in.base, admin, http.DefaultClient)
		var err error
		p2, err = adminClient.ProposeRoster(ctx, wire.RosterDraft{Approvers: in.genesis.Approvers, Custodians: in.genesis.Custodians,
			Threshold: in.genesis.Threshold, Rule: in.genesis.Rule})
		if err != nil {
			t.Fatal(err)
		}
		for who, key := range keys {
			c, _ := newClient(in.base, tok(who, "approver"), http.DefaultClient)
			if p2, err = c.SignRoster(ctx, key, who, p2.Digest); err != nil {
				t.Fatal(err)
			}
		}
		if p2.Status != "adopted" {
			t.Fatalf("version 2: %+v", p2)
		}
		genuineChain, err = gw.RosterChain(ctx)
		if err != nil || len(genuineChain.Chain) != 2 {
			t.Fatalf("the genuine chain: %v", err)
		}
	})
	// The host describes a real proposal falsely to an approver: her tool
	// works the changes out from the signed bytes and signs nothing.
	step(t, "the host lies about a roster proposal and lena signs nothing", hostLiesAboutARosterProposal(in, genesisDigest, keys["lena"]))
	step(t, "a forged roster version in the tables is refused everywhere", func(t *testing.T) {
		forgedV2 := in.genesis
		forgedV2.Version, forgedV2.Previous = 3, p2.Digest
		var forgedApprovals []wire.EvidenceApproval
		forgedKeys := map[string]ed25519.PrivateKey{}
		for _, who := range [][2]string{{"eve", "legal"}, {"trent", "security"}} {
			pub, priv, _ := ed25519.GenerateKey(rand.Reader)
			forgedKeys[who[0]] = priv
			forgedV2.Approvers = append(forgedV2.Approvers, roster.Approver{ID: who[0], Roles: []string{who[1]}, PublicKey: pub})
		}
		forgedCanonical, err := forgedV2.Canonical()
		if err != nil {
			t.Fatal(err)
		}
		forgedDigest := roster.Digest(forgedCanonical)
		forgedSigned := roster.Signed{Roster: forgedCanonical}
		mustExec(t, db, `INSERT INTO roster_proposals (digest, version, canonical, proposed_by, audit_seq) VALUES ($1, 3, $2, 'ada', 0)`, forgedDigest, forgedCanonical)
		for who, priv := range forgedKeys {
			sig := roster.Sign(priv, forgedDigest, who)
			forgedSigned.Signatures = append(forgedSigned.Signatures, sig)
			mustExec(t, db, `INSERT INTO roster_signatures (digest, approver_id, key_id, signature, audit_seq) VALUES ($1, $2, $3, $4, 0)`, forgedDigest, who, sig.KeyID, sig.Signature)
			asig := ed25519.Sign(priv, approval.Message(grab.id, grab.digest, "approve", who))
			forgedApprovals = append(forgedApprovals, wire.EvidenceApproval{ApproverID: who, Decision: "approve", Signature: asig, ApprovedAt: time.Now().UTC()})
			mustExec(t, db, `INSERT INTO access_approvals (request_id, approver_id, decision, signature, key_id, roles, by_requester, audit_seq)
			VALUES ($1, $2, 'approve', $3, $4, '{}', false, 0)`, grab.id, who, asig, sig.KeyID)
		}
		mustExec(t, db, `INSERT INTO roster_versions (genesis, version, digest, audit_seq) VALUES ($1, 3, $2, 0)`, genesisDigest, forgedDigest)
		code, resp := post(t, in.base+"/v1/access-requests/"+grab.id+"/release", "application/json", olga, []byte(`{}`))
		if code != 503 || !strings.Contains(fmt.Sprint(resp), "roster chain does not verify") {
			t.Fatalf("a forged roster version in the database: %d %v", code, resp)
		}
		if _, err := gw.DepositByRoster(ctx, genesisDigest, conv("conv-z"), "e1", make([]byte, 32)); err == nil {
			t.Fatal("a depositor accepted the forged roster")
		}
		forgedChain := append(append([]roster.Signed(nil), genuineChain.Chain...), forgedSigned)
		grabCanonical := []byte{}
		db.QueryRow(ctx, "SELECT canonical FROM access_requests WHERE request_id = $1", grab.id).Scan(&grabCanonical)
		remotes, _ = mustParse(t, cs.file).Remotes()
		reordered := []roster.Signed{genuineChain.Chain[1], genuineChain.Chain[0]}
		for _, r := range remotes {
			for name, chain := range map[string][]roster.Signed{"forged": forgedChain, "re-ordered": reordered} {
				var refused *escrow.RefusedError
				_, err := r.Release(ctx, wire.ReleaseEvidence{Roster: chain, Canonical: grabCanonical, Approvals: forgedApprovals,
					Shares: []wire.ShareRef{{EscrowID: uuid.NewString(), Locator: "x"}}})
				if !errors.As(err, &refused) || !strings.Contains(strings.Join(refused.Reasons, ";"), "roster chain does not verify") {
					t.Errorf("%s: the %s roster chain: %v", r.Name, name, err)
				}
			}
		}
		// The attacker, a superuser, takes the forged version out again so the
		// lawful work below goes on.
		mustExec(t, db, `DELETE FROM roster_versions WHERE genesis = $1 AND version = 3`, genesisDigest)
	})

	// 3. The lawful request's columns edited to the secret conversation and
	// the attacker's key; then its canonical form and digest with them.
	step(t, "the attacker edits request rows to the secret and its key", func(t *testing.T) {
		other = approvedRequest(t, in, admin, olga, keys, conv("conv-a"), filepath.Join(dir, "olga.key.pub"))
		mustExec(t, db, `UPDATE access_requests SET conversation_ids = '{conv-secret}', recipient_kem_id = $2, recipient_public_key = $3 WHERE request_id = $1`,
			other, int(malloryPub.KEMID), malloryPub.PublicKey)
		tryRelease(t, other)
		var canonical []byte
		db.QueryRow(ctx, "SELECT canonical FROM access_requests WHERE request_id = $1", other).Scan(&canonical)
		forged = bytes.Replace(canonical, []byte(`"conv-a"`), []byte(`"conv-secret"`), 1)
		olgaPub, _ := os.ReadFile(filepath.Join(dir, "olga.key.pub"))
		var olgaKey seal.PublicKey
		json.Unmarshal(olgaPub, &olgaKey)
		forged = bytes.Replace(forged, []byte(base64.StdEncoding.EncodeToString(olgaKey.PublicKey)), []byte(base64.StdEncoding.EncodeToString(malloryPub.PublicKey)), 1)
		forged = bytes.Replace(forged, []byte(fmt.Sprintf(`"kem_id":%d`, olgaKey.KEMID)), []byte(fmt.Sprintf(`"kem_id":%d`, malloryPub.KEMID)), 1)
		third = approvedRequest(t, in, admin, olga, keys, conv("conv-a"), filepath.Join(dir, "olga.key.pub"))
		mustExec(t, db, `UPDATE access_requests SET canonical = $2, digest = $3, conversation_ids = '{conv-secret}' WHERE request_id = $1`,
			third, bytes.ReplaceAll(forged, []byte(other), []byte(third)), approval.Digest(bytes.ReplaceAll(forged, []byte(other), []byte(third))))
		tryRelease(t, third)
	})
	// audit verify names every request row whose columns differ from what
	// was signed.
	step(t, "audit verify names the edited requests", func(t *testing.T) {
		_, vkey := getText(t, in.base+"/v1/audit/verifier-key", tok("aud", "auditor"))
		out, _, err := runCmd(t, []string{"DATABASE_URL=" + in.dsn}, "audit", "verify", "--key", strings.TrimSpace(vkey))
		// third's bytes were forged from other's, so which of its times
		// differ from its columns depends on the second each was filed in;
		// its bytes differ from its log entry whatever they are.
		thirdLine := grepLines(out, "access request "+third+": the stored request differs from what was signed and logged: ")
		if err == nil || !strings.Contains(out, "access request "+other+": the stored request differs from what was signed and logged: conversation_ids, recipient_public_key") ||
			!strings.Contains(thirdLine, "recipient_public_key") ||
			!strings.Contains(thirdLine, "canonical (the log holds other bytes), digest (the log holds another)") {
			t.Errorf("audit verify on edited request columns: %v\n%s", err, out)
		}
	})

	// 4. A replay of the lawful release, straight to the custodians with the
	// mediator's token: each checks it again and answers only what it
	// released for it then, byte for byte (sealed to olga), nothing new.
	step(t, "the custodians answer a replay only as before and refuse evidence out of scope or forged", func(t *testing.T) {
		var lawfulCanonical, lawfulSig []byte
		db.QueryRow(ctx, "SELECT canonical, officer_signature FROM access_requests WHERE request_id = $1", lawful).Scan(&lawfulCanonical, &lawfulSig)
		var approvalsEv []wire.EvidenceApproval
		rows, _ := db.Query(ctx, "SELECT approver_id, decision, signature, approved_at FROM access_approvals WHERE request_id = $1", lawful)
		for rows.Next() {
			var a wire.EvidenceApproval
			rows.Scan(&a.ApproverID, &a.Decision, &a.Signature, &a.ApprovedAt)
			approvalsEv = append(approvalsEv, a)
		}
		rows.Close()
		var aRefs [5]wire.ShareRef
		srows, _ := db.Query(ctx, `SELECT k.conversation_id, s.share_index, s.escrow_id::text, s.locator FROM escrow_custodian_shares s
		JOIN escrow_keys k USING (escrow_id)`)
		for srows.Next() {
			var convo, id, loc string
			var idx int
			srows.Scan(&convo, &idx, &id, &loc)
			if convo == conv("conv-secret") {
				secretRefs[idx-1] = wire.ShareRef{EscrowID: id, Locator: loc}
			} else {
				aRefs[idx-1] = wire.ShareRef{EscrowID: id, Locator: loc}
			}
		}
		srows.Close()
		for i, r := range remotes {
			ans, err := r.Release(ctx, wire.ReleaseEvidence{Roster: genuineChain.Chain, Canonical: lawfulCanonical, OfficerSignature: lawfulSig,
				Approvals: approvalsEv, Shares: []wire.ShareRef{aRefs[i]}})
			var given *wire.ReleasedShare
			for _, k := range lawfulRel.Keys {
				for j := range k.Shares {
					if k.Shares[j].Custodian == r.Name {
						given = &k.Shares[j]
					}
				}
			}
			if err != nil || given == nil || ans.Shares[0].Error != nil || !bytes.Equal(ans.Shares[0].Sealed, given.Sealed) ||
				ans.Shares[0].Receipt.Hash() != given.Receipt.Hash() {
				t.Errorf("%s: a replayed release is not answered with the share released then: %v %v", r.Name, ans.Shares[0].Error, err)
			}
			// The lawful evidence with the secret's share: out of scope.
			ans, err = r.Release(ctx, wire.ReleaseEvidence{Roster: genuineChain.Chain, Canonical: lawfulCanonical, OfficerSignature: lawfulSig,
				Approvals: approvalsEv, Shares: []wire.ShareRef{secretRefs[i]}})
			if err != nil || ans.Shares[0].Error == nil || ans.Shares[0].Error.Code != "not_in_scope" {
				t.Errorf("%s: the lawful evidence for the secret share: %+v %v", r.Name, ans, err)
			}
			// Forged evidence: the invented approvals on a forged request.
			if _, err := r.Release(ctx, wire.ReleaseEvidence{Roster: genuineChain.Chain, Canonical: forged, Approvals: approvalsEv, Shares: []wire.ShareRef{secretRefs[i]}}); err == nil {
				t.Errorf("%s released on forged evidence", r.Name)
			}
			// Destruction early, and rewrap, are not the mediator's to order.
			if res, err := r.Destroy(ctx, []wire.ShareRef{secretRefs[i]}); err != nil || res[0].Outcome != "too_young" {
				t.Errorf("%s: an early destruction: %+v %v", r.Name, res, err)
			}
			req, _ := http.NewRequest("POST", cs.cs[i].URL+"/v1/rewrap", nil)
			req.Header.Set("Authorization", "Bearer "+cs.cs[i].MediatorToken)
			if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 401 {
				t.Errorf("%s: rewrap with the mediator's token: %v %v", cs.cs[i].Name, resp, err)
			}
		}
	})

	// 5. The host lies about an officer's request: it swaps the recipient
	// key of one she filed, and files one in her name without her key.
	lies := func() officerLies {
		olgaPub, _ := os.ReadFile(filepath.Join(dir, "olga.key.pub"))
		var olgaKey seal.PublicKey
		json.Unmarshal(olgaPub, &olgaKey)
		return officerLies{in: in, db: db, remotes: remotes, chain: genuineChain.Chain, secretRefs: secretRefs, approvers: keys,
			olgaPub: olgaKey, malloryPub: malloryPub, genesis: genesisDigest, dir: dir, olgaToken: olga,
			approverTok: func(id string) string { return tok(id, "approver") }}
	}
	step(t, "the host swaps the recipient key of an officer's request", func(t *testing.T) { chapterSwappedRecipient(t, lies()) })
	step(t, "the host files in an officer's name without her key", func(t *testing.T) { chapterFiledWithoutTheKey(t, lies()) })

	// 6. The mediator's own Vault login on the custodians' keys and stores.
	step(t, "the mediator's Vault login opens no custodian key or store", func(t *testing.T) {
		vc := mediatorVault(t, in)
		for i, c := range cs.cs {
			if _, err := vc.Logical().Write(c.Config.Transit.Mount+"/decrypt/"+c.Config.Transit.Key, map[string]any{"ciphertext": "vault:v1:AAAA"}); err == nil || !strings.Contains(err.Error(), "permission denied") {
				t.Errorf("the mediator's token on %s's Transit key: %v", c.Name, err)
			}
			if _, err := vc.KVv2(c.Config.KV.Mount).Get(ctx, c.Config.KV.Prefix+"/"+secretRefs[i].Locator); err == nil || !strings.Contains(err.Error(), "permission denied") {
				t.Errorf("the mediator's token on %s's store: %v", c.Name, err)
			}
		}
	})

	// The host lies to the people's tools (issue 20): a deposit's receipts
	// dropped, a release's receipts forged, a key of its own handed to
	// the officer, a release's answer lost. The tools verify the
	// custodians' receipts themselves (liesreceipts_test.go).
	var liesKeys map[string][]byte
	step(t, "the host drops a deposit's receipts and the depositor is told", func(t *testing.T) {
		liesKeys = chapterDepositWithoutReceipts(t, in, dep, cs.digest, genesisDigest)
	})
	step(t, "the host forges release receipts or a key of its own and the officer opens nothing", func(t *testing.T) {
		chapterForgedRelease(t, in, admin, olga, keys, genesisDigest, dir, liesKeys)
	})
	step(t, "a release answer the host drops is fetched again and verified", func(t *testing.T) {
		chapterLostReleaseAnswer(t, in, admin, olga, keys, genesisDigest, dir, liesKeys)
	})
	step(t, "a repeated release after a lost answer returns the same shares", func(t *testing.T) {
		chapterLostCustodianAnswer(t, lostCustodianAnswer{in: in, db: db, remotes: remotes, chain: genuineChain.Chain, approvers: keys, admin: admin, olga: olga, genesis: genesisDigest, dir: dir, want: liesKeys})
	})

	// Whatever came back, and whatever the database keeps, the attacker
	// tries with its own key and combines: the secret never comes out.
	step(t, "the attacker opens nothing of what came back", func(t *testing.T) {
		var kept []wire.ReleasedShare
		krows, _ := db.Query(ctx, "SELECT custodian, share_index, sealed FROM access_release_shares")
		for krows.Next() {
			var s wire.ReleasedShare
			krows.Scan(&s.Custodian, &s.Index, &s.Sealed)
			kept = append(kept, s)
		}
		krows.Close()
		loot = append(loot, lawfulRel, wire.Release{RequestID: "any", Keys: []wire.ReleasedKey{{ConversationID: conv("conv-secret"), KeyID: "e1",
			KeyCommitment: shares.Commitment(conv("conv-secret"), "e1", secret), Threshold: 3, Shares: kept}}})
		for _, rel := range loot {
			for _, k := range rel.Keys {
				var parts []shares.Part
				for _, sh := range k.Shares {
					for _, reqID := range []string{rel.RequestID, lawful, grab.id, other, third} {
						if p, err := shares.OpenReleased(mallory, reqID, k.ConversationID, k.KeyID, sh.Custodian, sh.Index, sh.Sealed); err == nil {
							parts = append(parts, shares.Part{Custodian: sh.Custodian, Share: p})
						}
					}
				}
				if len(parts) > 0 {
					t.Errorf("the attacker opened %d shares of %s", len(parts), k.ConversationID)
				}
				if key, _, err := shares.Recover(conv("conv-secret"), "e1", shares.Commitment(conv("conv-secret"), "e1", secret), 3, parts); err == nil {
					t.Fatalf("the attacker recovered the secret key: %x", key)
				}
			}
		}
	})

	// And nothing the mediator keeps holds the secret in any form.
	step(t, "nothing the mediator keeps holds the secret", func(t *testing.T) {
		dump := dumpTables(t, in.dsn) + in.proc.Output() + rawGet(t, in.metrics) + dumpKV(t, adminVault(t, env.Vault), "mediator-kv", "")
		for _, form := range []string{base64.StdEncoding.EncodeToString(secret), hex.EncodeToString(secret), base64.RawURLEncoding.EncodeToString(secret)} {
			if strings.Contains(dump, form) {
				t.Fatal("the secret key is in the mediator's database, logs, metrics or Vault")
			}
		}
		if n := countSecretReleases(t, db); n != 0 {
			t.Fatalf("%d shares of the secret conversation left a custodian", n)
		}
	})

	// Last, as it changes the roster in force: a removal the mediator
	// withholds (liesrosterpush_test.go).
	step(t, "the mediator withholds a removal: once pushed by roster sign, the removed key no longer counts at any custodian", func(t *testing.T) {
		chapterWithheldRemoval(t, withheldRemoval{in: in, db: db, genesis: genesisDigest, keys: keys, remotes: remotes,
			genuineChain: genuineChain.Chain, grab: grab, secretRefs: secretRefs})
	})
	step(t, "the mediator withholds a deny vote: every custodian refuses the release", func(t *testing.T) {
		chapterWithheldVeto(t, withheldVeto{in: in, db: db, genesis: genesisDigest, remotes: remotes, secretRefs: secretRefs})
	})
	step(t, "the mediator lifts a hold with its token alone: refused by 5 of 5", func(t *testing.T) {
		chapterLiftedHold(t, liftedHold{in: in, genesis: genesisDigest, remotes: remotes, secretRefs: secretRefs})
	})
}

func countSecretReleases(t *testing.T, db *pgx.Conn) int {
	t.Helper()
	var n int
	if err := db.QueryRow(context.Background(), `SELECT count(*) FROM access_release_shares r JOIN escrow_keys k USING (escrow_id)
		WHERE k.conversation_id = 'conv-secret'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func mustExec(t *testing.T, db *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := db.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// mustParse reads a mediator custodians file.
func mustParse(t *testing.T, path string) escrow.CustodianFile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := escrow.ParseCustodians(b)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// mediatorVault logs in to the shared Vault with the AppRole in was
// started with: the mediator's own Vault identity, as an attacker on its
// host would have it.
func mediatorVault(t *testing.T, in *instance) *vaultapi.Client {
	t.Helper()
	var roleID, secretID string
	for _, kv := range in.environ {
		if v, ok := strings.CutPrefix(kv, "MEDIATOR_VAULT_ROLE_ID="); ok {
			roleID = v
		}
		if v, ok := strings.CutPrefix(kv, "MEDIATOR_VAULT_SECRET_ID="); ok {
			secretID = v
		}
	}
	if roleID == "" || secretID == "" {
		t.Fatal("the instance was not started with an AppRole")
	}
	c, err := vaultapi.NewClient(&vaultapi.Config{Address: env.Vault.Addr})
	if err != nil {
		t.Fatal(err)
	}
	c.ClearToken()
	s, err := c.Logical().Write("auth/approle/login", map[string]any{"role_id": roleID, "secret_id": secretID})
	if err != nil || s == nil || s.Auth == nil {
		t.Fatalf("the mediator's AppRole login: %v", err)
	}
	c.SetToken(s.Auth.ClientToken)
	return c
}

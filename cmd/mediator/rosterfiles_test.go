package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/mediatorhq/mediator/audit"
	"github.com/mediatorhq/mediator/custodian"
	"github.com/mediatorhq/mediator/escrow"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/wire"
	"github.com/mediatorhq/mediator/witness"
)

// foundingDraft is a genesis draft of lena (legal), sam (security), an
// officer and three custodians, with their signing seeds, and the log's
// checkpoint key (a note signer key and its verifier key).
type foundingDraft struct {
	path        string
	draft       wire.RosterDraft
	seeds       map[string][]byte
	logSkey     string
	logVerifier string
}

// newFoundingDraft writes a draft in dir; withLog names the log in it.
func newFoundingDraft(t *testing.T, dir string, withLog bool) foundingDraft {
	t.Helper()
	fd := foundingDraft{path: filepath.Join(dir, "draft.json"), seeds: map[string][]byte{}}
	var err error
	if fd.logSkey, fd.logVerifier, err = note.GenerateKey(rand.Reader, "mediator.example/audit"); err != nil {
		t.Fatal(err)
	}
	d := wire.RosterDraft{Threshold: 2, Rule: roster.DefaultRule()}
	for _, a := range []struct{ id, role string }{{"lena", "legal"}, {"sam", "security"}, {"ola", roster.RoleOfficer}} {
		_, priv := approverKey(t, dir, a.id)
		d.Approvers = append(d.Approvers, roster.Approver{ID: a.id, Roles: []string{a.role}, PublicKey: priv.Public().(ed25519.PublicKey)})
	}
	for _, name := range []string{"acme-legal", "beta-sec", "gamma-ops"} {
		hpkeKey, _ := custodianKeys(t)
		seed := make([]byte, ed25519.SeedSize)
		rand.Read(seed)
		fd.seeds[name] = seed
		d.Custodians = append(d.Custodians, roster.Custodian{Name: name, URL: "https://" + name + ".example:8443",
			HPKEKey: hpkeKey, SigningKey: ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)})
	}
	if withLog {
		d.Log = &roster.AuditLog{Origin: "mediator.example/audit", VerifierKeys: []string{fd.logVerifier}}
	}
	fd.draft = d
	b, _ := json.Marshal(d)
	if err := os.WriteFile(fd.path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return fd
}

// writeTokens writes a token file DIR/<name>-token for each name.
func writeTokens(t *testing.T, dir string, names ...string) {
	t.Helper()
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n+"-token"), []byte(rand.Text()+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// wantCustodiansFile checks that b parses with the mediator's own parser
// and lists r's custodians, in r's order, with their URLs and keys, r's
// threshold, and the token files tokens/<name>-token.
func wantCustodiansFile(t *testing.T, b []byte, r roster.Roster, tokens string) escrow.CustodianFile {
	t.Helper()
	f, err := escrow.ParseCustodians(b)
	if err != nil {
		t.Fatalf("the mediator's parser refuses it: %v\n%s", err, b)
	}
	if f.Threshold != r.Threshold || len(f.Custodians) != len(r.Custodians) {
		t.Fatalf("threshold %d, %d custodians: %s", f.Threshold, len(f.Custodians), b)
	}
	for i, c := range r.Custodians {
		got := f.Custodians[i]
		if got.Name != c.Name || got.URL != c.URL || got.HPKEKey.Fingerprint() != c.HPKEKey.Fingerprint() || !got.SigningKey.Equal(c.SigningKey) ||
			got.TokenFile != filepath.Join(tokens, c.Name+"-token") {
			t.Errorf("entry %d: %+v, want %+v", i, got, c)
		}
	}
	set, _ := f.Set().Digest()
	if want, _ := r.Set().Digest(); set != want {
		t.Errorf("the file's set %s is not the roster's %s", set, want)
	}
	return f
}

// TestCustodiansFileFromDraft: before any mediator runs, roster
// custodians-file writes the mediator's custodians file from the genesis
// draft: it parses with the mediator's own parser, with the draft's
// custodians in its order, each with its token file DIR/<name>-token
// (absolute) and the TLS files given; a missing token file is refused,
// naming the custodian and the file, and nothing is written; so is a
// draft that is not the genesis you pin.
func TestCustodiansFileFromDraft(t *testing.T) {
	dir := t.TempDir()
	fd := newFoundingDraft(t, dir, false)
	tokens := filepath.Join(dir, "tokens")
	os.Mkdir(tokens, 0o700)
	writeTokens(t, tokens, "acme-legal", "beta-sec")
	out := filepath.Join(dir, "custodians.json")
	_, _, stderr, err := runArgs([]string{"roster", "custodians-file", "--file", fd.path, "--tokens", tokens, "--out", out}, nil)
	if err == nil || !strings.Contains(err.Error(), "custodian gamma-ops") || !strings.Contains(err.Error(), filepath.Join(tokens, "gamma-ops-token")) {
		t.Fatalf("a missing token file: %v %s", err, stderr)
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("a file was written despite the missing token")
	}
	writeTokens(t, tokens, "gamma-ops")
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, []byte("not checked here\n"), 0o644)
	_, _, _, err = runArgs([]string{"roster", "custodians-file", "--file", fd.path, "--tokens", tokens, "--ca-file", filepath.Join(dir, "nope.pem")}, nil)
	if err == nil || !strings.Contains(err.Error(), "--ca-file") {
		t.Fatalf("a missing ca file: %v", err)
	}
	_, _, _, err = runArgs([]string{"roster", "custodians-file", "--file", fd.path, "--tokens", tokens, "--client-cert-file", ca}, nil)
	if err == nil || !strings.Contains(err.Error(), "go together") {
		t.Fatalf("a client certificate without its key: %v", err)
	}
	// A relative --tokens: the file names absolute paths.
	t.Chdir(dir)
	_, stdout, stderr, err := runArgs([]string{"roster", "custodians-file", "--file", "draft.json", "--tokens", "tokens", "--out", out, "--ca-file", "ca.pem"}, nil)
	if err != nil || stdout != "" || !strings.Contains(stderr, "3 custodians, threshold 2, set digest sha256:") {
		t.Fatalf("%v\nstdout %q\nstderr %s", err, stdout, stderr)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	f := wantCustodiansFile(t, b, draftGenesis(fd.draft), tokens)
	if f.CAFile != ca {
		t.Errorf("ca_file %q, want %q", f.CAFile, ca)
	}
	genesis, _ := draftGenesis(fd.draft).Digest()
	other := strings.Replace(genesis, genesis[len(genesis)-4:], "0000", 1)
	_, _, _, err = runArgs([]string{"roster", "custodians-file", "--file", "draft.json", "--tokens", "tokens"}, map[string]string{"MEDIATOR_ROSTER_GENESIS": other})
	if err == nil || !strings.Contains(err.Error(), "not "+other+", the genesis you pin") {
		t.Fatalf("a draft that is not the pinned genesis: %v", err)
	}
}

// TestCustodiansFileFromVerifiedRoster: without --file, roster
// custodians-file writes the file from the roster in force, verified from
// the pinned genesis like roster show; without a pinned genesis it
// refuses.
func TestCustodiansFileFromVerifiedRoster(t *testing.T) {
	f := newFakeMediator(t, func(c []string) []string { return c })
	tokens := t.TempDir()
	var names []string
	for _, c := range f.genesis.Custodians {
		names = append(names, c.Name)
	}
	writeTokens(t, tokens, names...)
	stdout, stderr, err := f.run(false, "", "roster", "custodians-file", "--tokens", tokens)
	if err != nil || !strings.Contains(stderr, "roster version 1 ("+f.gDigest+"), verified from genesis "+f.gDigest) {
		t.Fatalf("%v\n%s", err, stderr)
	}
	wantCustodiansFile(t, []byte(stdout), f.genesis, tokens)

	_, _, _, err = runArgs([]string{"roster", "custodians-file", "--tokens", tokens}, map[string]string{"MEDIATOR_URL": f.url, "MEDIATOR_TOKEN": "t"})
	if err == nil || !strings.Contains(err.Error(), "--genesis") {
		t.Fatalf("without a pinned genesis: %v", err)
	}
	other := strings.Replace(f.gDigest, f.gDigest[len(f.gDigest)-4:], "0000", 1)
	_, _, _, err = runArgs([]string{"roster", "custodians-file", "--tokens", tokens, "--genesis", other}, map[string]string{"MEDIATOR_URL": f.url, "MEDIATOR_TOKEN": "t"})
	if err == nil {
		t.Fatal("a chain that does not verify from the pinned genesis was used")
	}
}

// TestWitnessesFileFromRoster: roster witnesses-file writes the
// mediator's witnesses file from the roster, which audit.ParseWitnessPolicy
// reads: each custodian by its name and URL, with the verifier key its
// own witness computes from its name and signing seed (witness.NewSigner),
// and by default the roster's threshold as quorum; --quorum sets it, up
// to the number of custodians.
func TestWitnessesFileFromRoster(t *testing.T) {
	dir := t.TempDir()
	fd := newFoundingDraft(t, dir, false)
	_, stdout, stderr, err := runArgs([]string{"roster", "witnesses-file", "--file", fd.path}, nil)
	if err != nil || !strings.Contains(stderr, "3 witnesses, quorum 2") {
		t.Fatalf("%v %s", err, stderr)
	}
	p, err := audit.ParseWitnessPolicy([]byte(stdout))
	if err != nil {
		t.Fatal(err)
	}
	var file witnessesFile
	json.Unmarshal([]byte(stdout), &file)
	if p.MinCosigners() != 2 || len(p.Witnesses) != 3 || len(file.Witnesses) != 3 {
		t.Fatalf("quorum %d, witnesses %d", p.MinCosigners(), len(p.Witnesses))
	}
	for i, c := range fd.draft.Custodians {
		_, vkey, err := witness.NewSigner(c.Name, fd.seeds[c.Name])
		if err != nil {
			t.Fatal(err)
		}
		if w := file.Witnesses[i]; w.Name != c.Name || w.URL != c.URL || w.VerifierKey != vkey {
			t.Errorf("witness %d: %+v, want %s %s %s", i, w, c.Name, c.URL, vkey)
		}
	}
	out := filepath.Join(dir, "witnesses.json")
	if _, _, _, err := runArgs([]string{"roster", "witnesses-file", "--file", fd.path, "--quorum", "3", "--out", out}, nil); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(out)
	if p, err := audit.ParseWitnessPolicy(b); err != nil || p.MinCosigners() != 3 {
		t.Fatalf("--quorum 3: %v %+v", err, p)
	}
	if _, _, _, err := runArgs([]string{"roster", "witnesses-file", "--file", fd.path, "--quorum", "4"}, nil); err == nil {
		t.Fatal("a quorum of 4 of 3 witnesses was written")
	}
}

// TestWitnessesFileAsTlogPolicy: --format tlog-policy writes the same
// witnesses as a C2SP tlog-policy file, a group "custodians" with the
// quorum as its threshold and the log's key when given; it parses to the
// same witnesses and quorum as the JSON.
func TestWitnessesFileAsTlogPolicy(t *testing.T) {
	dir := t.TempDir()
	fd := newFoundingDraft(t, dir, false)
	_, js, _, err := runArgs([]string{"roster", "witnesses-file", "--file", fd.path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, logVkey, _ := note.GenerateKey(rand.Reader, "mediator.test/log")
	_, text, stderr, err := runArgs([]string{"roster", "witnesses-file", "--file", fd.path, "--format", "tlog-policy", "--log-key", logVkey}, nil)
	if err != nil {
		t.Fatalf("%v %s", err, stderr)
	}
	if !strings.Contains(text, "\nlog "+logVkey+"\n") || !strings.Contains(text, "\ngroup custodians 2 ") || !strings.HasSuffix(text, "\nquorum custodians\n") {
		t.Fatalf("tlog-policy:\n%s", text)
	}
	fromJSON, err1 := audit.ParseWitnessPolicy([]byte(js))
	fromText, err2 := audit.ParseWitnessPolicy([]byte(text))
	if err1 != nil || err2 != nil || fromText.MinCosigners() != 2 || len(fromText.Witnesses) != 3 || len(fromText.Rule.Logs) != 1 {
		t.Fatalf("%v %v %+v", err1, err2, fromText)
	}
	for i, w := range fromJSON.Witnesses {
		if v := fromText.Witnesses[i]; v.Name != w.Name || v.URL != w.URL || v.Verifier.KeyHash() != w.Verifier.KeyHash() {
			t.Errorf("witness %d: %+v, the JSON's %+v", i, v, w)
		}
	}
	if _, _, _, err := runArgs([]string{"roster", "witnesses-file", "--file", fd.path, "--format", "yaml"}, nil); err == nil {
		t.Fatal("--format yaml accepted")
	}
}

// TestWitnessConfigFromDraft: roster witness-config prints the witness
// section a custodian's configuration takes, from the draft's log entry;
// a custodian configuration with it parses, and its log's keys are the
// draft's. A draft without a log is refused.
func TestWitnessConfigFromDraft(t *testing.T) {
	dir := t.TempDir()
	fd := newFoundingDraft(t, dir, true)
	_, stdout, _, err := runArgs([]string{"roster", "witness-config", "--file", fd.path}, nil)
	if err != nil || strings.Count(stdout, "\n") != 1 {
		t.Fatalf("%v %q", err, stdout)
	}
	cfg := fmt.Sprintf(`{"name":"acme-legal","listen":"127.0.0.1:8443","vault":{"addr":"http://127.0.0.1:8200","token_file":"/dev/null"},
		"transit":{"mount":"t","key":"k"},"kv":{"mount":"kv","prefix":"p"},"mediator_token_file":"m","operator_token_file":"o",
		"roster_genesis":"","witness":%s}`, stdout)
	c, err := custodian.ParseConfig([]byte(cfg))
	if err != nil {
		t.Fatalf("the custodian refuses the section: %v", err)
	}
	if l := c.Witness.Logs; len(l) != 1 || l[0].Origin != "mediator.example/audit" || len(l[0].VerifierKeys) != 1 || l[0].VerifierKeys[0] != fd.logVerifier {
		t.Fatalf("logs %+v", l)
	}
	plain := newFoundingDraft(t, t.TempDir(), false)
	if _, _, _, err := runArgs([]string{"roster", "witness-config", "--file", plain.path}, nil); err == nil || !strings.Contains(err.Error(), "names no audit log") {
		t.Fatalf("a draft without a log: %v", err)
	}
}

// TestAuditVerifierKeyFromKeyFile: audit verifier-key prints the
// checkpoint key file's verifier key with no mediator running, and with
// --entry the roster's log entry; without a key file or Vault it says
// what it needs.
func TestAuditVerifierKeyFromKeyFile(t *testing.T) {
	dir := t.TempDir()
	skey, vkey, err := note.GenerateKey(rand.Reader, "mediator.example/audit")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "checkpoint.key")
	os.WriteFile(keyFile, []byte(skey+"\n"), 0o600)
	_, stdout, _, err := runArgs([]string{"audit", "verifier-key", "--checkpoint-key-file", keyFile, "--log-origin", "mediator.example/audit"}, nil)
	if err != nil || stdout != vkey+"\n" {
		t.Fatalf("%v %q, want %q", err, stdout, vkey)
	}
	_, stdout, _, err = runArgs([]string{"audit", "verifier-key", "--entry"},
		map[string]string{"MEDIATOR_CHECKPOINT_KEY_FILE": keyFile, "MEDIATOR_LOG_ORIGIN": "mediator.example/audit"})
	var l roster.AuditLog
	if err != nil || json.Unmarshal([]byte(stdout), &l) != nil || l.Origin != "mediator.example/audit" || len(l.VerifierKeys) != 1 || l.VerifierKeys[0] != vkey {
		t.Fatalf("--entry: %v %s", err, stdout)
	}
	if _, _, _, err := runArgs([]string{"audit", "verifier-key", "--checkpoint-key-file", keyFile}, nil); err == nil {
		t.Fatal("a key named mediator.example/audit was taken as the key of the default origin mediator/audit")
	}
	if _, _, _, err := runArgs([]string{"audit", "verifier-key"}, nil); err == nil || !strings.Contains(err.Error(), "--checkpoint-key-file") {
		t.Fatalf("with neither a key file nor Vault: %v", err)
	}
}

package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/seal"
	"github.com/mediatorhq/mediator/wire"
)

// fakeMediator serves a verified chain of one version and one proposal,
// described as describe says, and records the signatures posted to it.
type fakeMediator struct {
	t        *testing.T
	url      string
	genesis  roster.Roster
	gDigest  string
	chain    []roster.Signed
	next     roster.Roster
	digest   string
	lenaKey  ed25519.PrivateKey
	lenaFile string
	// describe gives the proposal's changes as the mediator tells them.
	describe func(changes []string) []string

	mu     sync.Mutex
	sigs   []roster.Signature
	posted int
}

// custodianKeys makes a custodian's HPKE and signing keys.
func custodianKeys(t *testing.T) (seal.PublicKey, ed25519.PublicKey) {
	t.Helper()
	_, hpkeKey, err := seal.NewKey(seal.KEMX25519)
	if err != nil {
		t.Fatal(err)
	}
	sk, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return hpkeKey, sk
}

// approverKey makes an approver's key file in dir and returns its path and
// key.
func approverKey(t *testing.T, dir, id string) (string, ed25519.PrivateKey) {
	t.Helper()
	file, _, err := approval.NewSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, id+".key")
	if err := os.WriteFile(path, file, 0o600); err != nil {
		t.Fatal(err)
	}
	priv, err := approval.ParseSigningKey(file)
	if err != nil {
		t.Fatal(err)
	}
	return path, priv
}

// newFakeMediator founds a genesis of lena (legal), sam (security) and
// five custodians, and proposes a version 2 that adds kim and gives all
// five custodians other keys.
func newFakeMediator(t *testing.T, describe func([]string) []string) *fakeMediator {
	dir := t.TempDir()
	f := &fakeMediator{t: t, describe: describe}
	var sam, kim ed25519.PrivateKey
	f.lenaFile, f.lenaKey = approverKey(t, dir, "lena")
	_, sam = approverKey(t, dir, "sam")
	_, kim = approverKey(t, dir, "kim")
	pub := func(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }
	f.genesis = roster.Roster{Version: 1, Threshold: 3, Rule: roster.DefaultRule(), Approvers: []roster.Approver{
		{ID: "lena", Roles: []string{"legal"}, PublicKey: pub(f.lenaKey)}, {ID: "sam", Roles: []string{"security"}, PublicKey: pub(sam)}}}
	for i := range 5 {
		h, s := custodianKeys(t)
		f.genesis.Custodians = append(f.genesis.Custodians, roster.Custodian{Name: fmt.Sprintf("custodian-%d", i+1),
			URL: fmt.Sprintf("https://custodian-%d.example/", i+1), HPKEKey: h, SigningKey: s})
	}
	g, err := f.genesis.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	f.gDigest = roster.Digest(g)
	f.chain = []roster.Signed{{Roster: g, Signatures: []roster.Signature{roster.Sign(f.lenaKey, f.gDigest, "lena"), roster.Sign(sam, f.gDigest, "sam")}}}
	if _, err := roster.VerifyChain(f.gDigest, f.chain); err != nil {
		t.Fatal(err)
	}
	f.next = f.genesis
	f.next.Version, f.next.Previous = 2, f.gDigest
	f.next.Approvers = append(append([]roster.Approver(nil), f.genesis.Approvers...), roster.Approver{ID: "kim", Roles: []string{"security"}, PublicKey: pub(kim)})
	f.next.Custodians = append([]roster.Custodian(nil), f.genesis.Custodians...)
	for i := range f.next.Custodians {
		f.next.Custodians[i].HPKEKey, f.next.Custodians[i].SigningKey = custodianKeys(t)
	}
	if f.digest, err = f.next.Digest(); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

// proposal is the proposal as the fake mediator answers it.
func (f *fakeMediator) proposal() wire.RosterProposal {
	f.mu.Lock()
	defer f.mu.Unlock()
	canonical, _ := f.next.Canonical()
	prog, err := roster.Check(&f.genesis, f.next, f.sigs)
	if err != nil {
		f.t.Error(err)
	}
	status := "awaiting_signatures"
	if prog.Complete() {
		status = "adopted"
	}
	return wire.RosterProposal{Digest: f.digest, Version: 2, Previous: f.gDigest, Canonical: canonical, Roster: f.next, ProposedBy: "ada",
		Status: status, Signatures: append([]roster.Signature{}, f.sigs...), Signers: prog.Signers, Possession: prog.Possession,
		Missing: prog.Missing, Changes: f.describe(roster.Changes(&f.genesis, f.next))}
}

func (f *fakeMediator) serve(w http.ResponseWriter, r *http.Request) {
	answer := func(v any) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(v)
	}
	switch {
	case r.Method == "GET" && r.URL.Path == "/v1/whoami":
		answer(wire.Whoami{Subject: "lena", Roles: []string{"approver"}})
	case r.Method == "GET" && r.URL.Path == "/v1/roster":
		answer(wire.RosterChain{Genesis: f.gDigest, Version: 1, Digest: f.gDigest, Chain: f.chain})
	case r.Method == "GET" && r.URL.Path == "/v1/roster/proposals/"+f.digest:
		answer(f.proposal())
	case r.Method == "POST" && r.URL.Path == "/v1/roster/proposals/"+f.digest+"/signatures":
		var b wire.RosterSignature
		json.NewDecoder(r.Body).Decode(&b)
		f.mu.Lock()
		f.posted++
		if ed25519.Verify(f.lenaKey.Public().(ed25519.PublicKey), roster.Message(f.digest, "lena"), b.Signature) {
			f.sigs = append(f.sigs, roster.Signature{ApproverID: "lena", KeyID: approval.KeyID(f.lenaKey.Public().(ed25519.PublicKey)), Signature: b.Signature})
		}
		f.mu.Unlock()
		answer(f.proposal())
	default:
		http.NotFound(w, r)
	}
}

// run runs args in-process against f as lena, with answer typed on a
// terminal when terminal is set.
func (f *fakeMediator) run(terminal bool, answer string, args ...string) (stdout, stderr string, err error) {
	var out, errOut bytes.Buffer
	env := map[string]string{"MEDIATOR_URL": f.url, "MEDIATOR_TOKEN": "lena-token", "MEDIATOR_ROSTER_GENESIS": f.gDigest}
	c := &call{stdout: &out, stderr: &errOut, getenv: func(k string) string { return env[k] }, stdin: strings.NewReader(answer), terminal: terminal}
	err = c.dispatch(context.Background(), commands(), args)
	return out.String(), errOut.String(), err
}

// signed is how many signatures were posted.
func (f *fakeMediator) signed() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.posted
}

// onlyKim is the lie: the mediator says the proposal only adds kim.
func onlyKim([]string) []string { return []string{"adds approver kim"} }

// wantCustodianChanges checks that out names every custodian's old and new
// keys by full fingerprints.
func (f *fakeMediator) wantCustodianChanges(t *testing.T, out string) {
	t.Helper()
	for i, c := range f.next.Custodians {
		old := f.genesis.Custodians[i]
		for _, want := range []string{
			"changes custodian " + c.Name + "'s hpke key: " + old.HPKEKey.Fingerprint() + " → " + c.HPKEKey.Fingerprint(),
			"changes custodian " + c.Name + "'s signing key: " + roster.KeyFingerprint(old.SigningKey) + " → " + roster.KeyFingerprint(c.SigningKey),
		} {
			if !strings.Contains(out, want) {
				t.Errorf("the output lacks %q:\n%s", want, out)
			}
		}
	}
	kim, _ := f.next.Approver("kim")
	if !strings.Contains(out, "adds approver kim: roles security, key "+kim.Fingerprint()) {
		t.Errorf("the output does not name kim's key:\n%s", out)
	}
	if !strings.Contains(out, "threshold: 3 of 5 custodians, unchanged") || !strings.Contains(out, "rule: 2 signers covering legal,security, unchanged") {
		t.Errorf("the output lacks the threshold or the rule:\n%s", out)
	}
}

// TestRosterSignShowsWhatTheBytesSay: a mediator that says a proposal only
// "adds approver kim" while its signed bytes also give every custodian
// other keys. roster sign lists every custodian key change with full
// fingerprints, flags the lie, and signs nothing without a person's yes.
func TestRosterSignShowsWhatTheBytesSay(t *testing.T) {
	const warning = "WARNING: the mediator describes this proposal differently from what its signed bytes say"
	for _, tc := range []struct {
		name     string
		terminal bool
		answer   string
		yes      bool
		signs    bool
	}{
		{"no terminal, no --yes", false, "y\n", false, false},
		{"terminal, no", true, "n\n", false, false},
		{"terminal, enter", true, "\n", false, false},
		{"terminal, yes", true, "y\n", false, true},
		{"no terminal, --yes", false, "", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeMediator(t, onlyKim)
			args := []string{"roster", "sign", f.digest, "--key", f.lenaFile}
			if tc.yes {
				args = append(args, "--yes")
			}
			stdout, stderr, err := f.run(tc.terminal, tc.answer, args...)
			f.wantCustodianChanges(t, stderr)
			if !strings.Contains(stderr, warning) || !strings.Contains(stderr, "the mediator says:\n    adds approver kim\n") ||
				!strings.Contains(stderr, "the mediator does not tell you:\n    adds approver kim: roles security") {
				t.Errorf("the lie is not flagged:\n%s", stderr)
			}
			if strings.Contains(stderr, "  change     adds approver kim\n") {
				t.Errorf("the mediator's description is shown as a change:\n%s", stderr)
			}
			if tc.terminal && !strings.Contains(stderr, "the mediator's account is false (see the WARNING); sign roster version 2") {
				t.Errorf("the question does not say the account is false:\n%s", stderr)
			}
			switch {
			case tc.signs && (err != nil || f.signed() != 1 || !strings.Contains(stdout, "signed roster version 2")):
				t.Fatalf("not signed: %v, %d posted\n%s\n%s", err, f.signed(), stdout, stderr)
			case !tc.signs && (!errors.Is(err, errNotConfirmed) || f.signed() != 0):
				t.Fatalf("signed without a yes: %v, %d posted", err, f.signed())
			}
			if tc.signs && !strings.Contains(stdout, "signed by  lena (signatures checked here)") {
				t.Errorf("the signers are not checked here:\n%s", stdout)
			}
		})
	}
}

// TestRosterSignHonestMediator: where the mediator's description is the
// one worked out here, there is no warning, and the question names the
// version and the key it is signed with.
func TestRosterSignHonestMediator(t *testing.T) {
	f := newFakeMediator(t, func(c []string) []string { return c })
	stdout, stderr, err := f.run(true, "yes\n", "roster", "sign", f.digest, "--key", f.lenaFile)
	if err != nil || f.signed() != 1 {
		t.Fatalf("roster sign: %v, %d posted\n%s\n%s", err, f.signed(), stdout, stderr)
	}
	f.wantCustodianChanges(t, stderr)
	if strings.Contains(stderr, "WARNING") {
		t.Errorf("an honest description is flagged:\n%s", stderr)
	}
	if !strings.Contains(stderr, "sign roster version 2 ("+f.digest+") as lena, with your key in version 1 (toward the quorum)? [y/N]") {
		t.Errorf("the question:\n%s", stderr)
	}
	if !strings.Contains(stderr, "needs      signatures of 2 more distinct approvers of version 1\n") || !strings.Contains(stderr, "kim's signature with their new key") {
		t.Errorf("what adoption needs is not shown:\n%s", stderr)
	}
}

// TestRosterShowProposal: roster show DIGEST prints the changes worked out
// from the signed bytes and exits non-zero when the mediator says
// otherwise; it needs the pinned genesis.
func TestRosterShowProposal(t *testing.T) {
	lying := newFakeMediator(t, onlyKim)
	stdout, _, err := lying.run(false, "", "roster", "show", lying.digest)
	if !errors.Is(err, errMediatorDisagrees) || !strings.Contains(stdout, "WARNING: the mediator describes this proposal differently") {
		t.Fatalf("a lying mediator: %v\n%s", err, stdout)
	}
	lying.wantCustodianChanges(t, stdout)

	honest := newFakeMediator(t, func(c []string) []string { return c })
	stdout, _, err = honest.run(false, "", "roster", "show", honest.digest)
	if err != nil || strings.Contains(stdout, "WARNING") {
		t.Fatalf("an honest mediator: %v\n%s", err, stdout)
	}
	honest.wantCustodianChanges(t, stdout)

	var out, errOut bytes.Buffer
	env := map[string]string{"MEDIATOR_URL": honest.url, "MEDIATOR_TOKEN": "t"}
	c := &call{stdout: &out, stderr: &errOut, getenv: func(k string) string { return env[k] }}
	if err := c.dispatch(context.Background(), commands(), []string{"roster", "show", honest.digest}); err == nil || !strings.Contains(err.Error(), "--genesis") {
		t.Fatalf("roster show DIGEST without a pinned genesis: %v\n%s", err, out.String())
	}
}

// TestRosterSignRefusesOtherBytes: a mediator that serves, for the digest
// asked, the bytes of another roster gets no signature, even with --yes.
func TestRosterSignRefusesOtherBytes(t *testing.T) {
	f := newFakeMediator(t, func(c []string) []string { return c })
	asked := f.digest
	f.next.Threshold = 2 // the bytes served are now another roster's
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.URL.Path = strings.Replace(r.URL.Path, asked, f.digest, 1)
		f.serve(w, r)
	}))
	defer srv.Close()
	var err error
	if f.digest, err = f.next.Digest(); err != nil {
		t.Fatal(err)
	}
	f.url = srv.URL
	_, stderr, err := f.run(false, "", "roster", "sign", asked, "--key", f.lenaFile, "--yes")
	if err == nil || !strings.Contains(err.Error(), "not the roster you named") || f.signed() != 0 {
		t.Fatalf("other bytes: %v, %d posted\n%s", err, f.signed(), stderr)
	}
}

// TestRosterSignFlagsFalseProgress: a mediator that claims signatures it
// does not serve is flagged; the progress shown is the one checked here.
func TestRosterSignFlagsFalseProgress(t *testing.T) {
	f := newFakeMediator(t, func(c []string) []string { return c })
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "GET" && strings.HasPrefix(r.URL.Path, "/v1/roster/proposals/") {
			p := f.proposal()
			p.Signers, p.Missing = []string{"sam"}, []string{"lena's signature"}
			json.NewEncoder(w).Encode(p)
			return
		}
		f.serve(w, r)
	}))
	defer srv.Close()
	f.url = srv.URL
	_, stderr, err := f.run(false, "", "roster", "sign", f.digest, "--key", f.lenaFile)
	if !errors.Is(err, errNotConfirmed) || f.signed() != 0 {
		t.Fatalf("roster sign: %v, %d posted", err, f.signed())
	}
	if !strings.Contains(stderr, "WARNING: the mediator's account of the signatures differs") || !strings.Contains(stderr, "signed by  no one (signatures checked here)") {
		t.Errorf("the false progress is not flagged:\n%s", stderr)
	}
}

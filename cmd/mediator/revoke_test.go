package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/seal"
	"github.com/mediatorhq/mediator/wire"
)

// revokeWorld is a mediator holding one pending request filed by olga, and
// five custodians, each answering a revocation as its mode says: "ok"
// records it (checking that it verifies from the genesis and with olga's
// key, over the request's bytes), "refuse" answers 422
// revocation_not_officer, "down" 503.
type revokeWorld struct {
	t         *testing.T
	url       string
	genesis   string
	chain     []roster.Signed
	req       approval.Request
	canonical []byte
	digest    string
	olgaPub   ed25519.PublicKey
	olgaFile  string
	lenaFile  string
	custodian []string // URLs

	mu       sync.Mutex
	modes    []string
	recorded map[int]bool
	revoked  bool
	posted   int // revocations posted to the mediator
}

func newRevokeWorld(t *testing.T) *revokeWorld {
	dir := t.TempDir()
	w := &revokeWorld{t: t, modes: []string{"ok", "ok", "ok", "refuse", "down"}, recorded: map[int]bool{}}
	var olga, lena, sam ed25519.PrivateKey
	w.olgaFile, olga = approverKey(t, dir, "olga")
	w.lenaFile, lena = approverKey(t, dir, "lena")
	_, sam = approverKey(t, dir, "sam")
	w.olgaPub = olga.Public().(ed25519.PublicKey)
	pub := func(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }
	g := roster.Roster{Version: 1, Threshold: 3, Rule: roster.DefaultRule(), Approvers: []roster.Approver{
		{ID: "lena", Roles: []string{"legal"}, PublicKey: pub(lena)}, {ID: "sam", Roles: []string{"security"}, PublicKey: pub(sam)},
		{ID: "olga", Roles: []string{roster.RoleOfficer}, PublicKey: w.olgaPub}}}
	for i := range 5 {
		srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) { w.custodianServe(i, rw, r) }))
		t.Cleanup(srv.Close)
		w.custodian = append(w.custodian, srv.URL)
		h, s := custodianKeys(t)
		g.Custodians = append(g.Custodians, roster.Custodian{Name: fmt.Sprintf("custodian-%d", i+1), URL: srv.URL, HPKEKey: h, SigningKey: s})
	}
	c, err := g.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	w.genesis = roster.Digest(c)
	w.chain = []roster.Signed{{Roster: c, Signatures: []roster.Signature{roster.Sign(lena, w.genesis, "lena"), roster.Sign(sam, w.genesis, "sam"),
		roster.Sign(olga, w.genesis, "olga")}}}
	if _, err := roster.VerifyChain(w.genesis, w.chain); err != nil {
		t.Fatal(err)
	}
	_, recipient, err := seal.NewKey(seal.KEMX25519)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	w.req = approval.Request{ID: uuid.NewString(), Requester: "olga", CaseID: "case-17", LegalBasis: "court_order", WarrantRef: "W 1",
		Jurisdiction: "US", Justification: "See the case file.", Recipient: recipient, CreatedAt: now, ExpiresAt: now.Add(time.Hour),
		Scope: approval.Scope{ConversationIDs: []string{"conv-a"}, From: now.Add(-time.Hour), To: now}}
	if w.canonical, err = w.req.Canonical(); err != nil {
		t.Fatal(err)
	}
	w.digest = approval.Digest(w.canonical)
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) { w.mediatorServe(rw, r, olga) }))
	t.Cleanup(srv.Close)
	w.url = srv.URL
	return w
}

func answerJSON(rw http.ResponseWriter, status int, v any) {
	rw.Header().Set("Content-Type", "application/json")
	rw.WriteHeader(status)
	json.NewEncoder(rw).Encode(v)
}

func answerError(rw http.ResponseWriter, status int, code string) {
	answerJSON(rw, status, map[string]any{"error": map[string]any{"code": code, "message": code, "details": []any{}}})
}

func (w *revokeWorld) mediatorServe(rw http.ResponseWriter, r *http.Request, olga ed25519.PrivateKey) {
	w.mu.Lock()
	defer w.mu.Unlock()
	status := "pending"
	if w.revoked {
		status = "revoked"
	}
	path := "/v1/access-requests/" + w.req.ID
	switch {
	case r.Method == "GET" && r.URL.Path == "/v1/roster":
		answerJSON(rw, 200, wire.RosterChain{Genesis: w.genesis, Version: 1, Digest: w.genesis, Chain: w.chain})
	case r.Method == "GET" && r.URL.Path == path:
		answerJSON(rw, 200, wire.Request{ID: w.req.ID, Status: status, Requester: "olga", Digest: w.digest, Canonical: w.canonical,
			OfficerSignature: approval.SignRequest(olga, w.digest)})
	case r.Method == "POST" && r.URL.Path == path+"/revoke":
		w.posted++
		if w.revoked {
			answerError(rw, 409, "request_final")
			return
		}
		w.revoked = true
		answerJSON(rw, 200, wire.Request{ID: w.req.ID, Status: "revoked"})
	default:
		http.NotFound(rw, r)
	}
}

func (w *revokeWorld) custodianServe(i int, rw http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/revocations" || r.Header.Get("Authorization") != "" {
		w.t.Errorf("delivery: %s %s with Authorization %q", r.Method, r.URL.Path, r.Header.Get("Authorization"))
	}
	var rev wire.Revocation
	if err := json.NewDecoder(r.Body).Decode(&rev); err != nil {
		w.t.Error(err)
	}
	if _, err := roster.VerifyChain(w.genesis, rev.Roster); err != nil || !bytes.Equal(rev.Canonical, w.canonical) || rev.OfficerID != "olga" ||
		!approval.VerifyRevocation(w.olgaPub, w.req.ID, w.digest, rev.Signature) {
		w.t.Errorf("custodian-%d was delivered a revocation that does not verify: %v", i+1, err)
		answerError(rw, 422, "revocation_bad_signature")
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	switch w.modes[i] {
	case "refuse":
		answerError(rw, 422, "revocation_not_officer")
	case "down":
		answerError(rw, 503, "dependency_unavailable")
	default:
		status := "recorded"
		if w.recorded[i] {
			status = "already_recorded"
		}
		w.recorded[i] = true
		answerJSON(rw, 200, wire.RevocationRecorded{Custodian: fmt.Sprintf("custodian-%d", i+1), Status: status, RequestID: w.req.ID,
			Digest: w.digest, OfficerID: "olga", RecordedAt: time.Now().UTC(), RosterVersion: 1})
	}
}

// counts are how many revocations were posted to the mediator, and how
// many custodians hold one.
func (w *revokeWorld) counts() (posted, recorded int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.posted, len(w.recorded)
}

// run runs args in-process as olga, with env over the mediator's URL,
// olga's token and the pinned genesis.
func (w *revokeWorld) run(env map[string]string, args ...string) (stdout, stderr string, err error) {
	all := map[string]string{"MEDIATOR_URL": w.url, "MEDIATOR_TOKEN": "olga-token", "MEDIATOR_ROSTER_GENESIS": w.genesis}
	for k, v := range env {
		all[k] = v
	}
	_, stdout, stderr, err = runArgs(args, all)
	return stdout, stderr, err
}

// TestRevokeDeliversToCustodians: request revoke --key verifies the
// request, revokes it at the mediator and posts the officer's signed
// revocation, with no credential and the verified chain, to every
// custodian of the roster: one line per custodian, a WARNING with the
// code for each that did not record it, exit 1 until all did; run again,
// it is already_recorded where it was and recorded at the rest, the
// mediator's earlier revocation is no error, and it exits 0. Another
// key, or no pinned genesis, is refused before anything is revoked;
// without a key only the mediator is told, and the tool says so. It
// shows the request first and revokes nothing without a terminal and
// without --yes, nor with --dry-run.
func TestRevokeDeliversToCustodians(t *testing.T) {
	w := newRevokeWorld(t)
	id := w.req.ID

	_, _, err := w.run(map[string]string{"MEDIATOR_ROSTER_GENESIS": ""}, "request", "revoke", id, "--key", w.olgaFile)
	if err == nil || !strings.Contains(err.Error(), "--genesis") {
		t.Errorf("no genesis: %v", err)
	}
	_, _, err = w.run(nil, "request", "revoke", id, "--key", w.lenaFile)
	if err == nil || !strings.Contains(err.Error(), "only the officer who filed a request revokes it") {
		t.Errorf("lena's key: %v", err)
	}
	// Shown, not confirmed: without a terminal and without --yes, or
	// with --dry-run, nothing is revoked anywhere.
	stdout, stderr, err := w.run(nil, "request", "revoke", id, "--key", w.olgaFile)
	if !errors.Is(err, errNotConfirmed) || !strings.Contains(stderr, "request "+id+" (case case-17, digest "+w.digest+"), filed and signed by you") {
		t.Errorf("no terminal, no --yes: %v\n%s", err, stderr)
	}
	if stdout, _, err = w.run(nil, "request", "revoke", id, "--key", w.olgaFile, "--dry-run"); err != nil || !strings.Contains(stdout, "revoking it is final") {
		t.Errorf("--dry-run: %v %q", err, stdout)
	}
	if _, _, err = w.run(nil, "request", "revoke", id, "--dry-run"); err != nil {
		t.Errorf("--dry-run without a key: %v", err)
	}
	if posted, recorded := w.counts(); posted != 0 || recorded != 0 {
		t.Fatalf("a refused run revoked %d times at the mediator, at %d custodians", posted, recorded)
	}

	stdout, stderr, err = w.run(nil, "request", "revoke", id, "--key", w.olgaFile, "--yes")
	if exitStatus(err) != 1 {
		t.Errorf("3 of 5 custodians: exit %d (%v), want 1", exitStatus(err), err)
	}
	if posted, _ := w.counts(); stdout != "request "+id+" is revoked\n" || posted != 1 {
		t.Errorf("the mediator's revocation: %q, posted %d", stdout, posted)
	}
	for i := range 3 {
		want := fmt.Sprintf("  recorded         custodian custodian-%d (%s) holds your revocation of request %s", i+1, w.custodian[i], id)
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	for _, want := range []string{
		"WARNING: custodian custodian-4 (" + w.custodian[3] + ") did not record your revocation",
		"revocation_not_officer",
		"WARNING: custodian custodian-5 (" + w.custodian[4] + ") did not record your revocation",
		"WARNING: your revocation is on record at 3 of 5 custodians",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}

	// The custodians come round; the run again reaches them all.
	w.mu.Lock()
	w.modes = []string{"ok", "ok", "ok", "ok", "ok"}
	w.mu.Unlock()
	stdout, stderr, err = w.run(nil, "request", "revoke", id, "--key", w.olgaFile, "--yes")
	if err != nil || strings.Contains(stderr, "WARNING") {
		t.Errorf("the run again: %v\n%s", err, stderr)
	}
	if stdout != "request "+id+" is revoked (before this run)\n" {
		t.Errorf("the run again, at the mediator: %q", stdout)
	}
	if !strings.Contains(stderr, "already_recorded custodian custodian-1") || !strings.Contains(stderr, "recorded         custodian custodian-5") {
		t.Errorf("the run again, at the custodians:\n%s", stderr)
	}

	// Without a key: the mediator alone, and the tool says so.
	w.mu.Lock()
	w.revoked = false
	w.mu.Unlock()
	if _, _, err = w.run(nil, "request", "revoke", id); !errors.Is(err, errNotConfirmed) {
		t.Errorf("without a key, no terminal, no --yes: %v", err)
	}
	stdout, stderr, err = w.run(nil, "request", "revoke", id, "--yes")
	if err != nil || stdout != "request "+id+" is revoked\n" || !strings.Contains(stderr, "the custodians were not told") {
		t.Errorf("without a key: %v %q %q", err, stdout, stderr)
	}
}

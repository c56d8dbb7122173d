package client

import (
	"context"
	"crypto/ed25519"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/seal"
	"github.com/mediatorhq/mediator/wire"
)

// testRoster is a roster version with approvers lena and sam and the
// officer olga, and olga's signing key.
func testRoster(t testing.TB) (roster.Roster, ed25519.PrivateKey) {
	t.Helper()
	r := roster.Roster{Version: 1, Threshold: 2, Rule: roster.DefaultRule()}
	var olga ed25519.PrivateKey
	for _, p := range [][2]string{{"lena", "legal"}, {"sam", "security"}, {"olga", roster.RoleOfficer}} {
		pub, priv, _ := ed25519.GenerateKey(nil)
		r.Approvers = append(r.Approvers, roster.Approver{ID: p[0], Roles: []string{p[1]}, PublicKey: pub})
		if p[0] == "olga" {
			olga = priv
		}
	}
	return r, olga
}

// shownRequest is a request olga filed and signed, as the mediator shows
// it, and the request itself.
func shownRequest(t testing.TB, olga ed25519.PrivateKey) (wire.Request, approval.Request) {
	t.Helper()
	at := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	_, pub, err := seal.NewKey(seal.KEMX25519)
	if err != nil {
		t.Fatal(err)
	}
	r := approval.Request{ID: "7c3f8a9e-0000-4000-8000-000000000001", Requester: "olga", CaseID: "c-1", LegalBasis: "court_order",
		WarrantRef: "W 1", Jurisdiction: "US", Justification: "See the file.",
		Scope:     approval.Scope{ConversationIDs: []string{"conv-a"}, From: at.Add(-time.Hour), To: at},
		Recipient: pub, CreatedAt: at, ExpiresAt: at.Add(72 * time.Hour)}
	c, err := r.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	d := approval.Digest(c)
	return wire.Request{ID: r.ID, Digest: d, Canonical: c, OfficerSignature: approval.SignRequest(olga, d),
		Scope: wire.Scope{ConversationIDs: []string{"conv-a"}}}, r
}

// TestCheckRequest: an approver's client signs only a request whose
// canonical bytes parse, name the id asked for, and hash to the digest
// shown; the fields it shows come from those bytes, not from the
// mediator's other fields.
func TestCheckRequest(t *testing.T) {
	cur, olga := testRoster(t)
	shown, want := shownRequest(t, olga)
	shown.Scope.ConversationIDs = []string{"conv-secret"} // the mediator's columns lie
	r, err := CheckRequest(shown, want.ID, cur)
	if err != nil {
		t.Fatal(err)
	}
	if r.Request.Scope.ConversationIDs[0] != "conv-a" || r.Request.Recipient.Fingerprint() != want.Recipient.Fingerprint() || r.Officer.ID != "olga" {
		t.Fatalf("review shows %+v", r.Request)
	}
	bad := shown
	bad.Digest = approval.Digest([]byte("other"))
	if _, err := CheckRequest(bad, want.ID, cur); err != ErrDigestMismatch {
		t.Fatalf("another digest: %v", err)
	}
	if _, err := CheckRequest(shown, "another-id", cur); err != ErrDigestMismatch {
		t.Fatalf("another id: %v", err)
	}
	bad.Canonical = append([]byte(" "), shown.Canonical...)
	bad.Digest = approval.Digest(bad.Canonical)
	if _, err := CheckRequest(bad, want.ID, cur); err == nil {
		t.Fatal("a non-canonical spelling was accepted")
	}
}

// TestCheckRequestNeedsTheOfficersSignature plays a host that edits what
// an officer filed: a consistent request whose scope or recipient key was
// changed no longer carries the officer's signature, and one filed in an
// officer's name without their key, or by someone who is not an officer,
// is refused before anything is signed.
func TestCheckRequestNeedsTheOfficersSignature(t *testing.T) {
	cur, olga := testRoster(t)
	shown, want := shownRequest(t, olga)
	_, hostKey, _ := seal.NewKey(seal.KEMX25519)
	swapped := want
	swapped.Recipient = hostKey
	for name, req := range map[string]approval.Request{"recipient swapped": swapped} {
		c, _ := req.Canonical()
		bad := shown
		bad.Canonical, bad.Digest = c, approval.Digest(c)
		if _, err := CheckRequest(bad, want.ID, cur); !errors.Is(err, ErrNotOfficerSigned) {
			t.Fatalf("%s: %v", name, err)
		}
	}
	scoped := shown
	scoped.Canonical = []byte(strings.Replace(string(shown.Canonical), "conv-a", "conv-b", 1))
	scoped.Digest = approval.Digest(scoped.Canonical)
	if _, err := CheckRequest(scoped, want.ID, cur); !errors.Is(err, ErrNotOfficerSigned) {
		t.Fatalf("scope edited: %v", err)
	}
	_, hostSigner, _ := ed25519.GenerateKey(nil)
	forged := shown
	forged.OfficerSignature = approval.SignRequest(hostSigner, shown.Digest)
	if _, err := CheckRequest(forged, want.ID, cur); !errors.Is(err, ErrNotOfficerSigned) {
		t.Fatalf("signed with a key not olga's: %v", err)
	}
	unsigned := shown
	unsigned.OfficerSignature = nil
	if _, err := CheckRequest(unsigned, want.ID, cur); !errors.Is(err, ErrNotOfficerSigned) {
		t.Fatalf("unsigned: %v", err)
	}
	byApprover := want
	byApprover.Requester = "lena"
	c, _ := byApprover.Canonical()
	asLena := wire.Request{ID: want.ID, Canonical: c, Digest: approval.Digest(c)}
	asLena.OfficerSignature = approval.SignRequest(olga, asLena.Digest)
	if _, err := CheckRequest(asLena, want.ID, cur); !errors.Is(err, ErrNotOfficerSigned) {
		t.Fatalf("filed as an approver: %v", err)
	}
}

// TestErrorAnswers: an error envelope becomes an *Error with its status,
// code and the policy's reasons in its text; anything else is named
// unexpected.
func TestErrorAnswers(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(401)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(403)
		w.Write([]byte(`{"error":{"code":"policy_denied","message":"denied","details":[{"reasons":["no legal approval"]}]}}`))
	}))
	defer srv.Close()
	c, err := New(srv.URL, "tok", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Release(context.Background(), "x")
	if !IsCode(err, "policy_denied") || !strings.Contains(err.Error(), "no legal approval") {
		t.Fatalf("denial: %v", err)
	}
	c, _ = New(srv.URL, "wrong", nil)
	if _, err := c.Whoami(context.Background()); !IsCode(err, "unexpected_answer") {
		t.Fatalf("a bare 401: %v", err)
	}
	if _, err := New("ftp://x", "tok", nil); err == nil {
		t.Fatal("a non-HTTP URL was accepted")
	}
	if _, err := New(srv.URL, "", nil); err == nil {
		t.Fatal("an empty token was accepted")
	}
}

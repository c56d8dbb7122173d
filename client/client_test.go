package client

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/seal"
	"github.com/mediatorhq/mediator/wire"
)

func shownRequest(t *testing.T) (wire.Request, approval.Request) {
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
	return wire.Request{ID: r.ID, Digest: approval.Digest(c), Canonical: c,
		Scope: wire.Scope{ConversationIDs: []string{"conv-a"}}}, r
}

// TestCheckRequest: an approver's client signs only a request whose
// canonical bytes parse, name the id asked for, and hash to the digest
// shown; the fields it shows come from those bytes, not from the
// mediator's other fields.
func TestCheckRequest(t *testing.T) {
	shown, want := shownRequest(t)
	shown.Scope.ConversationIDs = []string{"conv-secret"} // the mediator's columns lie
	r, err := CheckRequest(shown, want.ID, "lena")
	if err != nil {
		t.Fatal(err)
	}
	if r.Request.Scope.ConversationIDs[0] != "conv-a" || r.Request.Recipient.Fingerprint() != want.Recipient.Fingerprint() || r.Approver != "lena" {
		t.Fatalf("review shows %+v", r.Request)
	}
	bad := shown
	bad.Digest = approval.Digest([]byte("other"))
	if _, err := CheckRequest(bad, want.ID, "lena"); err != ErrDigestMismatch {
		t.Fatalf("another digest: %v", err)
	}
	if _, err := CheckRequest(shown, "another-id", "lena"); err != ErrDigestMismatch {
		t.Fatalf("another id: %v", err)
	}
	bad = shown
	bad.Canonical = []byte(strings.Replace(string(shown.Canonical), "conv-a", "conv-b", 1))
	bad.Digest = approval.Digest(bad.Canonical)
	if r, err := CheckRequest(bad, want.ID, "lena"); err != nil || r.Request.Scope.ConversationIDs[0] != "conv-b" {
		t.Fatalf("a consistent request naming conv-b must show conv-b: %+v %v", r, err)
	}
	bad.Canonical = append([]byte(" "), shown.Canonical...)
	bad.Digest = approval.Digest(bad.Canonical)
	if _, err := CheckRequest(bad, want.ID, "lena"); err == nil {
		t.Fatal("a non-canonical spelling was accepted")
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

package client

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/pseudonym"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/seal"
	"github.com/mediatorhq/mediator/wire"
)

// approvalWorld is a mediator as an approver's tool sees it: a roster
// chain of versions, each adopted by the approvers of the one before,
// and one request olga filed and signed.
type approvalWorld struct {
	srv     *httptest.Server
	genesis string
	id      string
	lena    ed25519.PrivateKey
}

// newApprovalWorld serves a chain of versions versions, each listing
// approvers approvers, three of them legal and security, olga the
// officer, and five custodians.
func newApprovalWorld(tb testing.TB, versions, approvers int) approvalWorld {
	tb.Helper()
	keys := map[string]ed25519.PrivateKey{}
	var entries []roster.Approver
	for i := range approvers {
		id, role := fmt.Sprintf("approver-%03d", i), "legal"
		if i%2 == 1 {
			role = "security"
		}
		pub, priv, _ := ed25519.GenerateKey(nil)
		keys[id] = priv
		entries = append(entries, roster.Approver{ID: id, Roles: []string{role}, PublicKey: pub})
	}
	pub, olga, _ := ed25519.GenerateKey(nil)
	keys["olga"] = olga
	entries = append(entries, roster.Approver{ID: "olga", Roles: []string{roster.RoleOfficer}, PublicKey: pub})
	r := roster.Roster{Version: 1, Approvers: entries, Threshold: 3, Rule: roster.DefaultRule()}
	for i := range 5 {
		_, hk, _ := seal.NewKey(seal.KEMX25519)
		sk, _, _ := ed25519.GenerateKey(nil)
		r.Custodians = append(r.Custodians, roster.Custodian{Name: fmt.Sprintf("custodian-%d", i+1), URL: "https://c.example/", HPKEKey: hk, SigningKey: sk})
	}
	var chain []roster.Signed
	for v := 1; v <= versions; v++ {
		if v > 1 {
			r.Version, r.Previous = uint64(v), roster.Digest(chain[v-2].Roster)
			r.Threshold = 2 + v%2 // each version changes something
		}
		c, err := r.Canonical()
		if err != nil {
			tb.Fatal(err)
		}
		s := roster.Signed{Roster: c}
		signers := []string{"approver-000", "approver-001"}
		if v == 1 {
			signers = append(signers, "olga")
			for i := 2; i < approvers; i++ {
				signers = append(signers, fmt.Sprintf("approver-%03d", i))
			}
		}
		for _, id := range signers {
			s.Signatures = append(s.Signatures, roster.Sign(keys[id], roster.Digest(c), id))
		}
		chain = append(chain, s)
	}
	shown, req := shownRequest(tb, olga)
	chainBody, _ := json.Marshal(wire.RosterChain{Genesis: roster.Digest(chain[0].Roster), Chain: chain})
	reqBody, _ := json.Marshal(shown)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/v1/roster":
			w.Write(chainBody)
		case "/v1/access-requests/" + req.ID:
			w.Write(reqBody)
		case "/v1/access-requests/" + req.ID + "/approvals":
			w.WriteHeader(201)
			w.Write([]byte(`{}`))
		default:
			http.NotFound(w, r)
		}
	}))
	tb.Cleanup(srv.Close)
	return approvalWorld{srv: srv, genesis: roster.Digest(chain[0].Roster), id: req.ID, lena: keys["approver-000"]}
}

// TestReviewVerifiesTheChainAndTheOfficer: Review takes the roster only
// as verified from the pinned genesis, and the request only as signed by
// an officer of its last version.
func TestReviewVerifiesTheChainAndTheOfficer(t *testing.T) {
	w := newApprovalWorld(t, 3, 4)
	c, _ := New(w.srv.URL, "tok", nil)
	c.UsePseudonyms(localPseudonyms())
	r, err := c.Review(context.Background(), w.genesis, w.id)
	if err != nil {
		t.Fatal(err)
	}
	if r.Roster.Version != 3 || r.Officer.ID != "olga" || r.Digest == "" {
		t.Fatalf("review: version %d, officer %q", r.Roster.Version, r.Officer.ID)
	}
	if _, err := c.Review(context.Background(), "sha256:"+fmt.Sprintf("%064x", 1), w.id); err == nil {
		t.Fatal("a chain from another genesis was accepted")
	}
}

// BenchmarkApprove is an approver's approval as `mediator request
// approve` makes it, roster verification included: fetch and verify a
// chain of 5 versions (20 approvers and an officer, 5 custodians) from
// the pinned genesis, fetch the request, check its digest and its
// officer's signature, and sign and post the vote, over HTTP to a local
// server.
func BenchmarkApprove(b *testing.B) {
	w := newApprovalWorld(b, 5, 20)
	ctx := context.Background()
	for b.Loop() {
		c, _ := New(w.srv.URL, "tok", nil)
		c.UsePseudonyms(localPseudonyms())
		r, err := c.Review(ctx, w.genesis, w.id)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Sign(ctx, r, approval.Approve, "approver-000", w.lena); err != nil {
			b.Fatal(err)
		}
	}
}

// TestFileRequestScopes: the scope names conversations given by their
// real ids by their pseudonyms, computed here, and HMAC-era ids as they
// are; an id that could not be of the HMAC era is refused before
// anything is sent.
func TestFileRequestScopes(t *testing.T) {
	var posted []byte
	var calls int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		switch r.URL.Path {
		case "/v1/whoami":
			io.WriteString(w, `{"subject":"olga","roles":["officer"]}`)
		case "/v1/access-requests":
			posted, _ = io.ReadAll(r.Body)
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, `{"id":"x","status":"pending","digest":"sha256:00"}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	c, _ := New(srv.URL, "tok", nil)
	p := localPseudonyms()
	c.UsePseudonyms(p)
	_, priv, _ := ed25519.GenerateKey(nil)
	d := approval.Request{CaseID: "c-1", LegalBasis: "court_order", WarrantRef: "W-1", Jurisdiction: "US", Justification: "See the file.",
		Scope:     approval.Scope{ConversationIDs: []string{"14155550100@s.whatsapp.net"}, From: time.Now().Add(-time.Hour), To: time.Now()},
		ExpiresAt: time.Now().Add(time.Hour)}
	if _, err := c.FileRequestWithLegacy(context.Background(), priv, d, []string{"+1 415 555 0100"}); !errors.Is(err, ErrNotLegacy) || calls != 0 {
		t.Fatalf("a phone number as a legacy id: %v after %d calls", err, calls)
	}
	if _, err := c.FileRequestWithLegacy(context.Background(), priv, d, []string{"conv-2025-legacy"}); !errors.Is(err, ErrStoredMismatch) {
		t.Fatalf("filing: %v", err)
	}
	want, _ := p.Pseudonyms(context.Background(), pseudonym.KindConversation, []string{"14155550100@s.whatsapp.net"})
	var body struct {
		Scope struct {
			ConversationIDs []string `json:"conversation_ids"`
		} `json:"scope"`
	}
	if err := json.Unmarshal(posted, &body); err != nil || !slices.Equal(body.Scope.ConversationIDs, []string{want[0], "conv-2025-legacy"}) ||
		strings.Contains(string(posted), "14155550100") {
		t.Fatalf("the scope sent: %s (%v)", posted, err)
	}
}

package escrow_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mediatorhq/mediator/escrow"
	"github.com/mediatorhq/mediator/seal"
	"github.com/mediatorhq/mediator/shares"
	"github.com/mediatorhq/mediator/wire"
)

// chunkedCustodian is a custodian's release route as the mediator sees
// it: it answers at most limit shares per call (the rest too_many_in_call)
// with receipts signed by its key, and refuses the release from call
// refuseAt on (0: never). It records the size of every call.
type chunkedCustodian struct {
	name      string
	index     int
	key       ed25519.PrivateKey
	limit     int
	refuseAt  int
	ask       escrow.ReleaseAsk
	byID      map[string]escrow.Escrow
	mu        sync.Mutex
	callSizes []int
}

func (c *chunkedCustodian) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var ev wire.ReleaseEvidence
	if err := json.NewDecoder(r.Body).Decode(&ev); err != nil {
		wire.WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	c.mu.Lock()
	c.callSizes = append(c.callSizes, len(ev.Shares))
	call := len(c.callSizes)
	c.mu.Unlock()
	if c.refuseAt > 0 && call >= c.refuseAt {
		wire.WriteError(w, http.StatusForbidden, "custodian_refused", "refused",
			map[string]any{"reasons": []string{"not this time"}, "policy_revision": "r1"})
		return
	}
	ans := wire.ReleaseAnswer{PolicyRevision: "r1"}
	for i, ref := range ev.Shares {
		if i >= c.limit {
			ans.Shares = append(ans.Shares, wire.CustodianShare{EscrowID: ref.EscrowID,
				Error: &wire.ItemError{Code: "too_many_in_call", Message: "ask again"}})
			continue
		}
		e := c.byID[ref.EscrowID]
		sealed := []byte("sealed " + ref.EscrowID)
		signed, err := shares.Sign(c.key, shares.Receipt{Kind: shares.ReceiptRelease, Custodian: c.name, EscrowID: e.EscrowID,
			ConversationID: e.ConversationID, KeyID: e.KeyID, Index: c.index, Commitment: e.KeyCommitment,
			SealedSHA256: shares.SealedHash(sealed), At: "2026-12-03T00:00:00Z", RequestID: c.ask.RequestID,
			RequestDigest: c.ask.RequestDigest, RecipientKey: c.ask.RecipientKey, PolicyRevision: "r1"})
		if err != nil {
			wire.WriteError(w, http.StatusInternalServerError, "internal", err.Error())
			return
		}
		ans.Shares = append(ans.Shares, wire.CustodianShare{EscrowID: ref.EscrowID, Index: c.index, Sealed: sealed, Receipt: &signed})
	}
	wire.WriteJSON(w, http.StatusOK, ans)
}

// chunkWorld is n escrows of one conversation held by two custodians
// behind httptest servers, and an escrow service asking in chunks of
// chunk.
func chunkWorld(t *testing.T, n, chunk int, cs ...*chunkedCustodian) (*escrow.Service, escrow.ReleaseAsk, []escrow.Escrow) {
	t.Helper()
	ask := escrow.ReleaseAsk{RequestID: uuid.NewString(), RequestDigest: "sha256:" + fmt.Sprintf("%064x", 1), RecipientKey: "fp"}
	set := shares.Set{Threshold: 2}
	var remotes []*escrow.Remote
	for i, c := range cs {
		pub, priv, _ := ed25519.GenerateKey(rand.Reader)
		_, hpkeKey, err := seal.NewKey(seal.KEMX25519)
		if err != nil {
			t.Fatal(err)
		}
		c.index, c.key, c.ask, c.byID = i+1, priv, ask, map[string]escrow.Escrow{}
		set.Custodians = append(set.Custodians, shares.Custodian{Name: c.name, HPKEKey: hpkeKey, SigningKey: pub})
		srv := httptest.NewServer(c)
		t.Cleanup(srv.Close)
		remotes = append(remotes, escrow.NewRemote(c.name, srv.URL, "token", srv.Client()))
	}
	var escrows []escrow.Escrow
	for k := range n {
		e := escrow.Escrow{EscrowID: uuid.NewString(), ConversationID: "conv-a", KeyID: fmt.Sprintf("k%d", k),
			KeyCommitment: "sha256:" + fmt.Sprintf("%064x", k), Threshold: 2}
		for _, c := range cs {
			e.Shares = append(e.Shares, shares.SignedReceipt{Receipt: shares.Receipt{Custodian: c.name, Locator: "deposits/" + uuid.NewString()}})
		}
		for _, c := range cs {
			c.byID[e.EscrowID] = e
		}
		escrows = append(escrows, e)
	}
	svc, err := escrow.New(escrow.Config{Set: set, Remotes: remotes, ReleaseChunk: chunk})
	if err != nil {
		t.Fatal(err)
	}
	return svc, ask, escrows
}

// TestReleaseAsksInChunks: the mediator never asks a custodian for more
// than its chunk in one call; shares a custodian leaves unanswered as too
// many for one call are asked again, in calls no larger than it answered;
// a custodian that refuses is asked no further, and what it gave before
// its refusal is kept in its answer.
func TestReleaseAsksInChunks(t *testing.T) {
	small := &chunkedCustodian{name: "small", limit: 3}                    // answers 3 a call
	refuser := &chunkedCustodian{name: "refuser", limit: 100, refuseAt: 2} // refuses its second call
	svc, ask, escrows := chunkWorld(t, 7, 5, small, refuser)
	answers := svc.Release(context.Background(), ask, escrows, nil)

	if fmt.Sprint(small.callSizes) != "[5 3 1]" {
		t.Errorf("calls to the custodian answering 3 a call: %v, want [5 3 1]", small.callSizes)
	}
	if a := answers[0]; len(a.Shares) != 7 || len(a.Items) != 0 || a.Refusal != nil || a.Err != nil {
		t.Errorf("its answer: %d shares, items %v, refusal %v, err %v", len(a.Shares), a.Items, a.Refusal, a.Err)
	}
	if fmt.Sprint(refuser.callSizes) != "[5 2]" {
		t.Errorf("calls to the refusing custodian: %v, want [5 2] and no more", refuser.callSizes)
	}
	if a := answers[1]; len(a.Shares) != 5 || a.Refusal == nil || a.Refusal.Custodian != "refuser" {
		t.Errorf("its answer: %d shares (want the first chunk's 5), refusal %v", len(a.Shares), a.Refusal)
	}

	// Asked again for only what is missing: one call of the two left.
	refuser.refuseAt, refuser.callSizes = 0, nil
	have := map[string]map[string]bool{}
	for id := range answers[1].Shares {
		have[id] = map[string]bool{"refuser": true, "small": true}
	}
	for _, e := range escrows {
		if have[e.EscrowID] == nil {
			have[e.EscrowID] = map[string]bool{"small": true}
		}
	}
	answers = svc.Release(context.Background(), ask, escrows, have)
	if fmt.Sprint(refuser.callSizes) != "[2]" || len(answers[1].Shares) != 2 || answers[1].Refusal != nil {
		t.Errorf("asked again: calls %v, %d shares, refusal %v", refuser.callSizes, len(answers[1].Shares), answers[1].Refusal)
	}
}

// TestReleaseStopsWhenItsTimeRunsOut: with ReleaseAsk.Until passed, each
// custodian is asked for its first chunk only; the rest are deferred, not
// refused nor unavailable, and asked for by the next call.
func TestReleaseStopsWhenItsTimeRunsOut(t *testing.T) {
	a := &chunkedCustodian{name: "a", limit: 100}
	b := &chunkedCustodian{name: "b", limit: 100}
	svc, ask, escrows := chunkWorld(t, 12, 5, a, b)
	ask.Until = time.Now().Add(-time.Second)
	answers := svc.Release(context.Background(), ask, escrows, nil)
	for i, c := range []*chunkedCustodian{a, b} {
		if fmt.Sprint(c.callSizes) != "[5]" {
			t.Errorf("custodian %s asked in calls %v, want one of 5", c.name, c.callSizes)
		}
		ans := answers[i]
		deferred := 0
		for _, it := range ans.Items {
			if it.Code == escrow.ItemDeferred {
				deferred++
			}
		}
		if len(ans.Shares) != 5 || deferred != 7 || len(ans.Items) != 7 || ans.Refusal != nil || ans.Err != nil {
			t.Errorf("custodian %s: %d shares, %d deferred of %d items, refusal %v, err %v", c.name, len(ans.Shares), deferred, len(ans.Items), ans.Refusal, ans.Err)
		}
	}
	// With time, the rest.
	have := map[string]map[string]bool{}
	for id := range answers[0].Shares {
		have[id] = map[string]bool{"a": true, "b": true}
	}
	a.callSizes, b.callSizes = nil, nil
	ask.Until = time.Time{}
	answers = svc.Release(context.Background(), ask, escrows, have)
	if fmt.Sprint(a.callSizes) != "[5 2]" || len(answers[0].Shares) != 7 || len(answers[0].Items) != 0 {
		t.Errorf("asked again: calls %v, %d shares, items %v", a.callSizes, len(answers[0].Shares), answers[0].Items)
	}
}

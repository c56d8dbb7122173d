package client

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/mediatorhq/mediator/seal"
	"github.com/mediatorhq/mediator/shares"
	"github.com/mediatorhq/mediator/wire"
)

// testCustodians are n custodians of a set of threshold k, with their
// receipt-signing keys.
type testCustodians struct {
	set   shares.Set
	signs []ed25519.PrivateKey
	hpke  [][]byte // private key files
}

func newTestCustodians(t testing.TB, n, k int) testCustodians {
	t.Helper()
	tc := testCustodians{set: shares.Set{Threshold: k}}
	for i := range n {
		file, pub, err := seal.NewKey(seal.KEMX25519)
		if err != nil {
			t.Fatal(err)
		}
		spub, spriv, _ := ed25519.GenerateKey(rand.Reader)
		tc.set.Custodians = append(tc.set.Custodians, shares.Custodian{Name: "custodian-" + string(rune('1'+i)), HPKEKey: pub, SigningKey: spub})
		tc.signs = append(tc.signs, spriv)
		tc.hpke = append(tc.hpke, file)
	}
	return tc
}

// depositReceipts are the receipts the custodians sign for a deposit.
func (tc testCustodians) depositReceipts(t testing.TB, escrowID string, req wire.DepositRequest) []shares.SignedReceipt {
	t.Helper()
	out := make([]shares.SignedReceipt, len(req.Shares))
	for i, sh := range req.Shares {
		r, err := shares.Sign(tc.signs[i], shares.Receipt{Kind: shares.ReceiptDeposit, Custodian: sh.Custodian, EscrowID: escrowID,
			ConversationID: req.ConversationID, KeyID: req.KeyID, Index: sh.Index, Commitment: req.Commitment,
			SealedSHA256: shares.SealedHash(sh.Sealed), At: "2026-12-03T07:00:00.000000Z", Locator: "loc"})
		if err != nil {
			t.Fatal(err)
		}
		out[i] = r
	}
	return out
}

// TestDepositNeedsEveryReceipt plays the mediator, honest and lying, to
// a depositor: the deposit succeeds only with a valid receipt from every
// custodian of the set it sealed to, for a key escrowed before (200) as
// for a new one (201).
func TestDepositNeedsEveryReceipt(t *testing.T) {
	tc := newTestCustodians(t, 3, 2)
	// escrowID is the id the first deposit chose and sealed its shares
	// for, which the honest mediator keeps.
	var escrowID string
	// answer turns the deposit received into the mediator's answer; the
	// honest mediator keeps the first deposit's receipts and shows them
	// again for the same key.
	var mu sync.Mutex
	var stored []shares.SignedReceipt
	var answer func(req wire.DepositRequest) (int, wire.DepositResponse)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req wire.DepositRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			t.Error(err)
		}
		mu.Lock()
		status, ans := answer(req)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(ans)
	}))
	defer srv.Close()
	c, err := New(srv.URL, "token", nil)
	c.UsePseudonyms(localPseudonyms())
	if err != nil {
		t.Fatal(err)
	}
	sp, err := shares.NewSplitter(tc.set)
	if err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 32)
	rand.Read(key)
	deposit := func() (Deposited, error) {
		return c.DepositTo(context.Background(), sp, "sha256:pinned", "conv-a", "e1", key)
	}
	response := func(req wire.DepositRequest, receipts []shares.SignedReceipt) wire.DepositResponse {
		return wire.DepositResponse{EscrowID: escrowID, Threshold: 2, Shares: 3, Custodians: []string{"custodian-1", "custodian-2", "custodian-3"},
			KeyCommitment: req.Commitment, Receipts: receipts}
	}
	honest := func(req wire.DepositRequest) (int, wire.DepositResponse) {
		if stored != nil {
			return http.StatusOK, response(req, stored)
		}
		if req.EscrowID == "" || req.DepositedAt == "" {
			t.Errorf("a v2 deposit without its binding: %q %q", req.EscrowID, req.DepositedAt)
		}
		escrowID = req.EscrowID
		stored = tc.depositReceipts(t, escrowID, req)
		return http.StatusCreated, response(req, stored)
	}

	answer = honest
	d, err := deposit()
	if err != nil || !d.Created || len(d.Receipts) != 3 {
		t.Fatalf("an honest new deposit: %+v %v", d, err)
	}
	d, err = deposit()
	if err != nil || d.Created || len(d.Receipts) != 3 {
		t.Fatalf("an honest answer for a key escrowed before: %+v %v", d, err)
	}

	otherKey := make([]byte, 32)
	rand.Read(otherKey)
	_, wrongSigner, _ := ed25519.GenerateKey(rand.Reader)
	lies := map[string]func(req wire.DepositRequest) (int, wire.DepositResponse){
		"200 without receipts": func(req wire.DepositRequest) (int, wire.DepositResponse) {
			return http.StatusOK, response(req, nil)
		},
		"201 without receipts": func(req wire.DepositRequest) (int, wire.DepositResponse) {
			return http.StatusCreated, response(req, nil)
		},
		"200 with two receipts of three": func(req wire.DepositRequest) (int, wire.DepositResponse) {
			return http.StatusOK, response(req, stored[:2])
		},
		"200 with receipts for another commitment": func(req wire.DepositRequest) (int, wire.DepositResponse) {
			other := req
			other.Commitment = shares.Commitment("conv-a", "e1", otherKey)
			return http.StatusOK, response(req, tc.depositReceipts(t, escrowID, other))
		},
		"200 with receipts of another escrow": func(req wire.DepositRequest) (int, wire.DepositResponse) {
			return http.StatusOK, response(req, tc.depositReceipts(t, "0b0e1f3c-0000-4000-8000-000000000002", req))
		},
		"200 with receipts signed by the wrong key": func(req wire.DepositRequest) (int, wire.DepositResponse) {
			rs := tc.depositReceipts(t, escrowID, req)
			rs[1], _ = shares.Sign(wrongSigner, rs[1].Receipt)
			return http.StatusOK, response(req, rs)
		},
		"200 with receipts in another order": func(req wire.DepositRequest) (int, wire.DepositResponse) {
			return http.StatusOK, response(req, []shares.SignedReceipt{stored[1], stored[0], stored[2]})
		},
		"201 with receipts for other shares": func(req wire.DepositRequest) (int, wire.DepositResponse) {
			return http.StatusCreated, response(req, stored)
		},
		"201 under another escrow id than the shares were sealed for": func(req wire.DepositRequest) (int, wire.DepositResponse) {
			other := "0b0e1f3c-0000-4000-8000-000000000003"
			ans := response(req, tc.depositReceipts(t, other, req))
			ans.EscrowID = other
			return http.StatusCreated, ans
		},
		"201 with another commitment recorded": func(req wire.DepositRequest) (int, wire.DepositResponse) {
			ans := response(req, tc.depositReceipts(t, req.EscrowID, req))
			ans.EscrowID = req.EscrowID
			ans.KeyCommitment = shares.Commitment("conv-a", "e1", otherKey)
			return http.StatusCreated, ans
		},
	}
	for name, lie := range lies {
		answer = lie
		if _, err := deposit(); !errors.Is(err, ErrReceipt) || !strings.Contains(err.Error(), "not proven stored") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

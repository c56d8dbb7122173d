package escrow_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mediatorhq/mediator/escrow"
	"github.com/mediatorhq/mediator/pseudonym"
	"github.com/mediatorhq/mediator/seal"
	"github.com/mediatorhq/mediator/shares"
	"github.com/mediatorhq/mediator/wire"
)

// noRows holds no escrow: every deposit is new, none is recorded.
type noRows struct{ escrow.DepositRows }

func (noRows) ByKeyID(context.Context, string, string, string) (escrow.Escrow, error) {
	return escrow.Escrow{}, escrow.ErrNotFound
}

// TestCustodianFailuresNameTheCustodian: a deposit that custodians fail
// is ErrUnavailable, and FailedCustodians names each that failed, in set
// order, with a reason that says what it answered (a refusal of the call,
// a failure, a refusal of its share, a failure to store it), cut short
// and printable, or that it answered unexpectedly; never the token, the sealed share, nor a
// transport error's address.
func TestCustodianFailuresNameTheCustodian(t *testing.T) {
	long := strings.Repeat("x", 500)
	answers := []http.HandlerFunc{
		func(w http.ResponseWriter, r *http.Request) { // stores
			var in wire.StoreShares
			json.NewDecoder(r.Body).Decode(&in)
			ans := wire.StoreAnswer{}
			for _, sh := range in.Shares {
				ans.Results = append(ans.Results, wire.StoreResult{Stored: &wire.StoredShare{Locator: "d/" + sh.EscrowID, SealedSHA256: shares.SealedHash(sh.Sealed)}})
			}
			if r.URL.Path == "/v1/shares/abort" {
				wire.WriteJSON(w, 200, wire.RefAnswer{Results: []wire.RefResult{{Outcome: "aborted"}}})
				return
			}
			wire.WriteJSON(w, 200, ans)
		},
		func(w http.ResponseWriter, r *http.Request) { // refuses the call
			wire.WriteError(w, 401, "unauthenticated", "no\nsuch token\x00 "+long)
		},
		func(w http.ResponseWriter, r *http.Request) { // fails
			wire.WriteError(w, 503, "dependency_unavailable", "custodian-3: store failed; nothing was changed")
		},
		func(w http.ResponseWriter, r *http.Request) { // refuses its share, for a reason of its own
			wire.WriteJSON(w, 200, wire.StoreAnswer{Results: []wire.StoreResult{{Error: &wire.ItemError{Code: "hold_pending", Message: "not now"}}}})
		},
		func(w http.ResponseWriter, r *http.Request) { // answers nonsense
			w.Write([]byte("<html>"))
		},
		func(w http.ResponseWriter, r *http.Request) { // cannot store its share (its key is down)
			wire.WriteJSON(w, 200, wire.StoreAnswer{Results: []wire.StoreResult{{Error: &wire.ItemError{Code: "unavailable", Message: "the custodian's key is unavailable"}}}})
		},
	}
	set := shares.Set{Threshold: 3}
	var remotes []*escrow.Remote
	for i, h := range answers {
		name := "custodian-" + string(rune('1'+i))
		_, hpkeKey, err := seal.NewKey(seal.KEMX25519)
		if err != nil {
			t.Fatal(err)
		}
		pub, _, _ := ed25519.GenerateKey(nil)
		set.Custodians = append(set.Custodians, shares.Custodian{Name: name, HPKEKey: hpkeKey, SigningKey: pub})
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		remotes = append(remotes, escrow.NewRemote(name, srv.URL, "secret-token", nil))
	}
	svc, err := escrow.New(escrow.Config{Set: set, Remotes: remotes, Deposits: noRows{}})
	if err != nil {
		t.Fatal(err)
	}
	digest, _ := set.Digest()
	req := escrow.DepositRequest{ConversationID: pseudonym.Synthetic("conv-a"), KeyID: "k", Commitment: "sha256:" + strings.Repeat("ab", 32),
		CustodianSet: digest, Threshold: 3, Depositor: "gateway-1"}
	for i, c := range set.Custodians {
		req.Shares = append(req.Shares, shares.SealedShare{Custodian: c.Name, Index: i + 1, Sealed: []byte("SEALED-SHARE")})
	}
	_, _, err = svc.Deposit(context.Background(), req)
	if !errors.Is(err, escrow.ErrUnavailable) {
		t.Fatalf("deposit: %v", err)
	}
	failed := escrow.FailedCustodians(err)
	want := []struct {
		name, reason string
		refused      bool
	}{
		{"custodian-2", "refused: 401 unauthenticated: no such token  " + long[:200-len("401 unauthenticated: no such token  ")] + "…", true},
		{"custodian-3", "failed: 503 dependency_unavailable: custodian-3: store failed; nothing was changed", false},
		{"custodian-4", "refused to store its share: hold_pending: not now", true},
		{"custodian-5", "answered unexpectedly", false},
		{"custodian-6", "failed to store its share: unavailable: the custodian's key is unavailable", false},
	}
	if len(failed) != len(want) {
		t.Fatalf("failed: %+v", failed)
	}
	for i, w := range want {
		f := failed[i]
		if f.Custodian != w.name || f.Reason != w.reason || f.Refused != w.refused || f.Public() != "custodian "+w.name+" "+w.reason {
			t.Errorf("failure %d: %s %q refused %v, want %s %q %v", i, f.Custodian, f.Reason, f.Refused, w.name, w.reason, w.refused)
		}
		for _, secret := range []string{"secret-token", "SEALED-SHARE", "127.0.0.1"} {
			if strings.Contains(f.Reason, secret) {
				t.Errorf("%s's reason holds %q: %s", f.Custodian, secret, f.Reason)
			}
		}
	}
}

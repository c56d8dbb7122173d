package client

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/mediatorhq/mediator/shares"
)

// TestCustodianStatusIsVerified: a status is taken only signed by the
// custodian's key in the roster the caller verified, and only as the
// answer to the question asked; a relay that re-signs or answers for
// another key is refused.
func TestCustodianStatusIsVerified(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	var answer func() shares.SignedInventory
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(answer())
	}))
	defer srv.Close()
	sign := func(key ed25519.PrivateKey, inv shares.Inventory) shares.SignedInventory {
		s, err := shares.SignInventory(key, inv)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	kept := shares.Inventory{Custodian: "custodian-1", At: "2026-12-03T10:00:00.000000Z", ConversationID: "conv-a", KeyID: "k1",
		Shares: []shares.ShareState{{EscrowID: "e", Index: 1, SealedSHA256: "ab", State: shares.StateKept}}}
	ask := func() (shares.Inventory, error) {
		return CustodianStatus(context.Background(), nil, srv.URL, "custodian-1", pub, "conv-a", "k1")
	}

	answer = func() shares.SignedInventory { return sign(priv, kept) }
	if inv, err := ask(); err != nil || len(inv.Shares) != 1 || inv.Shares[0].State != shares.StateKept {
		t.Fatalf("an honest status: %+v %v", inv, err)
	}
	for name, lie := range map[string]func() shares.SignedInventory{
		"signed by another key": func() shares.SignedInventory { return sign(other, kept) },
		"a share added after signing": func() shares.SignedInventory {
			s := sign(priv, kept)
			s.Inventory.Shares = append(s.Inventory.Shares, shares.ShareState{EscrowID: "f", State: shares.StateKept})
			return s
		},
		"another key's status": func() shares.SignedInventory {
			k := kept
			k.KeyID = "k2"
			return sign(priv, k)
		},
		"another custodian's status": func() shares.SignedInventory {
			k := kept
			k.Custodian = "custodian-2"
			return sign(priv, k)
		},
	} {
		answer = lie
		if _, err := ask(); !errors.Is(err, ErrInventory) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

//go:build cgo

package escrow

import (
	"bytes"
	"context"
	"testing"

	"github.com/ThalesGroup/crypto11"
	vaultapi "github.com/hashicorp/vault/api"

	"github.com/mediatorhq/mediator/audit"
	vaultsetup "github.com/mediatorhq/mediator/deploy/vault"
	"github.com/mediatorhq/mediator/dev/servers"
)

// TestSoftHSMCustodian: one custodian wraps with a non-extractable AES key
// on a SoftHSM2 token; a key rebuilds with that custodian's share among
// the K, and a share moved to another conversation does not unwrap. After
// the HSM key is rotated, rewrap moves the share to the new key, and the
// key rebuilds with the old HSM key gone from the configuration.
func TestSoftHSMCustodian(t *testing.T) {
	ctx := context.Background()
	module, err := servers.SoftHSMToken(ctx, env.Log, t.TempDir(), "mediator-test", "4711-pin")
	if err != nil {
		t.Fatal(err)
	}
	newHSMKey := func(id byte, label string) {
		t.Helper()
		c11, err := crypto11.Configure(&crypto11.Config{Path: module, TokenLabel: "mediator-test", Pin: "4711-pin"})
		if err != nil {
			t.Fatal(err)
		}
		defer c11.Close()
		if _, err := c11.GenerateSecretKeyWithLabel([]byte{id}, []byte(label), 256, crypto11.CipherAES); err != nil {
			t.Fatal(err)
		}
	}
	newHSMKey(1, "custodian-hsm")
	hsm, err := OpenPKCS11(PKCS11Config{Module: module, TokenLabel: "mediator-test", PIN: "4711-pin", KeyLabel: "custodian-hsm"})
	if err != nil {
		t.Fatal(err)
	}

	v := bootstrapped(t, env.Vault)
	hsmStore := KVStore{Client: v.service, Mount: vaultsetup.KVMount, Prefix: vaultsetup.SharePrefix + "/hsm"}
	withHSM := func(c *vaultapi.Client, w Wrapper) []Custodian {
		return append(custodiansOn(c, 1, 4), Custodian{Name: "hsm", Wrapper: w,
			Store: KVStore{Client: c, Mount: hsmStore.Mount, Prefix: hsmStore.Prefix}})
	}
	f := newFixture(t, withHSM(v.service, hsm))
	key := newKey(t)
	rec, _, err := f.svc.Deposit(ctx, DepositRequest{ConversationID: "hsm-conv", KeyID: "k", Key: bytes.Clone(key)})
	if err != nil {
		t.Fatal(err)
	}
	// Leave only custodians 3, 4 and hsm: destroy 1 and 2.
	for _, i := range []int{1, 2} {
		c := custodiansOn(v.admin, i, i)[0]
		c.Store.Destroy(ctx, rec.EscrowID)
	}
	got, _, err := f.svc.Reconstruct(ctx, rec.EscrowID, "d")
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("reconstruct with the HSM share: %v", err)
	}
	wrapped, err := hsm.Wrap(ctx, aad("a", "b"), []byte("share"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hsm.Unwrap(ctx, aad("other", "b"), wrapped); err == nil {
		t.Fatal("an HSM share unwrapped under another conversation's context")
	}
	if bytes.Contains(wrapped, []byte("share")) {
		t.Fatal("the wrapped share contains the share")
	}
	hsm.Close()

	// Rotate: a new key on the token becomes current, the old one stays
	// configured as previous until the operator's rewrap has run.
	newHSMKey(2, "custodian-hsm-2")
	rotated, err := OpenPKCS11(PKCS11Config{Module: module, TokenLabel: "mediator-test", PIN: "4711-pin",
		KeyLabel: "custodian-hsm-2", PreviousKeyLabels: []string{"custodian-hsm"}})
	if err != nil {
		t.Fatal(err)
	}
	op, err := New(Config{Custodians: withHSM(v.admin, rotated), Threshold: 3, Rows: NewPGRows(f.pool, audit.NewStore(f.pool))})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := op.Rewrap(ctx, map[string]bool{"hsm": true})
	if err != nil || rep.Rewrapped != 1 || len(rep.Failed) != 0 {
		t.Fatalf("rewrap: %+v %v", rep, err)
	}
	if rep, err := op.Rewrap(ctx, map[string]bool{"hsm": true}); err != nil || rep.Rewrapped != 0 || rep.Unchanged != 1 {
		t.Fatalf("second rewrap: %+v %v", rep, err)
	}
	entry, err := hsmStore.Get(ctx, rec.EscrowID)
	if err != nil || !bytes.HasPrefix(entry["hsm"], []byte("p11:v2:custodian-hsm-2:")) {
		t.Fatalf("HSM share not moved to the new key: %.30s %v", entry["hsm"], err)
	}
	rotated.Close()
	// The old key is no longer configured: the share still unwraps.
	current, err := OpenPKCS11(PKCS11Config{Module: module, TokenLabel: "mediator-test", PIN: "4711-pin", KeyLabel: "custodian-hsm-2"})
	if err != nil {
		t.Fatal(err)
	}
	defer current.Close()
	after, err := New(Config{Custodians: withHSM(v.service, current), Threshold: 3, Rows: NewPGRows(f.pool, audit.NewStore(f.pool))})
	if err != nil {
		t.Fatal(err)
	}
	got, _, err = after.Reconstruct(ctx, rec.EscrowID, "d")
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("reconstruct with the rewrapped HSM share: %v", err)
	}
	if _, err := OpenPKCS11(PKCS11Config{Module: module, TokenLabel: "mediator-test", PIN: "4711-pin", KeyLabel: "bad:label"}); err == nil {
		t.Fatal("a key label with ':' was accepted")
	}
}

//go:build cgo

package custodian_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ThalesGroup/crypto11"
	vaultapi "github.com/hashicorp/vault/api"

	"github.com/mediatorhq/mediator/custodian"
	vaultsetup "github.com/mediatorhq/mediator/deploy/vault"
	"github.com/mediatorhq/mediator/dev"
	"github.com/mediatorhq/mediator/dev/servers"
	"github.com/mediatorhq/mediator/wire"
)

// TestPKCS11Custodian: custodian-5 keeps its private keys and shares under
// a non-extractable AES key on a SoftHSM2 token. It stores and releases
// like the others; after the HSM key is rotated, rewrap moves everything to
// the new key, and with the old key gone from its configuration it still
// starts and releases.
func TestPKCS11Custodian(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	module, err := servers.SoftHSMToken(ctx, env.Log, dir, "custodian-5", "4711-pin")
	if err != nil {
		t.Fatal(err)
	}
	newHSMKey := func(id byte, label string) {
		t.Helper()
		c11, err := crypto11.Configure(&crypto11.Config{Path: module, TokenLabel: "custodian-5", Pin: "4711-pin"})
		if err != nil {
			t.Fatal(err)
		}
		defer c11.Close()
		if _, err := c11.GenerateSecretKeyWithLabel([]byte{id}, []byte(label), 256, crypto11.CipherAES); err != nil {
			t.Fatal(err)
		}
	}
	newHSMKey(1, "custodian-hsm")
	pin := filepath.Join(dir, "pin")
	os.WriteFile(pin, []byte("4711-pin\n"), 0o600)
	hsm := &custodian.PKCS11File{Module: module, TokenLabel: "custodian-5", KeyLabel: "custodian-hsm", PINFile: pin}
	f := newFixture(t, dev.CustodianOptions{PKCS11: map[int]*custodian.PKCS11File{5: hsm}})

	// Its identity is wrapped by the HSM, not by Transit.
	admin, _ := vaultapi.NewClient(&vaultapi.Config{Address: env.Vault.Addr})
	admin.SetToken(env.Vault.Token)
	sec, err := admin.KVv2(vaultsetup.KVMount).Get(ctx, f.set.Custodians[4].Config.KV.Prefix+"/identity")
	if err != nil || !strings.HasPrefix(sec.Data["hpke_wrapped"].(string), "p11:v2:custodian-hsm:") {
		t.Fatalf("HSM custodian identity: %v %v", sec, err)
	}

	id, receipts := f.deposit(t, "conv-hsm", "e1", bytes.Repeat([]byte{5}, 32))
	release := func() *wire.ItemError {
		t.Helper()
		now := time.Now()
		canonical, approvals := f.request(t, []string{"conv-hsm"}, now.Add(-time.Hour), now.Add(time.Hour), "lena", "sam")
		ans, err := f.remotes[4].Release(ctx, wire.ReleaseEvidence{Roster: f.chain, Canonical: canonical, OfficerSignature: f.sig(canonical), Approvals: approvals, Shares: ref(id, receipts, 4)})
		if err != nil {
			t.Fatal(err)
		}
		return ans.Shares[0].Error
	}
	if e := release(); e != nil {
		t.Fatalf("release from the HSM custodian: %+v", e)
	}

	// Rotate: a new key becomes current, the old one stays as previous
	// until rewrap has run.
	newHSMKey(2, "custodian-hsm-2")
	f.set.Stop(4)
	f.set.Custodians[4].Config.PKCS11 = &custodian.PKCS11File{Module: module, TokenLabel: "custodian-5", KeyLabel: "custodian-hsm-2",
		PreviousKeyLabels: []string{"custodian-hsm"}, PINFile: pin}
	f.set.Run(4)
	ans, err := f.set.Running[4].Rewrap(ctx)
	if err != nil || ans.Rewrapped != 2 || len(ans.Failed) != 0 { // the identity and the one share
		t.Fatalf("rewrap: %+v %v", ans, err)
	}
	f.set.Stop(4)
	f.set.Custodians[4].Config.PKCS11 = &custodian.PKCS11File{Module: module, TokenLabel: "custodian-5", KeyLabel: "custodian-hsm-2", PINFile: pin}
	f.set.Run(4)
	if e := release(); e != nil {
		t.Fatalf("release after the rotation: %+v", e)
	}
}

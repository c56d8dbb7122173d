//go:build cgo

package custodian_test

import (
	"bytes"
	"context"
	"crypto/rand"
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

// TestPKCS11InitMakesTheKey: `custodian init`'s first step makes the
// wrapping key on an empty SoftHSM2 token — generated there, AES-256,
// sensitive, never extractable, for encryption and decryption only — and
// uses it when run again; the custodian then makes its identity under it
// with a Vault AppRole that has no Transit path at all. A key with the
// label that is extractable, or two of them, are refused.
func TestPKCS11InitMakesTheKey(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	const token, pin = "init-token", "2718-pin"
	module, err := servers.SoftHSMToken(ctx, env.Log, dir, token, pin)
	if err != nil {
		t.Fatal(err)
	}
	admin, _ := vaultapi.NewClient(&vaultapi.Config{Address: env.Vault.Addr})
	admin.SetToken(env.Vault.Token)
	name := "hsm-init-" + strings.ToLower(rand.Text()[:8])
	setup, err := vaultsetup.BootstrapHSMCustodian(ctx, admin, name)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"pin": pin, "secret-id": setup.SecretID, "mediator-token": rand.Text(), "operator-token": rand.Text()}
	for f, v := range files {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := custodian.Config{Name: name, Listen: "127.0.0.1:0",
		Vault:             custodian.VaultLogin{Addr: env.Vault.Addr, RoleID: setup.RoleID, SecretIDFile: filepath.Join(dir, "secret-id")},
		PKCS11:            &custodian.PKCS11File{Module: module, TokenLabel: token, KeyLabel: "wrap-1", PINFile: filepath.Join(dir, "pin")},
		KV:                custodian.KVConfig{Mount: vaultsetup.KVMount, Prefix: setup.KVPrefix},
		MediatorTokenFile: filepath.Join(dir, "mediator-token"), OperatorTokenFile: filepath.Join(dir, "operator-token")}

	if created, err := custodian.InitPKCS11Key(cfg); err != nil || !created {
		t.Fatalf("first init: created %v, %v", created, err)
	}
	c11, err := crypto11.Configure(&crypto11.Config{Path: module, TokenLabel: token, Pin: pin})
	if err != nil {
		t.Fatal(err)
	}
	defer c11.Close()
	keys, err := c11.FindKeys(nil, []byte("wrap-1"))
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys labelled wrap-1: %d, %v", len(keys), err)
	}
	if v, err := c11.GetAttribute(keys[0], crypto11.CkaValue); err == nil {
		t.Fatalf("the key's value could be read: %d bytes", len(v.Value))
	}
	attrs, err := c11.GetAttributes(keys[0], []crypto11.AttributeType{crypto11.CkaValueLen, crypto11.CkaToken, crypto11.CkaPrivate,
		crypto11.CkaSensitive, crypto11.CkaAlwaysSensitive, crypto11.CkaExtractable, crypto11.CkaNeverExtractable, crypto11.CkaEncrypt,
		crypto11.CkaDecrypt, crypto11.CkaWrap, crypto11.CkaUnwrap, crypto11.CkaSign, crypto11.CkaDerive})
	if err != nil {
		t.Fatal(err)
	}
	if v := attrs[crypto11.CkaValueLen].Value; len(v) != 8 || v[0] != 32 {
		t.Errorf("CKA_VALUE_LEN = %v, want 32", v)
	}
	for a, want := range map[crypto11.AttributeType]bool{crypto11.CkaToken: true, crypto11.CkaPrivate: true, crypto11.CkaSensitive: true,
		crypto11.CkaAlwaysSensitive: true, crypto11.CkaExtractable: false, crypto11.CkaNeverExtractable: true, crypto11.CkaEncrypt: true,
		crypto11.CkaDecrypt: true, crypto11.CkaWrap: false, crypto11.CkaUnwrap: false, crypto11.CkaSign: false, crypto11.CkaDerive: false} {
		if got := attrs[a].Value; len(got) != 1 || (got[0] != 0) != want {
			t.Errorf("attribute %#x = %v, want %v", a, got, want)
		}
	}

	if created, err := custodian.InitPKCS11Key(cfg); err != nil || created {
		t.Fatalf("second init: created %v, %v", created, err)
	}
	info, err := custodian.Init(ctx, cfg, nil)
	if err != nil {
		t.Fatalf("init under the HSM key, with no Transit in the policy: %v", err)
	}
	sec, err := admin.KVv2(vaultsetup.KVMount).Get(ctx, setup.KVPrefix+"/identity")
	if err != nil || !strings.HasPrefix(sec.Data["hpke_wrapped"].(string), "p11:v2:wrap-1:") {
		t.Fatalf("identity: %v %v", sec, err)
	}
	if again, err := custodian.Init(ctx, cfg, nil); err != nil || !bytes.Equal(again.SigningKey, info.SigningKey) {
		t.Fatalf("init again: %v, same key %v", err, bytes.Equal(again.SigningKey, info.SigningKey))
	}

	// A key someone made extractable, and a label on two keys, are refused.
	extractable, _ := crypto11.NewAttributeSetWithIDAndLabel([]byte("x"), []byte("loose"))
	extractable.Set(crypto11.CkaExtractable, true)
	extractable.Set(crypto11.CkaSensitive, false)
	if _, err := c11.GenerateSecretKeyWithAttributes(extractable, 256, crypto11.CipherAES); err != nil {
		t.Fatal(err)
	}
	if _, err := c11.GenerateSecretKeyWithLabel([]byte("y"), []byte("wrap-1"), 256, crypto11.CipherAES); err != nil {
		t.Fatal(err)
	}
	for label, want := range map[string]string{"loose": "is not sensitive, is extractable", "wrap-1": "holds 2 keys"} {
		bad := cfg
		p := *cfg.PKCS11
		p.KeyLabel = label
		bad.PKCS11 = &p
		if _, err := custodian.InitPKCS11Key(bad); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("key %s: %v, want %q", label, err, want)
		}
	}
}

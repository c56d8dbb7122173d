package vaultclient

import (
	"context"
	"strings"
	"testing"

	vaultapi "github.com/hashicorp/vault/api"
	"golang.org/x/mod/sumdb/note"

	vaultsetup "github.com/mediatorhq/mediator/deploy/vault"
	"github.com/mediatorhq/mediator/test/harness"
)

var env *harness.Env

func TestMain(m *testing.M) { harness.Main(m, &env) }

// serviceClient bootstraps the shared Vault and logs in as the service.
func serviceClient(t *testing.T) (*vaultapi.Client, *vaultapi.Client) {
	t.Helper()
	ctx := context.Background()
	admin, err := vaultapi.NewClient(&vaultapi.Config{Address: env.Vault.Addr})
	if err != nil {
		t.Fatal(err)
	}
	admin.SetToken(env.Vault.Token)
	creds, err := vaultsetup.Bootstrap(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Connect(ctx, env.Log, Config{Addr: env.Vault.Addr, RoleID: creds.RoleID, SecretID: creds.SecretID})
	if err != nil {
		t.Fatal(err)
	}
	return admin, c
}

func TestTransitSignerSignsVerifiableNotes(t *testing.T) {
	_, c := serviceClient(t)
	s, err := NewTransitSigner(context.Background(), c, vaultsetup.TransitMount, vaultsetup.CheckpointKey, "mediator.test/log")
	if err != nil {
		t.Fatal(err)
	}
	signed, err := note.Sign(&note.Note{Text: "mediator.test/log\n1\nAAAA\n"}, s)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(s.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(signed, note.VerifierList(v)); err != nil {
		t.Fatalf("Vault-signed note does not verify: %v", err)
	}
	// The service may not export the signing key.
	if _, err := c.Logical().Read(vaultsetup.TransitMount + "/export/signing-key/" + vaultsetup.CheckpointKey); err == nil {
		t.Fatal("the service token can export the checkpoint key")
	}
}

func TestPseudonymKeysFollowRotation(t *testing.T) {
	admin, c := serviceClient(t)
	ctx := context.Background()
	k1, err := NewPseudonymKeys(c, vaultsetup.TransitMount, vaultsetup.PseudonymKey).Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(k1.Key) < 32 || k1.Version < 1 {
		t.Fatalf("key = version %d, %d bytes", k1.Version, len(k1.Key))
	}
	// Only an operator may rotate.
	if _, err := c.Logical().Write(vaultsetup.TransitMount+"/keys/"+vaultsetup.PseudonymKey+"/rotate", nil); err == nil {
		t.Fatal("the service token can rotate the pseudonym key")
	}
	if _, err := admin.Logical().Write(vaultsetup.TransitMount+"/keys/"+vaultsetup.PseudonymKey+"/rotate", nil); err != nil {
		t.Fatal(err)
	}
	k2, err := NewPseudonymKeys(c, vaultsetup.TransitMount, vaultsetup.PseudonymKey).Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if k2.Version != k1.Version+1 || string(k2.Key) == string(k1.Key) {
		t.Fatalf("rotation not picked up: v%d -> v%d", k1.Version, k2.Version)
	}
}

func TestConnectValidatesCredentials(t *testing.T) {
	ctx := context.Background()
	for _, c := range []Config{
		{},
		{Addr: "http://127.0.0.1:1"},
		{Addr: "http://127.0.0.1:1", Token: "t", RoleID: "r", SecretID: "s"},
		{Addr: "http://127.0.0.1:1", RoleID: "r"},
	} {
		if _, err := Connect(ctx, env.Log, c); err == nil {
			t.Errorf("%+v accepted", c)
		} else if strings.Contains(err.Error(), "secret") && c.SecretID != "" && strings.Contains(err.Error(), c.SecretID+"\"") {
			t.Errorf("error echoes the secret id: %v", err)
		}
	}
}

package vaultclient

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/prometheus/client_golang/prometheus"
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
	// After a rotation, a new signer signs with the new version and still
	// names the old version's verifier key, so earlier checkpoints verify.
	admin, _ := serviceClient(t)
	if _, err := admin.Logical().Write(vaultsetup.TransitMount+"/keys/"+vaultsetup.CheckpointKey+"/rotate", nil); err != nil {
		t.Fatal(err)
	}
	s2, err := NewTransitSigner(context.Background(), c, vaultsetup.TransitMount, vaultsetup.CheckpointKey, "mediator.test/log")
	if err != nil {
		t.Fatal(err)
	}
	if s2.VerifierKey() == s.VerifierKey() || !slices.Contains(s2.PastVerifierKeys(), s.VerifierKey()) {
		t.Fatalf("after rotation: verifier %s, past %v; the old one was %s", s2.VerifierKey(), s2.PastVerifierKeys(), s.VerifierKey())
	}
}

// TestServiceTokenExportsNoKey plays whoever holds the mediator's Vault
// token: after the bootstrap there is no pseudonymization key to take,
// and the token may export no Transit key at all, the HMAC era's
// "mediator-pseudonym" included should an operator create it again.
func TestServiceTokenExportsNoKey(t *testing.T) {
	admin, c := serviceClient(t)
	ctx := context.Background()
	keys, err := admin.Logical().ListWithContext(ctx, vaultsetup.TransitMount+"/keys")
	if err != nil {
		t.Fatal(err)
	}
	if keys != nil && slices.Contains(keys.Data["keys"].([]any), any("mediator-pseudonym")) {
		t.Fatal("the bootstrap still makes the HMAC pseudonym key")
	}
	if _, err := admin.Logical().WriteWithContext(ctx, vaultsetup.TransitMount+"/keys/mediator-pseudonym", map[string]any{"type": "aes256-gcm96", "exportable": true}); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"export/hmac-key/mediator-pseudonym/latest", "export/encryption-key/mediator-pseudonym/latest", "export/signing-key/" + vaultsetup.CheckpointKey} {
		if sec, err := c.Logical().ReadWithContext(ctx, vaultsetup.TransitMount+"/"+path); err == nil && sec != nil {
			t.Fatalf("the service token read %s", path)
		}
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

// TestMetricsTimeEveryCallWithoutSecrets: calls are timed by server and
// operation, failures counted, and no label carries a token or anything of
// the path past the mount and endpoint.
func TestMetricsTimeEveryCallWithoutSecrets(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	c, err := Connect(ctx, env.Log, Config{Addr: env.Vault.Addr, Token: env.Vault.Token, Metrics: NewMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	if err := Ready(ctx, c); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Logical().WriteWithContext(ctx, "no-such-mount/data/escrow-id-4711", map[string]any{"x": 1}); err == nil {
		t.Fatal("a write to a mount that does not exist succeeded")
	}
	bad, err := Connect(ctx, env.Log, Config{Addr: env.Vault.Addr, Token: "hvs.not-a-token", Metrics: NewMetrics(prometheus.WrapRegistererWithPrefix("other_", reg))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Logical().ReadWithContext(ctx, "sys/mounts"); err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Logical().ReadWithContext(ctx, "sys/mounts"); err == nil {
		t.Fatal("a bad token read sys/mounts")
	}
	var text strings.Builder
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			fmt.Fprintf(&text, "%s", f.GetName())
			for _, l := range m.GetLabel() {
				fmt.Fprintf(&text, " %s=%s", l.GetName(), l.GetValue())
			}
			text.WriteString("\n")
		}
	}
	out := text.String()
	for _, want := range []string{"mediator_vault_request_seconds op=sys/health", "mediator_vault_request_seconds op=no-such-mount/data",
		"other_mediator_vault_errors_total op=sys/mounts reason=403"} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, env.Vault.Token) || strings.Contains(out, "escrow-id-4711") {
		t.Fatalf("a token or a path id is in the metrics:\n%s", out)
	}
}

// TestTokenFileIsFollowed: a token from a file (a Vault Agent sink) is
// replaced when the file changes, so an agent's re-issued token is used
// before the old one expires.
func TestTokenFileIsFollowed(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	admin, err := Connect(ctx, env.Log, Config{Addr: env.Vault.Addr, Token: env.Vault.Token})
	if err != nil {
		t.Fatal(err)
	}
	short, err := admin.Auth().Token().Create(&vaultapi.TokenCreateRequest{Policies: []string{"default"}, TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "token")
	os.WriteFile(path, []byte(env.Vault.Token+"\n"), 0o600)
	c, err := Connect(ctx, env.Log, Config{Addr: env.Vault.Addr, Token: env.Vault.Token, TokenFile: path, tokenFileEvery: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(path, []byte(short.Auth.ClientToken+"\n"), 0o600)
	deadline := time.Now().Add(5 * time.Second)
	for c.Token() != short.Auth.ClientToken {
		if time.Now().After(deadline) {
			t.Fatal("the new token in the file was not picked up")
		}
		time.Sleep(10 * time.Millisecond)
	}
	os.WriteFile(path, nil, 0o600) // an empty file keeps the token
	time.Sleep(50 * time.Millisecond)
	if c.Token() != short.Auth.ClientToken {
		t.Fatal("an empty token file replaced the token")
	}
}

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
	"github.com/mediatorhq/mediator/dev/servers"
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

// TestPseudonymKeysServeCachedThenFailClosed: a due refresh never blocks
// ingest while the cached key is usable; with Vault gone the cached key
// serves until it is too stale, then Current fails (ingest fails closed).
func TestPseudonymKeysServeCachedThenFailClosed(t *testing.T) {
	ctx := context.Background()
	v, err := servers.StartVault(ctx, nil, servers.VaultOptions{IgnoreEnv: true})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Stop()
	admin, _ := vaultapi.NewClient(&vaultapi.Config{Address: v.Addr})
	admin.SetToken(v.Token)
	creds, err := vaultsetup.Bootstrap(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Connect(ctx, env.Log, Config{Addr: v.Addr, RoleID: creds.RoleID, SecretID: creds.SecretID})
	if err != nil {
		t.Fatal(err)
	}
	p := NewPseudonymKeys(c, vaultsetup.TransitMount, vaultsetup.PseudonymKey)
	k1, err := p.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Rotate; with the refresh due, Current answers from the cache at once
	// and picks the new version up in the background.
	if _, err := admin.Logical().Write(vaultsetup.TransitMount+"/keys/"+vaultsetup.PseudonymKey+"/rotate", nil); err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.refresh = 0
	p.mu.Unlock()
	if k, err := p.Current(ctx); err != nil || k.Version != k1.Version {
		t.Fatalf("due refresh: got v%d, %v; want the cached v%d at once", k.Version, err, k1.Version)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		k, err := p.Current(ctx)
		if err == nil && k.Version == k1.Version+1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rotation not picked up in the background: v%d %v", k.Version, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	v.Stop()
	if _, err := p.Current(ctx); err != nil {
		t.Fatalf("cached key not served while Vault is down: %v", err)
	}
	p.mu.Lock()
	p.maxStale = 0
	p.mu.Unlock()
	if _, err := p.Current(ctx); err == nil {
		t.Fatal("a too-stale key was served with Vault down")
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

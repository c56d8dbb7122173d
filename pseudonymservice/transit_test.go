package pseudonymservice

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/mediatorhq/mediator/pseudonym"
	"github.com/mediatorhq/mediator/test/harness"
)

var env *harness.Env

func TestMain(m *testing.M) { harness.Main(m, &env) }

// TestKeyUnderTransit, on the real Vault: a key file written under the
// service's Transit key holds no key; the service's login decrypts it to
// the same key; a login that may not use the Transit key, or a key file
// altered, loads nothing, and no error repeats the key.
func TestKeyUnderTransit(t *testing.T) {
	ctx := context.Background()
	admin, err := vaultapi.NewClient(&vaultapi.Config{Address: env.Vault.Addr})
	if err != nil {
		t.Fatal(err)
	}
	admin.SetToken(env.Vault.Token)
	mount := fmt.Sprintf("pseudonym-transit-%d", os.Getpid())
	if err := admin.Sys().MountWithContext(ctx, mount, &vaultapi.MountInput{Type: "transit"}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Logical().WriteWithContext(ctx, mount+"/keys/oprf", map[string]any{"type": "aes256-gcm96"}); err != nil {
		t.Fatal(err)
	}
	policy := fmt.Sprintf(`path "%s/encrypt/oprf" { capabilities = ["update"] }
path "%s/decrypt/oprf" { capabilities = ["update"] }`, mount, mount)
	if err := admin.Sys().PutPolicyWithContext(ctx, mount, policy); err != nil {
		t.Fatal(err)
	}
	token := func(policies ...string) string {
		sec, err := admin.Auth().Token().CreateWithContext(ctx, &vaultapi.TokenCreateRequest{Policies: policies, NoDefaultPolicy: true})
		if err != nil {
			t.Fatal(err)
		}
		return sec.Auth.ClientToken
	}
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tr := TransitFile{Addr: env.Vault.Addr, TokenFile: write("vault.token", token(mount)), Mount: mount, Key: "oprf"}
	vault, err := tr.Connect(ctx, env.Log)
	if err != nil {
		t.Fatal(err)
	}
	key, err := pseudonym.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	text, _ := key.MarshalText()
	ct, err := WrapKey(ctx, vault, tr, key)
	if err != nil {
		t.Fatal(err)
	}
	secret := string(text[len("voprf-ristretto255-sha512:"):])
	if !strings.HasPrefix(ct, "vault:v1:") || strings.Contains(ct, secret) {
		t.Fatalf("the key file holds %q", ct)
	}
	caller := write("gw.token", "a-gateway-token-0123456789")
	f := File{Listen: "127.0.0.1:0", KeyFile: write("oprf.key", ct+"\n"), Transit: &tr,
		Callers: []CallerFile{{Name: "gw", TokenFile: caller}}}
	cfg, err := f.Load(ctx, env.Log)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Key.Public().String() != key.Public().String() {
		t.Fatal("the key decrypted under Transit is not the key written")
	}

	// A login without the Transit policy, and an altered file.
	other := tr
	other.TokenFile = write("other.token", token("default"))
	broken := ct[:len(ct)-4] + "AAAA"
	for name, f := range map[string]File{
		"a login that may not use the key": {Listen: f.Listen, KeyFile: f.KeyFile, Transit: &other, Callers: f.Callers},
		"an altered key file":              {Listen: f.Listen, KeyFile: write("broken.key", broken), Transit: &tr, Callers: f.Callers},
	} {
		_, err := f.Load(ctx, env.Log)
		if err == nil {
			t.Fatalf("%s: loaded", name)
		}
		if strings.Contains(err.Error(), secret) {
			t.Fatalf("%s: the error holds the key: %v", name, err)
		}
	}
}

package vault

import (
	"context"
	"slices"
	"strings"
	"testing"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/mediatorhq/mediator/dev/servers"
	"github.com/mediatorhq/mediator/test/harness"
	"github.com/mediatorhq/mediator/vaultclient"
)

var env *harness.Env

func TestMain(m *testing.M) { harness.Main(m, &env) }

func TestBootstrapIsIdempotentAndLeastPrivilege(t *testing.T) {
	ctx := context.Background()
	admin, err := vaultapi.NewClient(&vaultapi.Config{Address: env.Vault.Addr})
	if err != nil {
		t.Fatal(err)
	}
	admin.SetToken(env.Vault.Token)
	first, err := Bootstrap(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	second, err := Bootstrap(ctx, admin)
	if err != nil {
		t.Fatalf("second bootstrap: %v", err)
	}
	if first.RoleID != second.RoleID || first.SecretID == second.SecretID {
		t.Fatalf("bootstrap should keep the role and mint a new secret id")
	}
	mounts, err := admin.Sys().ListMounts()
	if err != nil {
		t.Fatal(err)
	}
	if mounts[TransitMount+"/"] == nil || mounts[TransitMount+"/"].Type != "transit" {
		t.Fatalf("transit mount missing: %v", mounts)
	}
	if kv := mounts[KVMount+"/"]; kv == nil || kv.Type != "kv" || kv.Options["version"] != "2" {
		t.Fatalf("kv v2 mount missing: %+v", kv)
	}

	// The service logs in with AppRole and gets only the mediator policy.
	c, err := vaultclient.Connect(ctx, env.Log, vaultclient.Config{Addr: env.Vault.Addr, RoleID: second.RoleID, SecretID: second.SecretID})
	if err != nil {
		t.Fatal(err)
	}
	self, err := c.Auth().Token().LookupSelf()
	if err != nil {
		t.Fatalf("lookup-self: %v", err)
	}
	policies, _ := self.TokenPolicies()
	if strings.Join(policies, ",") != "default,mediator" {
		t.Fatalf("token policies = %v", policies)
	}
	if _, err := c.Sys().ListMounts(); err == nil {
		t.Fatal("the mediator token may list mounts")
	}
	if err := c.Sys().PutPolicy("evil", `path "*" { capabilities = ["sudo"] }`); err == nil {
		t.Fatal("the mediator token may write policies")
	}
	if _, err := c.Logical().Write("auth/approle/role/mediator/secret-id", nil); err == nil {
		t.Fatal("the mediator token may mint its own secret ids")
	}
	if err := vaultclient.Ready(ctx, c); err != nil {
		t.Fatalf("ready: %v", err)
	}

	// A wrong secret id is refused, and the error does not echo it.
	_, err = vaultclient.Connect(ctx, env.Log, vaultclient.Config{Addr: env.Vault.Addr, RoleID: second.RoleID, SecretID: "wrong-secret-canary"})
	if err == nil || strings.Contains(err.Error(), "wrong-secret-canary") {
		t.Fatalf("bad secret id: %v", err)
	}
}

func TestBootstrapRefusesAMountOfTheWrongType(t *testing.T) {
	ctx := context.Background()
	v, err := servers.StartVault(ctx, nil, servers.VaultOptions{IgnoreEnv: true})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Stop()
	admin, _ := vaultapi.NewClient(&vaultapi.Config{Address: v.Addr})
	admin.SetToken(v.Token)
	if err := admin.Sys().Mount(KVMount, &vaultapi.MountInput{Type: "transit"}); err != nil {
		t.Fatal(err)
	}
	if _, err := Bootstrap(ctx, admin); err == nil || !strings.Contains(err.Error(), KVMount) {
		t.Fatalf("bootstrap over a wrong-typed mount: %v", err)
	}
}

// TestBootstrapHSMCustodian: on a Vault of its own, an HSM custodian's
// bootstrap makes the KV mount, its policy and AppRole, and no Transit
// mount or key; its policy names no Transit path, so its token may not use
// a Transit key of its name even once one exists, while it reads and
// writes its own KV prefix and no other. A re-run keeps the role.
func TestBootstrapHSMCustodian(t *testing.T) {
	ctx := context.Background()
	v, err := servers.StartVault(ctx, nil, servers.VaultOptions{IgnoreEnv: true})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Stop()
	admin, _ := vaultapi.NewClient(&vaultapi.Config{Address: v.Addr})
	admin.SetToken(v.Token)
	const name = "acme-hsm"
	first, err := BootstrapHSMCustodian(ctx, admin, name)
	if err != nil {
		t.Fatal(err)
	}
	setup, err := BootstrapHSMCustodian(ctx, admin, name)
	if err != nil || setup.RoleID != first.RoleID || setup.SecretID == first.SecretID {
		t.Fatalf("second bootstrap: %v; it should keep the role and mint a new secret id", err)
	}
	if setup.TransitKey != "" || setup.KVPrefix != CustodianPrefix(name) {
		t.Fatalf("setup = transit key %q, kv prefix %q", setup.TransitKey, setup.KVPrefix)
	}
	mounts, err := admin.Sys().ListMounts()
	if err != nil {
		t.Fatal(err)
	}
	if mounts[TransitMount+"/"] != nil {
		t.Fatal("an HSM custodian's bootstrap mounted Transit")
	}
	if kv := mounts[KVMount+"/"]; kv == nil || kv.Type != "kv" || kv.Options["version"] != "2" {
		t.Fatalf("kv v2 mount missing: %+v", kv)
	}
	policy, err := admin.Sys().GetPolicy("custodian-" + name)
	if err != nil || policy != CustodianHSMPolicy(name) || strings.Contains(policy, TransitMount) {
		t.Fatalf("policy (%v):\n%s", err, policy)
	}
	if !strings.Contains(CustodianPolicy(name), `path "`+TransitMount+`/encrypt/`+name+`"`) {
		t.Fatal("the Transit custodian's policy lost its key")
	}

	// A Transit key of its name, made by someone else, is still out of reach.
	if err := admin.Sys().Mount(TransitMount, &vaultapi.MountInput{Type: "transit"}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Logical().Write(TransitMount+"/keys/"+name, map[string]any{"type": "aes256-gcm96"}); err != nil {
		t.Fatal(err)
	}
	c, err := vaultclient.Connect(ctx, env.Log, vaultclient.Config{Addr: v.Addr, RoleID: setup.RoleID, SecretID: setup.SecretID})
	if err != nil {
		t.Fatal(err)
	}
	self, err := c.Auth().Token().LookupSelf()
	if err != nil {
		t.Fatal(err)
	}
	policies, _ := self.TokenPolicies()
	if slices.Sort(policies); strings.Join(policies, ",") != "custodian-"+name+",default" {
		t.Fatalf("token policies = %v", policies)
	}
	if _, err := c.Logical().Write(TransitMount+"/encrypt/"+name, map[string]any{"plaintext": "AAAA", "context": "AAAA"}); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("the HSM custodian's token used Transit: %v", err)
	}
	kv := c.KVv2(KVMount)
	if _, err := kv.Put(ctx, CustodianPrefix(name)+"/probe", map[string]any{"x": "1"}); err != nil {
		t.Fatalf("write its own prefix: %v", err)
	}
	if _, err := kv.Get(ctx, CustodianPrefix(name)+"/probe"); err != nil {
		t.Fatalf("read its own prefix: %v", err)
	}
	if _, err := kv.Put(ctx, CustodianPrefix("other")+"/probe", map[string]any{"x": "1"}); err == nil {
		t.Fatal("wrote another custodian's prefix")
	}
}

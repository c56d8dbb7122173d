package vault

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	vaultapi "github.com/hashicorp/vault/api"
)

// CustodianPrefix is where custodian name keeps its records in KVMount:
// custodians/<name>.
func CustodianPrefix(name string) string { return "custodians/" + name }

// custodianName keeps a custodian's name safe inside Vault paths and
// policy text.
var custodianName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// CustodianPolicy returns the HCL of custodian name's own policy: its own
// Transit key (named name, on TransitMount) and its own KV prefix, and
// nothing of any other custodian's or of the mediator's.
func CustodianPolicy(name string) string { return custodianPolicy(name, true) }

// CustodianHSMPolicy is CustodianPolicy for a custodian whose wrapping key
// is on a PKCS#11 HSM: its own KV prefix, and no Transit path at all.
func CustodianHSMPolicy(name string) string { return custodianPolicy(name, false) }

func custodianPolicy(name string, transit bool) string {
	wrapping := `# Its wrapping key is on its HSM: no Transit path.
`
	if transit {
		wrapping = fmt.Sprintf(`# Wrap, unwrap and rewrap with its own Transit key (derived, never
# exportable), and read the key's versions.
path "%[2]s/encrypt/%[1]s" {
  capabilities = ["update"]
}

path "%[2]s/decrypt/%[1]s" {
  capabilities = ["update"]
}

path "%[2]s/rewrap/%[1]s" {
  capabilities = ["update"]
}

path "%[2]s/keys/%[1]s" {
  capabilities = ["read"]
}
`, name, TransitMount)
	}
	return fmt.Sprintf(`# Policy "custodian-%[1]s": what custodian %[1]s's own token may do, and
# nothing more. No other custodian's key or records, nothing of the mediator's.

path "auth/token/lookup-self" {
  capabilities = ["read"]
}

path "auth/token/renew-self" {
  capabilities = ["update"]
}

%[2]s
# Its own records: written once (create, and update only for check-and-set
# rewrites that destroy the old versions), read, listed and destroyed.
path "%[3]s/data/%[4]s/*" {
  capabilities = ["create", "update", "read"]
}

path "%[3]s/metadata/%[4]s/*" {
  capabilities = ["read", "list", "delete"]
}

path "%[3]s/metadata/%[4]s" {
  capabilities = ["list"]
}

path "%[3]s/destroy/%[4]s/*" {
  capabilities = ["update"]
}
`, name, wrapping, KVMount, CustodianPrefix(name))
}

// CustodianSetup is what BootstrapCustodian made: the custodian's Transit
// key (none for an HSM custodian) and KV prefix, and its AppRole login.
// SecretID is a secret.
type CustodianSetup struct {
	TransitKey string
	KVPrefix   string
	Credentials
}

// BootstrapCustodian prepares custodian name on the Vault admin points at
// (the custodian's own Vault, or one it shares): the mounts, its Transit
// key, its policy "custodian-<name>" and its AppRole "custodian-<name>"
// with that policy alone, and returns a fresh secret id. It is idempotent.
func BootstrapCustodian(ctx context.Context, admin *vaultapi.Client, name string) (CustodianSetup, error) {
	return bootstrapCustodian(ctx, admin, name, true)
}

// BootstrapHSMCustodian is BootstrapCustodian for a custodian whose
// wrapping key is on a PKCS#11 HSM (`mediator custodian init` makes it):
// the KV mount, its policy (CustodianHSMPolicy) and its AppRole, and no
// Transit mount, key or policy path. It is idempotent.
func BootstrapHSMCustodian(ctx context.Context, admin *vaultapi.Client, name string) (CustodianSetup, error) {
	return bootstrapCustodian(ctx, admin, name, false)
}

func bootstrapCustodian(ctx context.Context, admin *vaultapi.Client, name string, transit bool) (CustodianSetup, error) {
	if !custodianName.MatchString(name) {
		return CustodianSetup{}, fmt.Errorf("vault bootstrap: custodian name %q: use 1–63 of a–z, 0–9 and -", name)
	}
	mounts := []string{KVMount}
	if transit {
		mounts = append(mounts, TransitMount)
	}
	if err := prepare(ctx, admin, mounts...); err != nil {
		return CustodianSetup{}, err
	}
	setup := CustodianSetup{KVPrefix: CustodianPrefix(name)}
	if transit {
		if err := ensureTransitKey(ctx, admin, name, map[string]any{"type": "aes256-gcm96", "derived": true, "exportable": false}); err != nil {
			return CustodianSetup{}, err
		}
		setup.TransitKey = name
	}
	policy := "custodian-" + name
	if err := admin.Sys().PutPolicyWithContext(ctx, policy, custodianPolicy(name, transit)); err != nil {
		return CustodianSetup{}, fmt.Errorf("vault bootstrap: put policy %s: %w", policy, err)
	}
	var err error
	if setup.Credentials, err = appRole(ctx, admin, policy, policy); err != nil {
		return CustodianSetup{}, err
	}
	return setup, nil
}

// ensureTransitKey creates Transit key name with params unless it exists
// with the same type.
func ensureTransitKey(ctx context.Context, client *vaultapi.Client, name string, params map[string]any) error {
	existing, err := client.Logical().ReadWithContext(ctx, TransitMount+"/keys/"+name)
	if err != nil {
		return fmt.Errorf("vault bootstrap: read transit key %s: %w", name, err)
	}
	if existing != nil {
		if t, _ := existing.Data["type"].(string); t != params["type"] {
			return fmt.Errorf("vault bootstrap: transit key %s exists with type %q, want %q", name, t, params["type"])
		}
		return nil
	}
	if _, err := client.Logical().WriteWithContext(ctx, TransitMount+"/keys/"+name, params); err != nil {
		return fmt.Errorf("vault bootstrap: create transit key %s: %w", name, err)
	}
	return nil
}

// appRole writes AppRole role with policy alone and returns its role id
// and a fresh secret id.
func appRole(ctx context.Context, client *vaultapi.Client, role, policy string) (Credentials, error) {
	rolePath := "auth/" + AppRoleMount + "/role/" + role
	if _, err := client.Logical().WriteWithContext(ctx, rolePath, map[string]any{
		"token_policies": []string{policy},
		"token_ttl":      "1h",
		"token_max_ttl":  "24h",
		// Tokens are renewed by the service; an unused secret id expires.
		"secret_id_ttl": "720h",
	}); err != nil {
		return Credentials{}, fmt.Errorf("vault bootstrap: write approle role %s: %w", role, err)
	}
	roleID, err := client.Logical().ReadWithContext(ctx, rolePath+"/role-id")
	if err != nil {
		return Credentials{}, fmt.Errorf("vault bootstrap: read role id of %s: %w", role, err)
	}
	secretID, err := client.Logical().WriteWithContext(ctx, rolePath+"/secret-id", nil)
	if err != nil {
		return Credentials{}, fmt.Errorf("vault bootstrap: new secret id for %s: %w", role, err)
	}
	c := Credentials{RoleID: stringField(roleID, "role_id"), SecretID: stringField(secretID, "secret_id")}
	if c.RoleID == "" || c.SecretID == "" {
		return Credentials{}, errors.New("vault bootstrap: AppRole returned no role id or secret id")
	}
	return c, nil
}

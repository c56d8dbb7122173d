// Package vault bootstraps a HashiCorp Vault server for the mediator the way
// production does it: a Transit mount for wrapping and signing, a KV v2 mount
// for write-once share storage, the "mediator" policy from mediator.hcl, and an
// AppRole whose tokens carry only that policy.
//
// Bootstrap is idempotent and is the one code path used by `mediator dev`,
// the tests, and operators (`mediator vault bootstrap`).
package vault

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strings"

	vaultapi "github.com/hashicorp/vault/api"
)

// Mount paths and names the mediator uses. Operators who change them must
// change mediator.hcl to match.
const (
	TransitMount = "mediator-transit"
	KVMount      = "mediator-kv"
	PolicyName   = "mediator"
	AppRoleMount = "approle"
	AppRoleName  = "mediator"

	// CheckpointKey is the Transit ed25519 key that signs audit checkpoints;
	// its private half never leaves Vault.
	CheckpointKey = "mediator-checkpoint"
	// PseudonymKey is the exportable Transit key whose HMAC key makes the
	// keyed pseudonyms of phone numbers and ids. Rotate it with
	// `vault write -f mediator-transit/keys/mediator-pseudonym/rotate`.
	PseudonymKey = "mediator-pseudonym"

	// DefaultCustodians is how many custodian keys the bootstrap makes for a
	// single-Vault deployment (and dev): escrow's default N.
	DefaultCustodians = 5
	// SharePrefix is where the KV mount keeps escrow shares.
	SharePrefix = "shares"
)

// CustodianKey names custodian i's Transit key (1-based): aes256-gcm96,
// derived, never exportable.
func CustodianKey(i int) string { return fmt.Sprintf("custodian-%d", i) }

//go:embed mediator.hcl
var mediatorPolicy string

// Policy returns the HCL of the mediator's Vault policy.
func Policy() string { return mediatorPolicy }

// Credentials are the AppRole credentials the mediator logs in with.
// SecretID is a secret: never log it.
type Credentials struct {
	RoleID   string
	SecretID string
}

// Bootstrap prepares the Vault that client (a token allowed to manage mounts,
// policies and auth methods) points at, and returns a fresh secret id for the
// mediator's AppRole. Existing mounts and roles are kept as they are.
func Bootstrap(ctx context.Context, client *vaultapi.Client) (Credentials, error) {
	mounts, err := client.Sys().ListMountsWithContext(ctx)
	if err != nil {
		return Credentials{}, fmt.Errorf("vault bootstrap: list mounts: %w", err)
	}
	want := []struct {
		path string
		in   vaultapi.MountInput
	}{
		{TransitMount, vaultapi.MountInput{Type: "transit", Description: "mediator: share wrapping and checkpoint signing"}},
		{KVMount, vaultapi.MountInput{Type: "kv", Options: map[string]string{"version": "2"}, Description: "mediator: write-once escrow shares"}},
	}
	for _, m := range want {
		if existing, ok := mounts[m.path+"/"]; ok {
			if existing.Type != m.in.Type {
				return Credentials{}, fmt.Errorf("vault bootstrap: mount %s/ exists with type %q, want %q", m.path, existing.Type, m.in.Type)
			}
			continue
		}
		if err := client.Sys().MountWithContext(ctx, m.path, &m.in); err != nil {
			return Credentials{}, fmt.Errorf("vault bootstrap: mount %s: %w", m.path, err)
		}
	}
	keys := []struct {
		name   string
		params map[string]any
	}{
		{CheckpointKey, map[string]any{"type": "ed25519"}},
		{PseudonymKey, map[string]any{"type": "aes256-gcm96", "exportable": true}},
	}
	for i := 1; i <= DefaultCustodians; i++ {
		keys = append(keys, struct {
			name   string
			params map[string]any
		}{CustodianKey(i), map[string]any{"type": "aes256-gcm96", "derived": true, "exportable": false}})
	}
	for _, k := range keys {
		existing, err := client.Logical().ReadWithContext(ctx, TransitMount+"/keys/"+k.name)
		if err != nil {
			return Credentials{}, fmt.Errorf("vault bootstrap: read transit key %s: %w", k.name, err)
		}
		if existing != nil {
			if t, _ := existing.Data["type"].(string); t != k.params["type"] {
				return Credentials{}, fmt.Errorf("vault bootstrap: transit key %s exists with type %q, want %q", k.name, t, k.params["type"])
			}
			continue
		}
		if _, err := client.Logical().WriteWithContext(ctx, TransitMount+"/keys/"+k.name, k.params); err != nil {
			return Credentials{}, fmt.Errorf("vault bootstrap: create transit key %s: %w", k.name, err)
		}
	}
	if err := client.Sys().PutPolicyWithContext(ctx, PolicyName, mediatorPolicy); err != nil {
		return Credentials{}, fmt.Errorf("vault bootstrap: put policy: %w", err)
	}
	auths, err := client.Sys().ListAuthWithContext(ctx)
	if err != nil {
		return Credentials{}, fmt.Errorf("vault bootstrap: list auth methods: %w", err)
	}
	if _, ok := auths[AppRoleMount+"/"]; !ok {
		if err := client.Sys().EnableAuthWithOptionsWithContext(ctx, AppRoleMount, &vaultapi.EnableAuthOptions{Type: "approle"}); err != nil {
			return Credentials{}, fmt.Errorf("vault bootstrap: enable approle: %w", err)
		}
	}
	rolePath := "auth/" + AppRoleMount + "/role/" + AppRoleName
	if _, err := client.Logical().WriteWithContext(ctx, rolePath, map[string]any{
		"token_policies": []string{PolicyName},
		"token_ttl":      "1h",
		"token_max_ttl":  "24h",
		// Tokens are renewed by the service; an unused secret id expires.
		"secret_id_ttl": "720h",
	}); err != nil {
		return Credentials{}, fmt.Errorf("vault bootstrap: write approle role: %w", err)
	}
	roleID, err := client.Logical().ReadWithContext(ctx, rolePath+"/role-id")
	if err != nil {
		return Credentials{}, fmt.Errorf("vault bootstrap: read role id: %w", err)
	}
	secretID, err := client.Logical().WriteWithContext(ctx, rolePath+"/secret-id", nil)
	if err != nil {
		return Credentials{}, fmt.Errorf("vault bootstrap: new secret id: %w", err)
	}
	c := Credentials{RoleID: stringField(roleID, "role_id"), SecretID: stringField(secretID, "secret_id")}
	if c.RoleID == "" || c.SecretID == "" {
		return Credentials{}, errors.New("vault bootstrap: AppRole returned no role id or secret id")
	}
	return c, nil
}

func stringField(s *vaultapi.Secret, key string) string {
	if s == nil || s.Data == nil {
		return ""
	}
	v, _ := s.Data[key].(string)
	return strings.TrimSpace(v)
}

// Package vault bootstraps a HashiCorp Vault server the way production does
// it: for the mediator, a Transit mount for signing checkpoints, the
// "mediator" policy from mediator.hcl and an AppRole whose tokens carry only
// that policy; for each custodian that keeps its shares on this Vault, its
// own Transit key (none for one whose key is on an HSM), its own KV v2
// prefix, a policy naming only those, and an AppRole of its own
// (BootstrapCustodian, BootstrapHSMCustodian).
//
// Bootstrap is idempotent and is the one code path used by `mediator dev`,
// the tests, and operators (`mediator vault bootstrap`).
package vault

import (
	"context"
	_ "embed"
	"fmt"
	"slices"
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

	// DefaultCustodians is how many custodians `mediator dev` and the
	// tests run: custodian-1 … custodian-5, threshold 3.
	DefaultCustodians = 5
)

// CustodianName names dev custodian i (1-based).
func CustodianName(i int) string { return fmt.Sprintf("custodian-%d", i) }

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
	if err := prepare(ctx, client, TransitMount, KVMount); err != nil {
		return Credentials{}, err
	}
	for name, params := range map[string]map[string]any{
		CheckpointKey: {"type": "ed25519"},
	} {
		if err := ensureTransitKey(ctx, client, name, params); err != nil {
			return Credentials{}, err
		}
	}
	if err := client.Sys().PutPolicyWithContext(ctx, PolicyName, mediatorPolicy); err != nil {
		return Credentials{}, fmt.Errorf("vault bootstrap: put policy: %w", err)
	}
	return appRole(ctx, client, AppRoleName, PolicyName)
}

// prepare makes the named mounts of TransitMount and KVMount and enables
// AppRole logins, keeping what exists.
func prepare(ctx context.Context, client *vaultapi.Client, paths ...string) error {
	mounts, err := client.Sys().ListMountsWithContext(ctx)
	if err != nil {
		return fmt.Errorf("vault bootstrap: list mounts: %w", err)
	}
	want := []struct {
		path string
		in   vaultapi.MountInput
	}{
		{TransitMount, vaultapi.MountInput{Type: "transit", Description: "mediator: checkpoint signing; custodians: their own wrapping keys"}},
		{KVMount, vaultapi.MountInput{Type: "kv", Options: map[string]string{"version": "2"}, Description: "custodians: write-once shares and records, a prefix each"}},
	}
	for _, m := range want {
		if !slices.Contains(paths, m.path) {
			continue
		}
		if existing, ok := mounts[m.path+"/"]; ok {
			if existing.Type != m.in.Type {
				return fmt.Errorf("vault bootstrap: mount %s/ exists with type %q, want %q", m.path, existing.Type, m.in.Type)
			}
			continue
		}
		if err := client.Sys().MountWithContext(ctx, m.path, &m.in); err != nil {
			return fmt.Errorf("vault bootstrap: mount %s: %w", m.path, err)
		}
	}
	auths, err := client.Sys().ListAuthWithContext(ctx)
	if err != nil {
		return fmt.Errorf("vault bootstrap: list auth methods: %w", err)
	}
	if _, ok := auths[AppRoleMount+"/"]; !ok {
		if err := client.Sys().EnableAuthWithOptionsWithContext(ctx, AppRoleMount, &vaultapi.EnableAuthOptions{Type: "approle"}); err != nil {
			return fmt.Errorf("vault bootstrap: enable approle: %w", err)
		}
	}
	return nil
}

func stringField(s *vaultapi.Secret, key string) string {
	if s == nil || s.Data == nil {
		return ""
	}
	v, _ := s.Data[key].(string)
	return strings.TrimSpace(v)
}

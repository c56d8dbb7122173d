package escrow

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	vaultapi "github.com/hashicorp/vault/api"
)

// TransitWrapper wraps shares with a Vault Transit key of type aes256-gcm96,
// not exportable, derived: each (conversation, key id) gets its own derived
// key, so a wrapped share only unwraps under its own context.
type TransitWrapper struct {
	Client *vaultapi.Client
	Mount  string
	Key    string
}

// Wrap implements Wrapper. The result is Vault's ciphertext ("vault:vN:…").
func (w TransitWrapper) Wrap(ctx context.Context, aad, share []byte) ([]byte, error) {
	sec, err := w.Client.Logical().WriteWithContext(ctx, w.Mount+"/encrypt/"+w.Key, map[string]any{
		"plaintext": base64.StdEncoding.EncodeToString(share),
		"context":   base64.StdEncoding.EncodeToString(aad),
	})
	if err != nil {
		return nil, fmt.Errorf("transit encrypt: %w", err)
	}
	ct, _ := sec.Data["ciphertext"].(string)
	if !strings.HasPrefix(ct, "vault:v") {
		return nil, errors.New("transit encrypt: no ciphertext")
	}
	return []byte(ct), nil
}

// Unwrap implements Wrapper.
func (w TransitWrapper) Unwrap(ctx context.Context, aad, wrapped []byte) ([]byte, error) {
	sec, err := w.Client.Logical().WriteWithContext(ctx, w.Mount+"/decrypt/"+w.Key, map[string]any{
		"ciphertext": string(wrapped),
		"context":    base64.StdEncoding.EncodeToString(aad),
	})
	if err != nil {
		return nil, fmt.Errorf("transit decrypt: %w", err)
	}
	pt, _ := sec.Data["plaintext"].(string)
	share, err := base64.StdEncoding.DecodeString(pt)
	if err != nil || len(share) == 0 {
		return nil, errors.New("transit decrypt: no plaintext")
	}
	return share, nil
}

// KVStore keeps shares in a Vault KV v2 mount under Prefix. Every share is
// written with check-and-set 0, so Vault itself refuses to overwrite one;
// the mediator's policy also grants create but not update.
type KVStore struct {
	Client *vaultapi.Client
	Mount  string
	Prefix string
}

func (s KVStore) path(p string) string { return strings.Trim(s.Prefix, "/") + "/" + p }

// Put implements ShareStore.
func (s KVStore) Put(ctx context.Context, p string, wrapped []byte) error {
	_, err := s.Client.KVv2(s.Mount).Put(ctx, s.path(p), map[string]any{"wrapped": string(wrapped)}, vaultapi.WithCheckAndSet(0))
	if err != nil {
		if strings.Contains(err.Error(), "check-and-set") {
			return ErrShareExists
		}
		return fmt.Errorf("kv put: %w", err)
	}
	return nil
}

// Get implements ShareStore.
func (s KVStore) Get(ctx context.Context, p string) ([]byte, error) {
	sec, err := s.Client.KVv2(s.Mount).Get(ctx, s.path(p))
	if err != nil {
		return nil, fmt.Errorf("kv get: %w", err)
	}
	w, _ := sec.Data["wrapped"].(string)
	if w == "" {
		return nil, errors.New("kv get: no share")
	}
	return []byte(w), nil
}

// Destroy implements ShareStore: deleting the metadata removes every
// version and its data permanently.
func (s KVStore) Destroy(ctx context.Context, p string) error {
	if err := s.Client.KVv2(s.Mount).DeleteMetadata(ctx, s.path(p)); err != nil {
		return fmt.Errorf("kv destroy: %w", err)
	}
	return nil
}

// Rewrap re-encrypts wrapped under the newest version of the Transit key,
// inside Vault: the share never leaves it in clear.
func (w TransitWrapper) Rewrap(ctx context.Context, aad, wrapped []byte) ([]byte, error) {
	sec, err := w.Client.Logical().WriteWithContext(ctx, w.Mount+"/rewrap/"+w.Key, map[string]any{
		"ciphertext": string(wrapped),
		"context":    base64.StdEncoding.EncodeToString(aad),
	})
	if err != nil {
		return nil, fmt.Errorf("transit rewrap: %w", err)
	}
	ct, _ := sec.Data["ciphertext"].(string)
	if !strings.HasPrefix(ct, "vault:v") {
		return nil, errors.New("transit rewrap: no ciphertext")
	}
	return []byte(ct), nil
}

// Replace overwrites the share at p with check-and-set on the version it
// holds now. The service's own token may not do this (its policy grants
// create, not update): rewrap runs with an operator's token.
func (s KVStore) Replace(ctx context.Context, p string, wrapped []byte) error {
	kv := s.Client.KVv2(s.Mount)
	meta, err := kv.GetMetadata(ctx, s.path(p))
	if err != nil {
		return fmt.Errorf("kv replace: read version: %w", err)
	}
	if _, err := kv.Put(ctx, s.path(p), map[string]any{"wrapped": string(wrapped)}, vaultapi.WithCheckAndSet(meta.CurrentVersion)); err != nil {
		return fmt.Errorf("kv replace: %w", err)
	}
	return nil
}

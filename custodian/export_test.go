package custodian

import (
	"context"

	vaultapi "github.com/hashicorp/vault/api"
)

// Exported for custodian_test, whose fixtures run custodians on the real
// Vault.

// TestStore is a running custodian's store, under its own Vault login.
type TestStore struct{ s *store }

// StoreForTest returns c's store.
func (c *Custodian) StoreForTest() TestStore { return TestStore{c.store} }

// The store's typed errors.
var (
	ErrExists  = errExists
	ErrChanged = errChanged
)

// PutOnce is putOnce at p under the custodian's prefix.
func (t TestStore) PutOnce(ctx context.Context, p string, data map[string]any) error {
	return t.s.putOnce(ctx, t.s.path(p), data)
}

// Get is get at p under the custodian's prefix.
func (t TestStore) Get(ctx context.Context, p string) (*vaultapi.KVSecret, error) {
	return t.s.get(ctx, t.s.path(p))
}

// Replace is replace at p under the custodian's prefix.
func (t TestStore) Replace(ctx context.Context, p string, sec *vaultapi.KVSecret, data map[string]any) error {
	return t.s.replace(ctx, t.s.path(p), sec, data)
}

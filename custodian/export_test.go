package custodian

import (
	"context"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/mediatorhq/mediator/wire"
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

// PutVersion writes data as the version after cas at p under the
// custodian's prefix, and destroys nothing: a replace whose destroy
// failed.
func (t TestStore) PutVersion(ctx context.Context, p string, data map[string]any, cas int) error {
	_, err := t.s.kv.Put(ctx, t.s.path(p), data, vaultapi.WithCheckAndSet(cas))
	return err
}

// Versions returns the versions Vault keeps of p under the custodian's
// prefix, each with whether it is destroyed.
func (t TestStore) Versions(ctx context.Context, p string) (map[int]bool, error) {
	meta, err := t.s.kv.GetMetadata(ctx, t.s.path(p))
	if err != nil {
		return nil, err
	}
	out := make(map[int]bool, len(meta.Versions))
	for _, v := range meta.Versions {
		out[v.Version] = v.Destroyed
	}
	return out, nil
}

// ErrNoRecord is the store's error for no such record.
var ErrNoRecord = errNoRecord

// KeptEntryBytes bounds the answers of one kept entry.
const KeptEntryBytes = keptEntryBytes

// Keep is keep: it returns the name and first escrow id of each entry.
func (t TestStore) Keep(ctx context.Context, requestID string, answers []wire.CustodianShare) ([][2]string, error) {
	es, err := t.s.keep(ctx, requestID, answers)
	out := make([][2]string, len(es))
	for i, e := range es {
		out[i] = [2]string{e.Name, e.First}
	}
	return out, err
}

// Kept is kept.
func (t TestStore) Kept(ctx context.Context, requestID, name string) (map[string]wire.CustodianShare, error) {
	return t.s.kept(ctx, requestID, name)
}

// Drop is drop of the entries named.
func (t TestStore) Drop(ctx context.Context, requestID string, names ...string) {
	es := make(keptEntries, len(names))
	for i, n := range names {
		es[i].Name = n
	}
	t.s.drop(ctx, requestID, es)
}

// List is list of dir under the custodian's prefix.
func (t TestStore) List(ctx context.Context, dir string) ([]string, error) { return t.s.list(ctx, dir) }

// SetClockForTest sets the custodian's clock. Call it before the custodian
// is used (serving, or called from other goroutines): the clock is not
// guarded.
func (c *Custodian) SetClockForTest(now func() time.Time) { c.now = now }

// Fresh is a new store on the same Vault path, remembering nothing.
func (t TestStore) Fresh() TestStore {
	return TestStore{newStore(t.s.client, t.s.mount, t.s.prefix)}
}

// PutRelease writes release record n of request: receipts maps escrow
// ids to receipt hashes.
func (t TestStore) PutRelease(ctx context.Context, requestID string, n int, at string, receipts map[string]string) error {
	return t.s.putRelease(ctx, requestID, n, releaseRecord{RequestDigest: "d", RecipientKey: "k", At: at, Receipts: receipts})
}

// Released is released: the number of records, the earliest record's
// time, and the receipt hash of each of ids released.
func (t TestStore) Released(ctx context.Context, requestID string, ids ...string) (int, time.Time, map[string]string, error) {
	r, err := t.s.released(ctx, requestID, ids)
	out := map[string]string{}
	for id, sh := range r.shares {
		out[id] = sh.receipt
	}
	return r.records, r.first, out, err
}

// ReleaseCacheRequests is how many requests a store remembers.
const ReleaseCacheRequests = releaseCacheRequests

package servers

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPinnedToolSums: the cache keys compiled in (used outside the
// checkout) are those of the tools modules' go.sum files in this
// checkout. When a pin changes, set the constant to the value named here.
func TestPinnedToolSums(t *testing.T) {
	for dir, want := range map[string]string{"vault": vaultGoSum, "witness": witnessGoSum} {
		sum, err := os.ReadFile(filepath.Join("..", "..", "tools", dir, "go.sum"))
		if err != nil {
			t.Fatal(err)
		}
		if got := goSumKey(sum); got != want {
			t.Errorf("tools/%s/go.sum hashes to %s; set the constant for it (now %s) to that", dir, got, want)
		}
	}
}

// TestCachedToolOutsideTheCheckout: run from a directory with no
// tools/vault above it, EnsureVaultBinary finds the cached binary of this
// pin, and without one says that a build needs the checkout (it starts
// no build).
func TestCachedToolOutsideTheCheckout(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("MEDIATOR_CACHE_DIR", cache)
	t.Chdir(t.TempDir())
	ctx := context.Background()
	if _, err := EnsureVaultBinary(ctx, nil); err == nil || !strings.Contains(err.Error(), "checkout") {
		t.Fatalf("no cached binary, outside the checkout: %v, want an error naming the checkout", err)
	}
	bin := filepath.Join(cache, "vault-"+VaultVersion+"-"+vaultGoSum)
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := EnsureVaultBinary(ctx, nil)
	if err != nil || got != bin {
		t.Fatalf("EnsureVaultBinary outside the checkout = %q, %v; want the cached %s", got, err, bin)
	}
}

package servers

import (
	"context"
	"log/slog"
)

// WitnessVersion is the pinned transparency-dev witness (omniwitness), an
// independent implementation of C2SP tlog-witness that the end-to-end
// tests run beside the custodians' own witnesses. tools/witness/go.mod
// must require the same version; the module proxy lists no versions of
// it, and this is what @latest resolved to.
const WitnessVersion = "v0.0.0-20260720115447-2e1c6971d19e"

// witnessGoSum is the cache key's hash of tools/witness/go.sum (as
// vaultGoSum is of tools/vault/go.sum).
const witnessGoSum = "12c6b2cd14ee"

// EnsureWitnessBinary returns the path of the pinned omniwitness binary,
// building it from tools/witness when the cache does not hold one built
// from the current pin.
func EnsureWitnessBinary(ctx context.Context, log *slog.Logger) (string, error) {
	return ensureTool(ctx, log, pinnedTool{name: "omniwitness", dir: "witness", version: WitnessVersion, sum: witnessGoSum,
		pkg: "github.com/transparency-dev/witness/cmd/omniwitness", took: "about 2 minutes on 2 cores"})
}

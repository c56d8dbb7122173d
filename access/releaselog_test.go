package access

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/mediatorhq/mediator/escrow"
)

// TestReleaseLogStaysSmall: a release of up to MaxLoggedKeys keys lists
// each key and share's receipt hash in its access.release entry; one of
// more names the list by its SHA-256 and count, and names the
// access.custodian_release entries holding the receipts, so the entry
// stays small enough for an evidence bundle whatever the keys.
func TestReleaseLogStaysSmall(t *testing.T) {
	keys := func(n int) []ReleasedKey {
		out := make([]ReleasedKey, n)
		for i := range out {
			out[i] = ReleasedKey{Escrow: escrow.Escrow{EscrowID: fmt.Sprintf("e%05d", i), ConversationID: "c", KeyID: fmt.Sprint(i)},
				Shares: []ReleasedShare{{Custodian: "custodian-1", Index: 1, AuditSeq: int64(10 + i/1000)}}}
		}
		return out
	}
	small := releaseLog(Request{Digest: "sha256:r"}, "d", "olga", "k", keys(MaxLoggedKeys))
	if len(small.Keys) != MaxLoggedKeys || small.KeysSHA256 != "" || small.CustodianReleaseSeqs != nil {
		t.Fatalf("a release of %d keys: %d listed, digest %q", MaxLoggedKeys, len(small.Keys), small.KeysSHA256)
	}
	n := 3 * MaxLoggedKeys
	big := releaseLog(Request{Digest: "sha256:r"}, "d", "olga", "k", keys(n))
	full := releaseLog(Request{Digest: "sha256:r"}, "d", "olga", "k", keys(n)[:0])
	for _, k := range keys(n) {
		full.Keys = append(full.Keys, releaseLog(Request{Digest: "sha256:r"}, "d", "olga", "k", []ReleasedKey{k}).Keys...)
	}
	list, _ := json.Marshal(full.Keys)
	sum := sha256.Sum256(list)
	if big.Keys != nil || big.KeysCount != n || big.KeysSHA256 != "sha256:"+hex.EncodeToString(sum[:]) ||
		!slices.Equal(big.CustodianReleaseSeqs, []int64{10, 11, 12, 13, 14, 15}) {
		t.Fatalf("a release of %d keys: %d listed, count %d, digest %s, seqs %v", n, len(big.Keys), big.KeysCount, big.KeysSHA256, big.CustodianReleaseSeqs)
	}
	b, _ := json.Marshal(big)
	if len(b) > 4096 {
		t.Fatalf("the entry of %d keys is %d bytes", n, len(b))
	}
}

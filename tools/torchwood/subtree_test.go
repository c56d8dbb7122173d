package torchwood_test

import (
	"fmt"
	"testing"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/mediatorhq/mediator/subtree"
)

// memTree is a tree held in memory as tlog stores it.
type memTree []tlog.Hash

func (m *memTree) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x >= int64(len(*m)) {
			return nil, fmt.Errorf("no hash %d", x)
		}
		out[i] = (*m)[x]
	}
	return out, nil
}

// TestSubtreeProofsAgreeWithTorchwood: the subtree consistency proofs the
// mirror protocol carries (draft-ietf-plants-merkle-tree-certs) are
// byte-equal to torchwood's for every subtree of trees up to 300 leaves
// and every 256-aligned package of larger ones; torchwood accepts ours,
// we accept torchwood's, and a changed hash fails both.
func TestSubtreeProofsAgreeWithTorchwood(t *testing.T) {
	tree := &memTree{}
	var leaves []tlog.Hash
	grow := func(n int64) {
		for int64(len(leaves)) < n {
			hs, err := tlog.StoredHashes(int64(len(leaves)), []byte(fmt.Sprintf("leaf %d", len(leaves))), tree)
			if err != nil {
				t.Fatal(err)
			}
			*tree = append(*tree, hs...)
			leaves = append(leaves, hs[0])
		}
	}
	check := func(n, start, end int64) {
		ours, err := subtree.Prove(n, start, end, tree)
		if err != nil {
			t.Fatalf("Prove(%d, %d, %d): %v", n, start, end, err)
		}
		theirs, err := torchwood.ProveSubtree(n, start, end, tree)
		if err != nil {
			t.Fatalf("torchwood.ProveSubtree(%d, %d, %d): %v", n, start, end, err)
		}
		if fmt.Sprint(ours) != fmt.Sprint([]tlog.Hash(theirs)) {
			t.Fatalf("[%d, %d) in %d: our proof %x, torchwood's %x", start, end, n, ours, theirs)
		}
		root, _ := tlog.TreeHash(n, tree)
		sub, err := torchwood.SubtreeHash(start, end, tree)
		if err != nil || sub != subtree.Root(leaves[start:end]) {
			t.Fatalf("[%d, %d): subtree hashes differ (%v)", start, end, err)
		}
		if err := torchwood.CheckSubtree(torchwood.SubtreeProof(ours), n, root, start, end, sub); err != nil {
			t.Fatalf("torchwood refuses our proof of [%d, %d) in %d: %v", start, end, n, err)
		}
		if err := subtree.Check(theirs, n, root, start, end, sub); err != nil {
			t.Fatalf("we refuse torchwood's proof of [%d, %d) in %d: %v", start, end, n, err)
		}
		if len(ours) > 0 {
			ours[0][3] ^= 1
			if torchwood.CheckSubtree(torchwood.SubtreeProof(ours), n, root, start, end, sub) == nil || subtree.Check(ours, n, root, start, end, sub) == nil {
				t.Fatalf("a changed proof of [%d, %d) in %d checks", start, end, n)
			}
		}
	}
	grow(300)
	for n := int64(1); n <= 300; n++ {
		for start := int64(0); start < n; start++ {
			for end := start + 1; end <= n; end++ {
				if subtree.Valid(start, end) != torchwood.ValidSubtree(start, end) {
					t.Fatalf("Valid(%d, %d) disagrees with torchwood", start, end)
				}
				if subtree.Valid(start, end) {
					check(n, start, end)
				}
			}
		}
	}
	grow(70_000)
	for _, n := range []int64{65_536, 65_537, 69_999, 70_000} {
		for lo := int64(0); lo < n; lo += 256 * 17 {
			check(n, lo, min(n, lo+256))
		}
		check(n, n&^255, n)
	}
}

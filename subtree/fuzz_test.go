package subtree

import (
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

// FuzzCheck: Check never panics, and over a real tree it accepts a proof
// of a subtree only if it is the one Prove makes (proofs are unique).
func FuzzCheck(f *testing.F) {
	tree := newTree(f, 300)
	f.Add(int64(300), int64(256), int64(300), []byte{})
	f.Add(int64(7), int64(4), int64(6), make([]byte, 64))
	f.Fuzz(func(t *testing.T, n, start, end int64, raw []byte) {
		proof := make([]tlog.Hash, len(raw)/tlog.HashSize)
		for i := range proof {
			copy(proof[i][:], raw[i*tlog.HashSize:])
		}
		if n < 1 || n > 300 || start < 0 || end > n || start >= end || !Valid(start, end) {
			_ = Check(proof, n, tlog.Hash{}, start, end, tlog.Hash{})
			return
		}
		root, err := tlog.TreeHash(n, tree)
		if err != nil {
			t.Fatal(err)
		}
		want, err := Prove(n, start, end, tree)
		if err != nil {
			t.Fatal(err)
		}
		if len(raw) == 0 {
			proof = want // the real proof must check
		}
		ok := Check(proof, n, root, start, end, Root(tree.leaves[start:end])) == nil
		if ok != equal(proof, want) {
			t.Fatalf("[%d, %d) in %d: Check = %v for %x, the proof is %x", start, end, n, ok, proof, want)
		}
	})
}

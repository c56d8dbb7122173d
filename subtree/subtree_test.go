package subtree

import (
	"fmt"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

// memTree is a tree of n leaves held in memory as tlog stores it.
type memTree struct {
	stored []tlog.Hash
	leaves []tlog.Hash
}

func newTree(t testing.TB, n int) *memTree {
	t.Helper()
	m := &memTree{}
	for i := 0; i < n; i++ {
		hs, err := tlog.StoredHashes(int64(i), []byte(fmt.Sprintf("leaf %d", i)), m)
		if err != nil {
			t.Fatal(err)
		}
		m.stored = append(m.stored, hs...)
		m.leaves = append(m.leaves, hs[0])
	}
	return m
}

func (m *memTree) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x >= int64(len(m.stored)) {
			return nil, fmt.Errorf("no hash %d", x)
		}
		out[i] = m.stored[x]
	}
	return out, nil
}

// subtrees calls f with every non-empty subtree of a tree of n leaves.
func subtrees(n int64, f func(start, end int64)) {
	for start := int64(0); start < n; start++ {
		for end := start + 1; end <= n; end++ {
			if Valid(start, end) {
				f(start, end)
			}
		}
	}
}

func TestValid(t *testing.T) {
	for _, c := range []struct {
		start, end int64
		want       bool
	}{
		{0, 0, true}, {5, 5, true}, {0, 1, true}, {3, 4, true}, {0, 3, true},
		{4, 7, true}, {4, 8, true}, {2, 5, false}, {4, 9, false}, {256, 512, true},
		{256, 300, true}, {256, 513, false}, {-1, 2, false}, {3, 2, false},
	} {
		if got := Valid(c.start, c.end); got != c.want {
			t.Errorf("Valid(%d, %d) = %v, want %v", c.start, c.end, got, c.want)
		}
	}
}

// A subtree proof from 0 is tlog's consistency proof, and one of a single
// leaf is tlog's inclusion proof: the draft's two special cases.
func TestSpecialCasesAreTlogProofs(t *testing.T) {
	for n := int64(1); n <= 40; n++ {
		tree := newTree(t, int(n))
		for m := int64(1); m <= n; m++ {
			got, err := Prove(n, 0, m, tree)
			if err != nil {
				t.Fatal(err)
			}
			want, err := tlog.ProveTree(n, m, tree)
			if err != nil {
				t.Fatal(err)
			}
			if !equal(got, want) {
				t.Fatalf("[0, %d) in %d: %x, tlog's consistency proof is %x", m, n, got, want)
			}
		}
		for i := int64(0); i < n; i++ {
			got, err := Prove(n, i, i+1, tree)
			if err != nil {
				t.Fatal(err)
			}
			want, err := tlog.ProveRecord(n, i, tree)
			if err != nil {
				t.Fatal(err)
			}
			if !equal(got, want) {
				t.Fatalf("[%d, %d) in %d: %x, tlog's record proof is %x", i, i+1, n, got, want)
			}
		}
	}
}

// Every proof of every subtree of trees up to 70 leaves checks, and no
// changed, cut or lengthened proof, other subtree hash or other root does.
func TestProveCheck(t *testing.T) {
	for n := int64(1); n <= 70; n++ {
		tree := newTree(t, int(n))
		root, err := tlog.TreeHash(n, tree)
		if err != nil {
			t.Fatal(err)
		}
		subtrees(n, func(start, end int64) {
			sub := Root(tree.leaves[start:end])
			proof, err := Prove(n, start, end, tree)
			if err != nil {
				t.Fatalf("Prove(%d, %d, %d): %v", n, start, end, err)
			}
			if err := Check(proof, n, root, start, end, sub); err != nil {
				t.Fatalf("[%d, %d) in %d: %v", start, end, n, err)
			}
			for i := range proof {
				bad := append([]tlog.Hash(nil), proof...)
				bad[i][7] ^= 1
				if Check(bad, n, root, start, end, sub) == nil {
					t.Fatalf("[%d, %d) in %d: a changed hash %d checks", start, end, n, i)
				}
			}
			if len(proof) > 0 && Check(proof[:len(proof)-1], n, root, start, end, sub) == nil {
				t.Fatalf("[%d, %d) in %d: a cut proof checks", start, end, n)
			}
			if Check(append(append([]tlog.Hash(nil), proof...), root), n, root, start, end, sub) == nil {
				t.Fatalf("[%d, %d) in %d: a lengthened proof checks", start, end, n)
			}
			other := sub
			other[0] ^= 1
			if Check(proof, n, root, start, end, other) == nil {
				t.Fatalf("[%d, %d) in %d: another subtree hash checks", start, end, n)
			}
			if Check(proof, n, other, start, end, sub) == nil {
				t.Fatalf("[%d, %d) in %d: another root checks", start, end, n)
			}
		})
	}
}

func TestRootIsTreeHash(t *testing.T) {
	for n := 1; n <= 300; n += 7 {
		tree := newTree(t, n)
		want, err := tlog.TreeHash(int64(n), tree)
		if err != nil {
			t.Fatal(err)
		}
		if got := Root(tree.leaves); got != want {
			t.Fatalf("Root of %d leaves = %x, tlog.TreeHash = %x", n, got, want)
		}
	}
}

func TestRefusesNonSubtrees(t *testing.T) {
	tree := newTree(t, 20)
	if _, err := Prove(20, 2, 5, tree); err == nil {
		t.Error("Prove accepted [2, 5), which is not a subtree")
	}
	if _, err := Prove(20, 16, 21, tree); err == nil {
		t.Error("Prove accepted a subtree past the tree's end")
	}
	if err := Check(nil, 20, tlog.Hash{}, 2, 5, tlog.Hash{}); err == nil {
		t.Error("Check accepted [2, 5)")
	}
	if err := Check(nil, 20, tlog.Hash{}, 4, 4, Root(nil)); err != nil {
		t.Errorf("Check refused the empty subtree: %v", err)
	}
}

func equal(a, b []tlog.Hash) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

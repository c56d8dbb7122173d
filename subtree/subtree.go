// Package subtree proves and checks that a Merkle tree contains a subtree:
// the "subtree consistency proofs" of draft-ietf-plants-merkle-tree-certs
// (version 02, sections 4.1 and 4.4), which C2SP tlog-mirror uses to
// authenticate each package of entries a mirror receives.
//
// The trees are RFC 6962 trees as golang.org/x/mod/sumdb/tlog builds them,
// and every hash is tlog's: this package only chooses which stored hashes a
// proof carries and in what order, as the draft defines. A proof of the
// subtree [0, m) is tlog's consistency proof from m; make interop holds
// both functions to filippo.io/torchwood's.
package subtree

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"math/bits"

	"golang.org/x/mod/sumdb/tlog"
)

// maxSize bounds tree sizes, as tlog's stored hash indexes do.
const maxSize = 1 << 62

// Valid reports whether [start, end) is a subtree in the draft's sense:
// start is a multiple of the smallest power of two not below end - start.
// An empty range is a subtree.
func Valid(start, end int64) bool {
	if start < 0 || end < start || end-start > maxSize {
		return false
	}
	if start == end {
		return true
	}
	ceil := int64(1) << bits.Len64(uint64(end-start-1))
	return start%ceil == 0
}

// ErrProof means a proof does not show that the tree contains the subtree.
var ErrProof = errors.New("subtree: the proof does not verify")

// Root returns the hash of the subtree whose leaf hashes are leaves, in
// order (MTH of RFC 6962 over them). It returns the hash of the empty
// string for no leaves.
func Root(leaves []tlog.Hash) tlog.Hash {
	switch len(leaves) {
	case 0:
		return tlog.Hash(emptyHash())
	case 1:
		return leaves[0]
	}
	k := split(int64(len(leaves)))
	return tlog.NodeHash(Root(leaves[:k]), Root(leaves[k:]))
}

// Prove returns the proof that the tree of size n contains the subtree
// [start, end), reading the hashes it needs through r in one call.
func Prove(n, start, end int64, r tlog.HashReader) ([]tlog.Hash, error) {
	if n < 0 || n > maxSize || end > n || !Valid(start, end) {
		return nil, fmt.Errorf("subtree: no proof of [%d, %d) in a tree of %d", start, end, n)
	}
	if start == end {
		return []tlog.Hash{}, nil
	}
	spans := proofSpans(0, n, start, end, true, nil)
	indexes := spanIndexes(spans)
	hashes, err := r.ReadHashes(indexes)
	if err != nil {
		return nil, fmt.Errorf("subtree: read hashes: %w", err)
	}
	if len(hashes) != len(indexes) {
		return nil, fmt.Errorf("subtree: read %d hashes, asked for %d", len(hashes), len(indexes))
	}
	proof := make([]tlog.Hash, len(spans))
	for i, s := range spans {
		proof[i], hashes = s.hash(hashes)
	}
	return proof, nil
}

// ProofIndexes returns the stored hash indexes Prove reads for the same
// arguments, so that a caller proving many subtrees can read them all at
// once. It returns nil when there is no such proof.
func ProofIndexes(n, start, end int64) []int64 {
	if n < 0 || n > maxSize || end > n || !Valid(start, end) || start == end {
		return nil
	}
	return spanIndexes(proofSpans(0, n, start, end, true, nil))
}

func spanIndexes(spans []span) []int64 {
	var indexes []int64
	for _, s := range spans {
		indexes = s.indexes(indexes)
	}
	return indexes
}

// Check verifies that proof shows the tree of size n and root hash root
// contains the subtree [start, end) whose hash is sub. It returns ErrProof
// when it does not.
func Check(proof []tlog.Hash, n int64, root tlog.Hash, start, end int64, sub tlog.Hash) error {
	if n < 0 || n > maxSize || end > n || !Valid(start, end) {
		return fmt.Errorf("subtree: [%d, %d) is not a subtree of a tree of %d", start, end, n)
	}
	if start == end {
		if len(proof) != 0 || sub != tlog.Hash(emptyHash()) {
			return ErrProof
		}
		return nil
	}
	gotSub, gotRoot, ok := run(proof, 0, n, start, end, true, sub)
	if !ok || gotSub != sub || gotRoot != root {
		return ErrProof
	}
	return nil
}

// span is the node of the leaves [lo, hi) of a tree: a subtree whose hash
// is the fold of the stored hashes of its complete power-of-two parts.
type span struct{ lo, hi int64 }

// proofSpans appends, in the draft's order (SUBTREE_SUBPROOF), the nodes
// whose hashes prove that the node [lo, hi) contains [start, end). known
// says whether the verifier can compute the hash of the part of [start,
// end) under this node itself: true until the subtree straddles a split.
func proofSpans(lo, hi, start, end int64, known bool, out []span) []span {
	if lo == start && hi == end {
		if known {
			return out
		}
		return append(out, span{lo, hi})
	}
	mid := lo + split(hi-lo)
	switch {
	case end <= mid:
		out = proofSpans(lo, mid, start, end, known, out)
		return append(out, span{mid, hi})
	case mid <= start:
		out = proofSpans(mid, hi, start, end, known, out)
		return append(out, span{lo, mid})
	default: // the subtree straddles mid, so it starts at lo
		out = proofSpans(mid, hi, mid, end, false, out)
		return append(out, span{lo, mid})
	}
}

// run recomputes, from proof, the hashes of the subtree [start, end) and
// of the node [lo, hi) that contains it; sub is the subtree's hash as the
// verifier computed it. The proof's last hash belongs to the top split.
func run(proof []tlog.Hash, lo, hi, start, end int64, known bool, sub tlog.Hash) (tlog.Hash, tlog.Hash, bool) {
	if lo == start && hi == end {
		if known {
			return sub, sub, len(proof) == 0
		}
		if len(proof) != 1 {
			return tlog.Hash{}, tlog.Hash{}, false
		}
		return proof[0], proof[0], true
	}
	if len(proof) == 0 {
		return tlog.Hash{}, tlog.Hash{}, false
	}
	last, rest := proof[len(proof)-1], proof[:len(proof)-1]
	mid := lo + split(hi-lo)
	switch {
	case end <= mid:
		s, node, ok := run(rest, lo, mid, start, end, known, sub)
		return s, tlog.NodeHash(node, last), ok
	case mid <= start:
		s, node, ok := run(rest, mid, hi, start, end, known, sub)
		return s, tlog.NodeHash(last, node), ok
	default:
		s, node, ok := run(rest, mid, hi, mid, end, false, sub)
		return tlog.NodeHash(last, s), tlog.NodeHash(last, node), ok
	}
}

// indexes appends the stored hash indexes of the complete power-of-two
// parts of s, left to right.
func (s span) indexes(out []int64) []int64 {
	for lo := s.lo; lo < s.hi; {
		level := bits.Len64(uint64(s.hi-lo)) - 1
		out = append(out, tlog.StoredHashIndex(level, lo>>level))
		lo += 1 << level
	}
	return out
}

// hash folds the hashes of s's parts, read in the order of indexes, and
// returns the rest.
func (s span) hash(hashes []tlog.Hash) (tlog.Hash, []tlog.Hash) {
	parts := len(s.indexes(nil))
	h := hashes[parts-1]
	for i := parts - 2; i >= 0; i-- {
		h = tlog.NodeHash(hashes[i], h)
	}
	return h, hashes[parts:]
}

// split is the largest power of two below n, for n >= 2: where RFC 6962
// splits a node of n leaves.
func split(n int64) int64 {
	return int64(1) << (bits.Len64(uint64(n-1)) - 1)
}

// emptyHash is the hash of the empty tree: SHA-256 of nothing.
func emptyHash() [32]byte { return sha256.Sum256(nil) }

// Package shares holds the escrow's share formats, which depositors,
// custodians, the mediator and officers must read alike, so that no party
// needs another's word for them: the key commitment; the split of a key
// into N shares, threshold K (github.com/hashicorp/vault/shamir), and the
// recovery that checks the commitment and names a bad share; the HPKE info
// strings that bind a sealed share to its place, at deposit and at
// release; the custodian set and its digest; and the receipts custodians
// sign.
//
// Everything here is pure. A key exists only on the depositor's machine
// before Split and on the officer's after Recover; in between it travels as
// shares, each sealed to one party.
package shares

import (
	"crypto/hpke"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/hashicorp/vault/shamir"

	"github.com/mediatorhq/mediator/seal"
)

// Key sizes a deposit accepts.
const (
	MinKeyLen = 16
	MaxKeyLen = 64
)

// MaxIDLen bounds conversation ids, key ids and custodian names, which are
// embedded in info strings and signed receipts.
const MaxIDLen = 128

// ValidID reports whether s may be a conversation id, key id, request id or
// custodian name: 1–128 bytes of valid UTF-8 without control characters
// (so no newline, which separates the fields of an info string).
func ValidID(s string) bool {
	if s == "" || len(s) > MaxIDLen {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\uFFFD' {
			return false
		}
	}
	return true
}

// commitmentDomain separates key commitments from every other SHA-256 use.
const commitmentDomain = "mediator-key-commitment-v1"

// Commitment returns "sha256:<hex>" over a domain-separated, length-prefixed
// encoding of conversation id, key id and key, so that a recovered key can
// be checked before it is used and no two (conversation, key id, key)
// triples encode alike.
func Commitment(conversationID, keyID string, key []byte) string {
	h := sha256.New()
	h.Write([]byte(commitmentDomain))
	for _, part := range [][]byte{[]byte(conversationID), []byte(keyID), key} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(part)))
		h.Write(n[:])
		h.Write(part)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// CheckCommitment reports in constant time whether key matches commitment.
func CheckCommitment(conversationID, keyID string, key []byte, commitment string) bool {
	return subtle.ConstantTimeCompare([]byte(Commitment(conversationID, keyID, key)), []byte(commitment)) == 1
}

// DepositInfo is the HPKE info under which share index (1-based) of a key is
// sealed to its custodian at deposit:
// "mediator-share-v1\n" + conversation_id + "\n" + key_id + "\n" + custodian + "\n" + index + "\n" + commitment.
// A share opened under any other conversation, key id, custodian, place or
// commitment fails.
func DepositInfo(conversationID, keyID, custodian string, index int, commitment string) []byte {
	return []byte("mediator-share-v1\n" + conversationID + "\n" + keyID + "\n" + custodian + "\n" + strconv.Itoa(index) + "\n" + commitment)
}

// Binding is what a v2 deposit binds a sealed share to beyond v1's
// fields: the escrow id the depositor chose (a canonical UUID) and the
// time it deposited, in TimeLayout. A custodian refuses a v2 share whose
// time is far from its own clock and an escrow id it has seen before, so
// that the sealed bytes, replayed by whoever saw them, open nowhere else
// and never again. The zero Binding is v1, which binds neither.
type Binding struct {
	EscrowID    string
	DepositedAt string
}

// IsZero reports whether b is v1's empty binding.
func (b Binding) IsZero() bool { return b == Binding{} }

// DepositInfoV2 is the HPKE info of a v2 deposit: v1's fields, then the
// binding:
// "mediator-share-v2\n" + conversation_id + "\n" + key_id + "\n" + custodian + "\n" + index + "\n" + commitment + "\n" + escrow_id + "\n" + deposited_at.
func DepositInfoV2(conversationID, keyID, custodian string, index int, commitment string, b Binding) []byte {
	return []byte("mediator-share-v2\n" + conversationID + "\n" + keyID + "\n" + custodian + "\n" + strconv.Itoa(index) + "\n" +
		commitment + "\n" + b.EscrowID + "\n" + b.DepositedAt)
}

// depositInfo is the info for b's version: v1 for the zero Binding.
func depositInfo(conversationID, keyID, custodian string, index int, commitment string, b Binding) []byte {
	if b.IsZero() {
		return DepositInfo(conversationID, keyID, custodian, index, commitment)
	}
	return DepositInfoV2(conversationID, keyID, custodian, index, commitment, b)
}

// ReleaseInfo is the HPKE info under which a custodian re-seals its share
// to a request's recipient:
// "mediator-share-release-v1\n" + request_id + "\n" + conversation_id + "\n" + key_id + "\n" + custodian + "\n" + index.
func ReleaseInfo(requestID, conversationID, keyID, custodian string, index int) []byte {
	return []byte("mediator-share-release-v1\n" + requestID + "\n" + conversationID + "\n" + keyID + "\n" + custodian + "\n" + strconv.Itoa(index))
}

// SealedShare is one custodian's share of a deposit, sealed to it.
type SealedShare struct {
	Custodian string
	Index     int // 1-based place in the custodian set
	Sealed    []byte
}

// Split splits key into one share per custodian of set, threshold
// set.Threshold, and seals share i to custodian i under DepositInfo. It
// returns the key's commitment and the sealed shares; the plaintext shares
// are zeroed before it returns. The caller keeps (and zeroes) the key. A
// depositor splitting many keys for one set uses a Splitter.
func Split(set Set, conversationID, keyID string, key []byte) (string, []SealedShare, error) {
	sp, err := NewSplitter(set)
	if err != nil {
		return "", nil, err
	}
	return sp.Split(conversationID, keyID, key)
}

// Splitter splits keys for one custodian set, checked and with its
// custodians' keys parsed once. It is safe for concurrent use.
type Splitter struct {
	set     Set
	sealers []*seal.Sealer
}

// NewSplitter validates set and parses its custodians' keys.
func NewSplitter(set Set) (*Splitter, error) {
	if err := set.Validate(); err != nil {
		return nil, err
	}
	sp := &Splitter{set: set, sealers: make([]*seal.Sealer, len(set.Custodians))}
	for i, c := range set.Custodians {
		s, err := seal.NewSealer(c.HPKEKey)
		if err != nil {
			return nil, fmt.Errorf("shares: custodian %s: %w", c.Name, err)
		}
		sp.sealers[i] = s
	}
	return sp, nil
}

// Set returns the set sp splits for.
func (sp *Splitter) Set() Set { return sp.set }

// Split is the package-level Split for sp's set: a v1 deposit, bound to
// no escrow id or time. New deposits use SplitBound.
func (sp *Splitter) Split(conversationID, keyID string, key []byte) (string, []SealedShare, error) {
	return sp.SplitBound(conversationID, keyID, Binding{}, key)
}

// SplitBound is Split for a v2 deposit: each share is sealed under
// DepositInfoV2 with b, so it opens only as this escrow id's share,
// deposited at b's time.
func (sp *Splitter) SplitBound(conversationID, keyID string, b Binding, key []byte) (string, []SealedShare, error) {
	if !ValidID(conversationID) || !ValidID(keyID) {
		return "", nil, errors.New("shares: conversation id and key id must be 1–128 printable bytes")
	}
	if len(key) < MinKeyLen || len(key) > MaxKeyLen {
		return "", nil, fmt.Errorf("shares: a key must be %d–%d bytes", MinKeyLen, MaxKeyLen)
	}
	commitment := Commitment(conversationID, keyID, key)
	parts, err := shamir.Split(key, len(sp.set.Custodians), sp.set.Threshold)
	if err != nil {
		return "", nil, fmt.Errorf("shares: split: %w", err)
	}
	defer func() {
		for _, p := range parts {
			clear(p)
		}
	}()
	out := make([]SealedShare, len(parts))
	for i, c := range sp.set.Custodians {
		ct, err := sp.sealers[i].Seal(depositInfo(conversationID, keyID, c.Name, i+1, commitment, b), parts[i])
		if err != nil {
			return "", nil, fmt.Errorf("shares: seal share %d to %s: %w", i+1, c.Name, err)
		}
		out[i] = SealedShare{Custodian: c.Name, Index: i + 1, Sealed: ct}
	}
	return commitment, out, nil
}

// OpenDeposited is the custodian's side of a deposit: it opens the share
// sealed to it under DepositInfo (the zero Binding) or DepositInfoV2. The
// caller must zero the share.
func OpenDeposited(priv hpke.PrivateKey, conversationID, keyID, custodian string, index int, commitment string, b Binding, sealed []byte) ([]byte, error) {
	share, err := seal.Open(priv, depositInfo(conversationID, keyID, custodian, index, commitment, b), sealed)
	if err != nil {
		return nil, errors.New("shares: the sealed share does not open as this custodian's share of this key")
	}
	return share, nil
}

// SealReleased is the custodian's side of a release: it seals its share to
// the request's recipient (parsed once per release) under ReleaseInfo.
func SealReleased(to *seal.Sealer, requestID, conversationID, keyID, custodian string, index int, share []byte) ([]byte, error) {
	return to.Seal(ReleaseInfo(requestID, conversationID, keyID, custodian, index), share)
}

// OpenReleased is the officer's side: it opens one custodian's released
// share. The caller must zero the share.
func OpenReleased(priv hpke.PrivateKey, requestID, conversationID, keyID, custodian string, index int, sealed []byte) ([]byte, error) {
	share, err := seal.Open(priv, ReleaseInfo(requestID, conversationID, keyID, custodian, index), sealed)
	if err != nil {
		return nil, fmt.Errorf("shares: %s's share does not open with this key for this request", custodian)
	}
	return share, nil
}

// Part is one opened share and the custodian it came from.
type Part struct {
	Custodian string
	Share     []byte
}

// ErrNoValidSubset: no threshold-sized subset of the shares recovers the
// committed key.
var ErrNoValidSubset = errors.New("shares: no set of shares recovers the committed key")

// MaxSubsets bounds the subsets Recover tries. With honest shares the
// first subset recovers the key; the bound is reached only with many bad
// shares among many (C(n, k) grows fast: C(30, 4) is 27,405), and it
// keeps whoever hands out shares from making a release cost minutes of
// CPU: 4,096 combines of a 32-byte key take about 0.3 s on 2 cores.
const MaxSubsets = 4096

// ErrSearchBound: Recover tried MaxSubsets subsets of the shares without
// recovering the committed key; too many of them are bad to search.
var ErrSearchBound = errors.New("shares: too many bad shares to search for a set that recovers the key")

// Recover combines parts into the key whose commitment is given, checking
// it in constant time. With more than threshold parts it tries subsets
// until one recovers the committed key, then tests every other part against
// that subset: bad names the custodians whose shares are not on the key's
// polynomial (corrupt or substituted). The caller must zero the key.
//
// Cost: at most min(C(len(parts), threshold), MaxSubsets) combines to
// find a good subset, then one per remaining part. When MaxSubsets
// subsets were tried in vain the error wraps ErrSearchBound.
func Recover(conversationID, keyID, commitment string, threshold int, parts []Part) (key []byte, bad []string, err error) {
	if threshold < 2 || len(parts) < threshold {
		return nil, nil, fmt.Errorf("shares: %d shares cannot recover a key of threshold %d", len(parts), threshold)
	}
	try := func(idx []int) []byte {
		ps := make([][]byte, len(idx))
		for i, j := range idx {
			ps[i] = parts[j].Share
		}
		k, err := shamir.Combine(ps)
		if err != nil {
			return nil
		}
		if !CheckCommitment(conversationID, keyID, k, commitment) {
			clear(k)
			return nil
		}
		return k
	}
	var good []int
	tried := 0
	for idx := range subsets(len(parts), threshold) {
		if tried == MaxSubsets {
			return nil, nil, fmt.Errorf("%w: %d subsets of %d shares tried, threshold %d", ErrSearchBound, tried, len(parts), threshold)
		}
		tried++
		if key = try(idx); key != nil {
			good = idx
			break
		}
	}
	if key == nil {
		names := make([]string, len(parts))
		for i, p := range parts {
			names[i] = p.Custodian
		}
		return nil, nil, fmt.Errorf("%w (from %s)", ErrNoValidSubset, strings.Join(names, ", "))
	}
	in := make(map[int]bool, len(good))
	for _, j := range good {
		in[j] = true
	}
	for j := range parts {
		if in[j] {
			continue
		}
		// K−1 shares known good plus the candidate: only a share on the
		// same polynomial gives the committed key again.
		probe := append(append([]int(nil), good[1:]...), j)
		if k := try(probe); k != nil {
			clear(k)
		} else {
			bad = append(bad, parts[j].Custodian)
		}
	}
	return key, bad, nil
}

// subsets yields every k-element subset of {0, …, n−1} in lexicographic
// order, first to last.
func subsets(n, k int) func(yield func([]int) bool) {
	return func(yield func([]int) bool) {
		idx := make([]int, k)
		for i := range idx {
			idx[i] = i
		}
		for {
			if !yield(append([]int(nil), idx...)) {
				return
			}
			i := k - 1
			for i >= 0 && idx[i] == n-k+i {
				i--
			}
			if i < 0 {
				return
			}
			idx[i]++
			for j := i + 1; j < k; j++ {
				idx[j] = idx[j-1] + 1
			}
		}
	}
}

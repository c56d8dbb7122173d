// Package idfilter is a blocked Bloom filter of the event ids logged in
// one generation of the audit log. It answers "not in the generation" or
// "maybe in it": a key that was added is always a maybe, and a key that
// was not is a maybe about once in a thousand. The sequencer asks the
// database only about the maybes, so that the event-id index it probes
// does not grow with the log, and is rarely probed at all
// (docs/decisions.md, "The duplicate check probes one generation").
//
// A filter is derived data: it is built from the entries of a generation,
// a closed one's once it can no longer change, and a wrong one can only
// let a duplicate through as a new entry, never refuse or hide one.
package idfilter

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// BitsPerKey is the filter's size per key it is built for: 16 bits, 2 MB
// for a generation of a million entries.
const BitsPerKey = 16

const (
	version       = 1
	wordsPerBlock = 8 // a block is one 64-byte cache line
	blockBits     = 64 * wordsPerBlock
	probes        = 11 // bits set per key, each 9 bits of the key
)

// Key is an event id in its submitter's namespace, as the filter hashes
// it.
type Key [sha256.Size]byte

// KeyOf returns the key of eventID logged by submitter.
func KeyOf(submitter, eventID string) Key {
	b := make([]byte, 0, binary.MaxVarintLen64+len(submitter)+len(eventID))
	b = binary.AppendUvarint(b, uint64(len(submitter)))
	b = append(b, submitter...)
	b = append(b, eventID...)
	return sha256.Sum256(b)
}

// Filter is a set of keys that may answer "maybe" for a key it lacks, but
// never "no" for one it holds. It is not safe for concurrent Add; Test
// may run concurrently once the filter is built.
type Filter struct {
	words []uint64
}

// New returns an empty filter sized for n keys.
func New(n int) *Filter {
	blocks := max(1, (n*BitsPerKey+blockBits-1)/blockBits)
	return &Filter{words: make([]uint64, blocks*wordsPerBlock)}
}

// Add puts k in the filter.
func (f *Filter) Add(k Key) {
	block, bits := f.locate(k)
	for _, b := range bits {
		block[b/64] |= 1 << (b % 64)
	}
}

// MayContain reports whether k may be in the filter: false means it is
// not.
func (f *Filter) MayContain(k Key) bool {
	block, bits := f.locate(k)
	for _, b := range bits {
		if block[b/64]&(1<<(b%64)) == 0 {
			return false
		}
	}
	return true
}

// locate returns k's block and the bits of it that k sets.
func (f *Filter) locate(k Key) ([]uint64, [probes]uint16) {
	blocks := uint64(len(f.words) / wordsPerBlock)
	i := binary.LittleEndian.Uint64(k[0:8]) % blocks
	var bits [probes]uint16
	a, b := binary.LittleEndian.Uint64(k[8:16]), binary.LittleEndian.Uint64(k[16:24])
	for j := range bits {
		if j < 7 {
			bits[j], a = uint16(a%blockBits), a/blockBits
		} else {
			bits[j], b = uint16(b%blockBits), b/blockBits
		}
	}
	return f.words[i*wordsPerBlock : (i+1)*wordsPerBlock], bits
}

// MarshalBinary encodes the filter: a version byte, then its words in
// little-endian order.
func (f *Filter) MarshalBinary() ([]byte, error) {
	b := make([]byte, 1, 1+8*len(f.words))
	b[0] = version
	for _, w := range f.words {
		b = binary.LittleEndian.AppendUint64(b, w)
	}
	return b, nil
}

// ErrMalformed is returned by Parse for bytes that are not a filter.
var ErrMalformed = errors.New("idfilter: malformed filter")

// Parse decodes a filter MarshalBinary encoded.
func Parse(b []byte) (*Filter, error) {
	if len(b) < 1 || b[0] != version {
		return nil, fmt.Errorf("%w: unknown version", ErrMalformed)
	}
	b = b[1:]
	if len(b) == 0 || len(b)%(8*wordsPerBlock) != 0 {
		return nil, fmt.Errorf("%w: %d bytes is not a whole number of blocks", ErrMalformed, len(b))
	}
	f := &Filter{words: make([]uint64, len(b)/8)}
	for i := range f.words {
		f.words[i] = binary.LittleEndian.Uint64(b[8*i:])
	}
	return f, nil
}

// Size is the filter's size in bytes of memory.
func (f *Filter) Size() int { return 8 * len(f.words) }

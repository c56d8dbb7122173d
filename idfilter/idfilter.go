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
	// words holds the filter's blocks, and, in a Stack, those of the
	// stack's other filters: block i of this filter is the one at place
	// i·stride + offset.
	words  []uint64
	stride int
	offset int
}

// New returns an empty filter sized for n keys.
func New(n int) *Filter {
	return &Filter{words: make([]uint64, SizeFor(n)/8), stride: 1}
}

// SizeFor is the size in bytes of a filter New(n) returns.
func SizeFor(n int) int {
	blocks := max(1, (n*BitsPerKey+blockBits-1)/blockBits)
	return 8 * wordsPerBlock * blocks
}

// Add puts k in the filter.
func (f *Filter) Add(k Key) {
	i, bits := locate(k, f.blocks())
	block := f.block(i)
	for _, b := range bits {
		block[b/64] |= 1 << (b % 64)
	}
}

// MayContain reports whether k may be in the filter: false means it is
// not.
func (f *Filter) MayContain(k Key) bool {
	i, bits := locate(k, f.blocks())
	return holds(f.block(i), bits)
}

// blocks is the number of blocks in the filter.
func (f *Filter) blocks() uint64 { return uint64(len(f.words) / (wordsPerBlock * f.stride)) }

// block returns the filter's block i.
func (f *Filter) block(i uint64) []uint64 {
	at := (int(i)*f.stride + f.offset) * wordsPerBlock
	return f.words[at : at+wordsPerBlock]
}

// locate returns the block, of blocks, that k falls in, and the bits of
// it that k sets.
func locate(k Key, blocks uint64) (uint64, [probes]uint16) {
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
	return i, bits
}

// holds reports whether every one of bits is set in block.
func holds(block []uint64, bits [probes]uint16) bool {
	for _, b := range bits {
		if block[b/64]&(1<<(b%64)) == 0 {
			return false
		}
	}
	return true
}

// MarshalBinary encodes the filter: a version byte, then its words in
// little-endian order.
func (f *Filter) MarshalBinary() ([]byte, error) {
	blocks := f.blocks()
	b := make([]byte, 1, 1+8*wordsPerBlock*int(blocks))
	b[0] = version
	for i := range blocks {
		for _, w := range f.block(i) {
			b = binary.LittleEndian.AppendUint64(b, w)
		}
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
	f := &Filter{words: make([]uint64, len(b)/8), stride: 1}
	for i := range f.words {
		f.words[i] = binary.LittleEndian.Uint64(b[8*i:])
	}
	return f, nil
}

// Size is the filter's size in bytes of memory.
func (f *Filter) Size() int { return 8 * wordsPerBlock * int(f.blocks()) }

// Stack is a set of filters of the same size laid out side by side: the
// blocks a key falls in, one in each filter, are adjacent in memory, so
// asking all of them about a key costs about one trip to memory, where
// asking them one by one costs one each (docs/performance.md, "Eighth
// pass"). It answers exactly as its filters would, and never changes; it
// is safe for concurrent use.
type Stack struct {
	n     int
	words []uint64
}

// NewStack returns a stack holding copies of fs, in that order. The
// filters must all have the same size.
func NewStack(fs []*Filter) (*Stack, error) {
	s := &Stack{n: len(fs)}
	if len(fs) == 0 {
		return s, nil
	}
	blocks := fs[0].blocks()
	for i, f := range fs {
		if f.blocks() != blocks {
			return nil, fmt.Errorf("idfilter: stack of filters of different sizes: filter %d has %d bytes, filter 0 %d", i, f.Size(), fs[0].Size())
		}
	}
	s.words = make([]uint64, len(fs)*int(blocks)*wordsPerBlock)
	for j := range blocks {
		for i, f := range fs {
			copy(s.words[(int(j)*s.n+i)*wordsPerBlock:], f.block(j))
		}
	}
	return s, nil
}

// Len is the number of filters in the stack.
func (s *Stack) Len() int {
	if s == nil {
		return 0
	}
	return s.n
}

// Filter returns the stack's filter i, sharing the stack's memory.
func (s *Stack) Filter(i int) *Filter {
	return &Filter{words: s.words, stride: s.n, offset: i}
}

// AppendMaybes appends to dst the index of every filter of the stack that
// may contain k, in order, and returns the extended slice. A nil stack
// holds no filters.
func (s *Stack) AppendMaybes(dst []int, k Key) []int {
	if s == nil || s.n == 0 {
		return dst
	}
	i, bits := locate(k, uint64(len(s.words)/(wordsPerBlock*s.n)))
	row := s.words[int(i)*s.n*wordsPerBlock : (int(i)+1)*s.n*wordsPerBlock]
	for j := range s.n {
		if holds(row[j*wordsPerBlock:(j+1)*wordsPerBlock], bits) {
			dst = append(dst, j)
		}
	}
	return dst
}

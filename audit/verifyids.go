package audit

import (
	"bufio"
	"cmp"
	"container/heap"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"slices"

	"golang.org/x/mod/sumdb/tlog"
)

// A verification checks that no event id is logged twice by the same
// submitter, the guarantee the sequencer's duplicate check gives, which
// rests on the sequencer and on the generations' filters, not on a
// constraint (docs/threat-model.md, "Event-id uniqueness rests on the
// sequencer"). It keeps, for every entry with an event id, an idPair: the
// first 8 bytes of the entry's filter key (idfilter.KeyOf of its leaf's
// submitter and event id) and its seq. Pairs are sorted by key in chunks
// of idChunk, written to files, and merged; two entries whose keys are
// equal are a candidate, confirmed only from their leaves, each proved in
// the tree the verification recomputed. Memory is bounded by two chunks
// and a read buffer per file, whatever the log's size.
//
// An incremental verification merges its new entries' pairs with the
// sorted pairs of every entry below the tree it starts from: the
// event-id index its predecessor wrote beside the state file (IDIndex),
// whose content hash the state records.

// idChunk is how many pairs are sorted in memory at a time: 16 MiB.
const idChunk = 1 << 20

// idPairSize is the size of a pair in a file: the key, then the seq, both
// big-endian, so that files sort as their bytes do.
const idPairSize = 16

// maxDuplicateCandidates bounds the candidates a verification confirms
// and keeps in memory; more are reported as a problem of their own.
const maxDuplicateCandidates = 10000

// idPair is an entry with an event id, as the duplicate check keeps it.
type idPair struct {
	key uint64
	seq int64
}

// appendTo appends the pair as a file holds it.
func (p idPair) appendTo(b []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, p.key)
	return binary.BigEndian.AppendUint64(b, uint64(p.seq))
}

func compareIDPairs(a, b idPair) int {
	if c := cmp.Compare(a.key, b.key); c != 0 {
		return c
	}
	return cmp.Compare(a.seq, b.seq)
}

// idKeyOf is the key of an entry whose leaf names submitter and eventID:
// the first 8 bytes of idfilter.KeyOf(submitter, eventID), computed in
// buf without allocating.
func idKeyOf(buf *[]byte, submitter, eventID []byte) uint64 {
	b := binary.AppendUvarint((*buf)[:0], uint64(len(submitter)))
	b = append(b, submitter...)
	b = append(b, eventID...)
	*buf = b
	sum := sha256.Sum256(b)
	return binary.BigEndian.Uint64(sum[:8])
}

// IDIndex is an event-id index a verification wrote: the sorted pairs of
// every entry below Size that has an event id, in the file File (a base
// name, beside the state file). The state file records it, so that the
// next verification reads the file only if it is the one written.
type IDIndex struct {
	File   string `json:"file"`
	Size   int64  `json:"size"`
	Count  int64  `json:"count"`
	SHA256 string `json:"sha256"`

	// path is where the file is: set when it is written, and when a
	// state file naming it is read (beside the state file).
	path string
}

// Path is the index file's path: "" for an index read from a state that
// was not read from a file.
func (x *IDIndex) Path() string { return x.path }

// idCollector gathers the pairs of the entries a verification reads, in
// seq order, and writes each full chunk, sorted, to a file of its own in
// dir, one chunk at a time in the background.
type idCollector struct {
	dir     string // made on the first chunk written
	base    string // where dir is made ("" for the system's temporary directory)
	chunk   []idPair
	spare   []idPair
	files   []string
	writing chan error // the chunk being written, if any
	count   int64
}

func newIDCollector(base string) *idCollector {
	return &idCollector{base: base, chunk: make([]idPair, 0, idChunk)}
}

// add records the entry at seq with key.
func (c *idCollector) add(key uint64, seq int64) error {
	c.chunk = append(c.chunk, idPair{key, seq})
	c.count++
	if len(c.chunk) < idChunk {
		return nil
	}
	if err := c.wait(); err != nil {
		return err
	}
	if c.dir == "" {
		dir, err := os.MkdirTemp(c.base, ".mediator-verify-ids-")
		if err != nil {
			return fmt.Errorf("audit: verify: a directory for the event ids: %w", err)
		}
		c.dir = dir
	}
	full := c.chunk
	name := filepath.Join(c.dir, fmt.Sprintf("run-%d", len(c.files)))
	c.files = append(c.files, name)
	c.writing = make(chan error, 1)
	go func(done chan<- error) {
		slices.SortFunc(full, compareIDPairs)
		done <- writeIDFile(name, full)
	}(c.writing)
	if c.spare == nil {
		c.spare = make([]idPair, 0, idChunk)
	}
	c.chunk, c.spare = c.spare[:0], full
	return nil
}

// wait waits for the chunk being written.
func (c *idCollector) wait() error {
	if c.writing == nil {
		return nil
	}
	err := <-c.writing
	c.writing = nil
	return err
}

// close removes the files the collector wrote.
func (c *idCollector) close() {
	c.wait()
	if c.dir != "" {
		os.RemoveAll(c.dir)
	}
}

// writeIDFile writes pairs to a new file at name.
func writeIDFile(name string, pairs []idPair) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("audit: verify: %w", err)
	}
	w := bufio.NewWriterSize(f, 1<<18)
	var b [idPairSize]byte
	for _, p := range pairs {
		w.Write(p.appendTo(b[:0]))
	}
	err = w.Flush()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("audit: verify: write the event ids: %w", err)
	}
	return nil
}

// idSource is a sorted sequence of pairs: a file, or the chunk still in
// memory.
type idSource interface {
	next() (idPair, bool, error)
}

type idSlice struct{ pairs []idPair }

func (s *idSlice) next() (idPair, bool, error) {
	if len(s.pairs) == 0 {
		return idPair{}, false, nil
	}
	p := s.pairs[0]
	s.pairs = s.pairs[1:]
	return p, true, nil
}

// idFile reads a file of sorted pairs, checking the order, and, for an
// index written before, its count and content hash at its end.
type idFile struct {
	name  string
	f     *os.File
	r     *bufio.Reader
	h     hash.Hash
	last  idPair
	read  int64
	index *IDIndex // the index it must be, or nil for a file of this run
}

func openIDFile(name string, index *IDIndex) (*idFile, error) {
	f, err := os.Open(name)
	if err != nil && index != nil {
		return nil, fmt.Errorf("audit: verify: the state's event-id index: %w; remove the state to verify in full", err)
	}
	if err != nil {
		return nil, fmt.Errorf("audit: verify: the event-id index: %w", err)
	}
	s := &idFile{name: name, f: f, r: bufio.NewReaderSize(f, 1<<15), index: index}
	if index != nil {
		s.h = sha256.New()
	}
	return s, nil
}

func (s *idFile) next() (idPair, bool, error) {
	var b [idPairSize]byte
	if _, err := io.ReadFull(s.r, b[:]); err == io.EOF {
		return idPair{}, false, s.end()
	} else if err != nil {
		return idPair{}, false, fmt.Errorf("audit: verify: the event-id index %s: %w", s.name, err)
	}
	if s.h != nil {
		s.h.Write(b[:])
	}
	p := idPair{binary.BigEndian.Uint64(b[:8]), int64(binary.BigEndian.Uint64(b[8:]))}
	if s.read > 0 && compareIDPairs(s.last, p) >= 0 {
		return idPair{}, false, fmt.Errorf("audit: verify: the event-id index %s is not in order", s.name)
	}
	if s.index != nil && (p.seq < 0 || p.seq >= s.index.Size) {
		return idPair{}, false, fmt.Errorf("audit: verify: the event-id index %s names seq %d, outside the %d entries it covers", s.name, p.seq, s.index.Size)
	}
	s.last = p
	s.read++
	return p, true, nil
}

// end checks an index written before against what its state recorded.
func (s *idFile) end() error {
	if s.index == nil {
		return nil
	}
	if s.read != s.index.Count || hex.EncodeToString(s.h.Sum(nil)) != s.index.SHA256 {
		return fmt.Errorf("audit: verify: the event-id index %s is not the one the state file recorded (%d pairs read, %d recorded); remove the state to verify in full", s.name, s.read, s.index.Count)
	}
	return nil
}

// idHeap merges sources by their next pair.
type idHeap struct {
	heads []idPair
	srcs  []idSource
}

func (h *idHeap) Len() int           { return len(h.heads) }
func (h *idHeap) Less(i, j int) bool { return compareIDPairs(h.heads[i], h.heads[j]) < 0 }
func (h *idHeap) Swap(i, j int) {
	h.heads[i], h.heads[j] = h.heads[j], h.heads[i]
	h.srcs[i], h.srcs[j] = h.srcs[j], h.srcs[i]
}
func (h *idHeap) Push(any) { panic("unused") }
func (h *idHeap) Pop() any {
	n := len(h.heads) - 1
	h.heads, h.srcs = h.heads[:n], h.srcs[:n]
	return nil
}

// mergeIDs reads every source in key order and returns the pairs of
// entries with equal keys of which the later is at start or above (the
// earlier ones were checked by the verification that wrote the index),
// at most maxDuplicateCandidates of them, and whether there were more.
// Each pair below keepBelow is written to out, when out is not nil.
func mergeIDs(srcs []idSource, start, keepBelow int64, out func(idPair) error) (candidates [][2]int64, more bool, err error) {
	h := &idHeap{}
	for _, s := range srcs {
		p, ok, err := s.next()
		if err != nil {
			return nil, false, err
		}
		if ok {
			h.heads, h.srcs = append(h.heads, p), append(h.srcs, s)
		}
	}
	heap.Init(h)
	var first idPair
	started := false
	for h.Len() > 0 {
		p := h.heads[0]
		if next, ok, err := h.srcs[0].next(); err != nil {
			return nil, false, err
		} else if ok {
			h.heads[0] = next
			heap.Fix(h, 0)
		} else {
			heap.Pop(h)
		}
		if started && p.key == first.key {
			if p.seq == first.seq {
				return nil, false, fmt.Errorf("audit: verify: the event-id index names seq %d twice", p.seq)
			}
			if p.seq >= start {
				if len(candidates) < maxDuplicateCandidates {
					candidates = append(candidates, [2]int64{first.seq, p.seq})
				} else {
					more = true
				}
			}
		} else {
			first, started = p, true
		}
		if out != nil && p.seq < keepBelow {
			if err := out(p); err != nil {
				return nil, false, err
			}
		}
	}
	return candidates, more, nil
}

// checkEventIDs finds the entries of rep's tree that log an event id
// their submitter logged before: among the pairs ids collected, and
// against prev, the index of the entries below start when the
// verification started from a tree (nil otherwise, or for a tree without
// one: then only the entries read are checked, among themselves). When prefix is not ""
// and the verification has a checkpoint to save, it writes the index of
// the entries below rep.CheckpointSize at prefix.<hash> and records it in
// rep.EventIDIndex.
func (s *store) checkEventIDs(ctx context.Context, rep *Report, ids *idCollector, prev *IDIndex, start int64, prefix string) error {
	if err := ids.wait(); err != nil {
		return err
	}
	rep.EventIDs = ids.count
	slices.SortFunc(ids.chunk, compareIDPairs)
	srcs := []idSource{&idSlice{ids.chunk}}
	var files []*idFile
	defer func() {
		for _, f := range files {
			f.f.Close()
		}
	}()
	if prev != nil {
		f, err := openIDFile(prev.path, prev)
		if err != nil {
			return err
		}
		files = append(files, f)
	}
	for _, name := range ids.files {
		f, err := openIDFile(name, nil)
		if err != nil {
			return err
		}
		files = append(files, f)
	}
	for _, f := range files {
		srcs = append(srcs, f)
	}

	var out *indexWriter
	keep := rep.CheckpointSize
	if prefix != "" && keep > 0 && rep.OK() {
		w, err := newIndexWriter(prefix, keep)
		if err != nil {
			return err
		}
		defer w.abort()
		out = w
	}
	var write func(idPair) error
	if out != nil {
		write = out.add
	}
	candidates, more, err := mergeIDs(srcs, start, keep, write)
	if err != nil {
		return err
	}
	if more {
		rep.bad(-1, "more than %d pairs of entries with equal event-id keys; the first %d were checked", maxDuplicateCandidates, maxDuplicateCandidates)
	}
	if err := s.confirmDuplicates(ctx, rep, candidates); err != nil {
		return err
	}
	if out != nil && rep.OK() {
		index, err := out.finish()
		if err != nil {
			return err
		}
		rep.EventIDIndex = index
	}
	return nil
}

// confirmDuplicates reports each candidate pair whose leaves, proved in
// rep's tree, name the same submitter and event id.
func (s *store) confirmDuplicates(ctx context.Context, rep *Report, candidates [][2]int64) error {
	if len(candidates) == 0 {
		return nil
	}
	var sc leafScanner
	type named struct{ submitter, eventID string }
	read := func(seq int64) (named, bool, error) {
		e, err := s.Entry(ctx, seq)
		if err != nil {
			return named{}, false, fmt.Errorf("audit: verify: read entry %d: %w", seq, err)
		}
		p, err := tlog.ProveRecord(rep.TreeSize, seq, s.HashReader(ctx))
		if err == nil {
			err = tlog.CheckRecord(p, rep.TreeSize, rep.Root, seq, tlog.RecordHash(e.Leaf))
		}
		if err != nil || sc.scan(e.Leaf) != nil {
			rep.bad(seq, "seq %d: entry changed during verification (its leaf is not the one verified)", seq)
			return named{}, false, nil
		}
		return named{string(sc.submitter), string(sc.eventID)}, true, nil
	}
	for _, c := range candidates {
		if c[1] >= rep.TreeSize {
			continue
		}
		a, ok, err := read(c[0])
		if err != nil || !ok {
			return err
		}
		b, ok, err := read(c[1])
		if err != nil || !ok {
			return err
		}
		if a == b {
			rep.DuplicateEventIDs++
			rep.bad(c[1], "seq %d: logs again the event id its submitter logged at seq %d (an event logged twice: the sequencer's duplicate check was bypassed or misled)", c[1], c[0])
		}
	}
	return nil
}

// indexWriter writes an event-id index to a temporary file and, once
// finished, renames it to prefix.<its hash>.
type indexWriter struct {
	prefix string
	size   int64
	f      *os.File
	w      *bufio.Writer
	h      hash.Hash
	count  int64
}

func newIndexWriter(prefix string, size int64) (*indexWriter, error) {
	f, err := os.CreateTemp(filepath.Dir(prefix), "."+filepath.Base(prefix)+".*")
	if err != nil {
		return nil, fmt.Errorf("audit: verify: write the event-id index: %w", err)
	}
	return &indexWriter{prefix: prefix, size: size, f: f, w: bufio.NewWriterSize(f, 1<<18), h: sha256.New()}, nil
}

func (w *indexWriter) add(p idPair) error {
	var b [idPairSize]byte
	p.appendTo(b[:0])
	w.h.Write(b[:])
	w.count++
	_, err := w.w.Write(b[:])
	return err
}

// finish syncs the file and moves it to its name.
func (w *indexWriter) finish() (*IDIndex, error) {
	sum := hex.EncodeToString(w.h.Sum(nil))
	err := w.w.Flush()
	if err == nil {
		err = w.f.Sync()
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	name := w.prefix + "." + sum[:16]
	if err == nil {
		err = os.Rename(w.f.Name(), name)
	}
	if err != nil {
		return nil, fmt.Errorf("audit: verify: write the event-id index: %w", err)
	}
	w.f = nil
	return &IDIndex{File: filepath.Base(name), Size: w.size, Count: w.count, SHA256: sum, path: name}, nil
}

// abort removes the temporary file, unless finish moved it.
func (w *indexWriter) abort() {
	if w.f != nil {
		w.f.Close()
		os.Remove(w.f.Name())
	}
}

// ErrNoIDIndex is VerifyFrom's answer for a tree without its event-id
// index, as a state file written before the index existed has: verify in
// full once, which writes one.
var ErrNoIDIndex = errors.New("audit: verify: the verified tree has no event-id index: verify in full once to write one")

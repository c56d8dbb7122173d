package witness

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	tlogfmt "github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// memStore is a Store in memory, for the witness's pure logic.
type memStore struct {
	mu sync.Mutex
	m  map[string]Checkpoint
}

func (s *memStore) Latest(_ context.Context, origin string) (Checkpoint, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.m[origin]
	return c, ok, nil
}

func (s *memStore) Put(_ context.Context, origin string, prev *Checkpoint, next Checkpoint) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.m[origin]
	if ok != (prev != nil) || (ok && c != *prev) {
		return ErrChanged
	}
	s.m[origin] = next
	return nil
}

const origin = "mediator.test/audit"

// testLog is a log of n leaves with its hashes, signed by signer.
type testLog struct {
	hashes map[int64]tlog.Hash
	leaves int64
	signer note.Signer
}

func (l *testLog) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		out[i] = l.hashes[x]
	}
	return out, nil
}

func (l *testLog) grow(t *testing.T, n int, salt string) {
	for range n {
		hs, err := tlog.StoredHashes(l.leaves, []byte(fmt.Sprintf("%s-%d", salt, l.leaves)), l)
		if err != nil {
			t.Fatal(err)
		}
		for j, h := range hs {
			l.hashes[tlog.StoredHashIndex(0, l.leaves)+int64(j)] = h
		}
		l.leaves++
	}
}

func (l *testLog) checkpoint(t *testing.T, size int64) []byte {
	root, err := tlog.TreeHash(size, l)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := note.Sign(&note.Note{Text: string(tlogfmt.Checkpoint{Origin: origin, Size: uint64(size), Hash: root[:]}.Marshal())}, l.signer)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

func request(t *testing.T, l *testLog, old, size int64) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "old %d\n", old)
	if old > 0 && old < size {
		p, err := tlog.ProveTree(size, old, l)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range p {
			fmt.Fprintln(&b, base64.StdEncoding.EncodeToString(h[:]))
		}
	}
	b.WriteString("\n")
	b.Write(l.checkpoint(t, size))
	return b.Bytes()
}

func setup(t *testing.T) (*Witness, *testLog, note.Verifier) {
	skey, vkey, _ := note.GenerateKey(rand.Reader, origin)
	logSigner, _ := note.NewSigner(skey)
	logVerifier, _ := note.NewVerifier(vkey)
	seed := make([]byte, 32)
	rand.Read(seed)
	signer, wvkey, err := NewSigner("witness.test/w1", seed)
	if err != nil {
		t.Fatal(err)
	}
	wv, err := NewVerifier(wvkey)
	if err != nil {
		t.Fatal(err)
	}
	w := New(signer, &memStore{m: map[string]Checkpoint{}}, Log{Origin: origin, Verifiers: []note.Verifier{logVerifier}})
	return w, &testLog{hashes: map[int64]tlog.Hash{}, signer: logSigner}, wv
}

// TestCosignsOnlyConsistentCheckpoints: the witness cosigns the first
// checkpoint and each that extends it, with cosignatures that verify; it
// refuses a fork at the same size, a fork further on, a rollback, a stale
// old size (409 naming its size), an unknown log, another log key, and a
// bad proof.
func TestCosignsOnlyConsistentCheckpoints(t *testing.T) {
	ctx := context.Background()
	w, l, wv := setup(t)
	l.grow(t, 10, "a")
	sigs, err := w.AddCheckpoint(ctx, request(t, l, 0, 10))
	if err != nil {
		t.Fatal(err)
	}
	cosigned := append(l.checkpoint(t, 10), sigs...)
	if _, err := note.Open(cosigned, note.VerifierList(wv)); err != nil {
		t.Fatalf("the cosignature does not verify: %v\n%s", err, cosigned)
	}
	l.grow(t, 5, "a")
	if _, err := w.AddCheckpoint(ctx, request(t, l, 10, 15)); err != nil {
		t.Fatalf("an extension: %v", err)
	}

	// A fork: another log with the same first 12 leaves, then others.
	fork := &testLog{hashes: map[int64]tlog.Hash{}, signer: l.signer}
	fork.grow(t, 10, "a")
	fork.grow(t, 5, "b")
	forkAt15 := request(t, fork, 15, 15)
	fork.grow(t, 3, "b")
	status := func(err error) int {
		var we *Error
		if errors.As(err, &we) {
			return we.Status
		}
		return 0
	}
	otherKey, _, _ := note.GenerateKey(rand.Reader, origin)
	other, _ := note.NewSigner(otherKey)
	stranger := &testLog{hashes: l.hashes, leaves: l.leaves, signer: other}
	badProof := request(t, l, 15, 15)
	l.grow(t, 2, "a")
	badProof = request(t, l, 15, 17)
	badProof = bytes.Replace(badProof, []byte("\n\n"), []byte("\n"+base64.StdEncoding.EncodeToString(make([]byte, 32))+"\n\n"), 1)
	for name, c := range map[string]struct {
		body []byte
		want int
	}{
		"a fork at the same size": {forkAt15, http.StatusConflict},
		"a fork further on":       {request(t, fork, 15, 18), http.StatusUnprocessableEntity},
		"a rollback":              {request(t, l, 15, 12), http.StatusBadRequest},
		"a stale old size":        {request(t, l, 10, 17), http.StatusConflict},
		"another log key":         {request(t, stranger, 15, 17), http.StatusForbidden},
		"a bad proof":             {badProof, http.StatusUnprocessableEntity},
		"an unknown log":          {[]byte("old 0\n\nother.log\n1\n" + base64.StdEncoding.EncodeToString(make([]byte, 32)) + "\n\n— x AAAA\n"), http.StatusNotFound},
		"no old size line":        {[]byte("15\n\n"), http.StatusBadRequest},
		"a proof from zero":       {bytes.Replace(request(t, l, 0, 17), []byte("old 0\n"), []byte("old 0\n"+base64.StdEncoding.EncodeToString(make([]byte, 32))+"\n"), 1), http.StatusConflict},
	} {
		if _, err := w.AddCheckpoint(ctx, c.body); status(err) != c.want {
			t.Errorf("%s: %v, want status %d", name, err, c.want)
		}
	}
	// Still at 15, and the genuine next checkpoint is cosigned.
	if c, _, _ := w.store.Latest(ctx, origin); c.Size != 15 {
		t.Fatalf("the witness moved to %d", c.Size)
	}
	if _, err := w.AddCheckpoint(ctx, request(t, l, 15, 17)); err != nil {
		t.Fatal(err)
	}
}

// TestHandlerSpeaksTheProtocol: 200 with signature lines, 409 with
// text/x.tlog.size and the witness's size.
func TestHandlerSpeaksTheProtocol(t *testing.T) {
	w, l, _ := setup(t)
	srv := httptest.NewServer(w.Handler())
	defer srv.Close()
	l.grow(t, 4, "a")
	resp, err := http.Post(srv.URL+"/add-checkpoint", "text/plain", bytes.NewReader(request(t, l, 0, 4)))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", resp, err)
	}
	resp.Body.Close()
	resp, err = http.Post(srv.URL+"/add-checkpoint", "text/plain", bytes.NewReader(request(t, l, 0, 4)))
	if err != nil || resp.StatusCode != http.StatusConflict || resp.Header.Get("Content-Type") != "text/x.tlog.size" {
		t.Fatalf("a stale old size: %v %v", resp, err)
	}
	var b strings.Builder
	buf := make([]byte, 64)
	n, _ := resp.Body.Read(buf)
	b.Write(buf[:n])
	if b.String() != "4\n" {
		t.Fatalf("409 body %q", b.String())
	}
}

// TestRecorderSignsNothing: a recorder (a mirror's pending checkpoint)
// checks as a witness does, answers no cosignature, and stores the
// checkpoint with the log's signature alone, even when the request
// carried another line.
func TestRecorderSignsNothing(t *testing.T) {
	ctx := context.Background()
	skey, vkey, _ := note.GenerateKey(rand.Reader, origin)
	logSigner, _ := note.NewSigner(skey)
	logVerifier, _ := note.NewVerifier(vkey)
	l := &testLog{hashes: map[int64]tlog.Hash{}, signer: logSigner}
	store := &memStore{m: map[string]Checkpoint{}}
	r := NewRecorder(store, Log{Origin: origin, Verifiers: []note.Verifier{logVerifier}})
	l.grow(t, 10, "a")
	body := append(request(t, l, 0, 10), "— someone.else AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==\n"...)
	sigs, err := r.AddCheckpoint(ctx, body)
	if err != nil || len(sigs) != 0 {
		t.Fatalf("AddCheckpoint = %q, %v; want no cosignature", sigs, err)
	}
	got := store.m[origin]
	if got.Size != 10 || got.Note != string(l.checkpoint(t, 10)) {
		t.Fatalf("stored %d and note\n%s\nwant 10 and only the log's signature", got.Size, got.Note)
	}
	fork := &testLog{hashes: map[int64]tlog.Hash{}, signer: logSigner}
	fork.grow(t, 10, "b")
	if _, err := r.AddCheckpoint(ctx, request(t, fork, 10, 10)); err == nil {
		t.Fatal("the recorder took a fork")
	}
}

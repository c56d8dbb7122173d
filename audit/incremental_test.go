package audit

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// verifiedState is the state a passing verification of f's log saves.
func (f *fixture) verifiedState(t *testing.T, rep *Report) VerifiedTree {
	t.Helper()
	if !rep.OK() {
		t.Fatalf("verification failed: %+v", rep)
	}
	st, err := NewVerifyState(context.Background(), f.pool, rep, WitnessPolicy{}, f.verifier)
	if err != nil || st == nil {
		t.Fatalf("state: %v %v", st, err)
	}
	tree, err := st.Tree(testOrigin, f.verifier)
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

func (f *fixture) verifyFrom(t *testing.T, from VerifiedTree) *Report {
	t.Helper()
	rep, err := VerifyFrom(context.Background(), f.pool, VerifyOptions{}, from, f.verifier)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func (f *fixture) exec(t *testing.T, q string, args ...any) {
	t.Helper()
	if _, err := f.pool.Exec(context.Background(), q, args...); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyFromChecksOnlyTheNewEntries: from a saved state, only the
// entries after it are read (and a bad one among them is named), the
// checkpoints above it are checked, and a consistency proof to the newest
// checkpoint is; progress counts the new entries only.
func TestVerifyFromChecksOnlyTheNewEntries(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.append(t, entries(0, 20, "c"))
	if _, err := f.cp.Once(ctx); err != nil {
		t.Fatal(err)
	}
	from := f.verifiedState(t, f.verify(t))
	if from.Size != 20 {
		t.Fatalf("state at %d", from.Size)
	}
	if rep := f.verifyFrom(t, from); !rep.OK() || rep.Entries != 0 || rep.TreeSize != 20 || rep.Consistency != "ok" || rep.CheckpointSize != 20 {
		t.Fatalf("nothing new: %+v", rep)
	}
	f.append(t, entries(20, 15, "c"))
	if _, err := f.cp.Once(ctx); err != nil {
		t.Fatal(err)
	}
	f.append(t, entries(35, 3, "c")) // not yet under a checkpoint
	var last [2]int64
	rep, err := VerifyFrom(ctx, f.pool, VerifyOptions{Progress: func(done, total int64) { last = [2]int64{done, total} }}, from, f.verifier)
	if err != nil || !rep.OK() || rep.Entries != 18 || rep.TreeSize != 38 || rep.FromSize != 20 || rep.Checkpoints != 1 ||
		rep.CheckpointSize != 35 || rep.Consistency != "ok" || last != [2]int64{18, 18} {
		t.Fatalf("18 new entries: %v %+v progress %v", err, rep, last)
	}
	// An entry below the state is not read again: a column changed
	// there is for a full run; one above it is named.
	f.exec(t, "ALTER TABLE audit_entries DISABLE TRIGGER ALL")
	f.exec(t, "UPDATE audit_entries SET kind = 'other' WHERE seq IN (3, 27)")
	rep = f.verifyFrom(t, from)
	if rep.OK() || rep.FirstBadSeq != 27 || !strings.Contains(rep.FirstBadProblem, "kind differs") {
		t.Fatalf("column changed at 27: %+v", rep)
	}
	if full := f.verify(t); full.FirstBadSeq != 3 {
		t.Fatalf("full run: %+v", full)
	}
}

// rewrite rewrites entry seq's leaf as a superuser can (the triggers
// off) and every stored hash from it on consistently, so that the hashes
// recomputed from the leaves match the stored ones.
func (f *fixture) rewrite(t *testing.T, seq int64) {
	t.Helper()
	ctx := context.Background()
	f.exec(t, "ALTER TABLE audit_entries DISABLE TRIGGER ALL")
	rows, err := f.pool.Query(ctx, "SELECT seq, leaf FROM audit_entries ORDER BY seq")
	if err != nil {
		t.Fatal(err)
	}
	var leaves [][]byte
	for rows.Next() {
		var s int64
		var leaf []byte
		if err := rows.Scan(&s, &leaf); err != nil {
			t.Fatal(err)
		}
		leaves = append(leaves, leaf)
	}
	rows.Close()
	forged := bytes.Replace(leaves[seq], []byte(`"note":"nev-`), []byte(`"note":"forged-`), 1)
	if bytes.Equal(forged, leaves[seq]) {
		t.Fatalf("leaf %d has no note: %s", seq, leaves[seq])
	}
	leaves[seq] = forged
	hashes := map[int64]tlog.Hash{}
	reader := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = hashes[x]
		}
		return out, nil
	})
	for s, leaf := range leaves {
		stored, err := tlog.StoredHashes(int64(s), leaf, reader)
		if err != nil {
			t.Fatal(err)
		}
		var packed []byte
		for j, h := range stored {
			hashes[tlog.StoredHashIndex(0, int64(s))+int64(j)] = h
			packed = append(packed, h[:]...)
		}
		if int64(s) >= seq {
			f.exec(t, "UPDATE audit_entries SET leaf = $2, hashes = $3 WHERE seq = $1", s, leaf, packed)
		}
	}
	f.exec(t, "ALTER TABLE audit_entries ENABLE TRIGGER ALL")
}

// TestVerifyFromCatchesARewrite: a leaf below the saved state rewritten
// with all its stored hashes, so that recomputing the hashes from the
// leaves finds nothing, fails the incremental run: the consistency proof
// from the saved tree to the newest checkpoint does not check.
func TestVerifyFromCatchesARewrite(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.append(t, entries(0, 20, "c"))
	if _, err := f.cp.Once(ctx); err != nil {
		t.Fatal(err)
	}
	from := f.verifiedState(t, f.verify(t))
	f.append(t, entries(20, 10, "c"))
	if _, err := f.cp.Once(ctx); err != nil {
		t.Fatal(err)
	}
	f.rewrite(t, 5)
	// A naive recount passes: every leaf hashes to its stored hashes.
	full := f.verify(t)
	if full.FirstBadSeq != -1 || full.OK() {
		t.Fatalf("full run after a consistent rewrite: %+v", full)
	}
	rep := f.verifyFrom(t, from)
	if rep.OK() || rep.Consistency != "failed" || !strings.Contains(strings.Join(rep.Problems, "\n"), "consistency proof from the tree verified before (size 20") ||
		!strings.Contains(strings.Join(rep.Problems, "\n"), "entries below 20 were rewritten") {
		t.Fatalf("incremental run after a rewrite below the state: %+v", rep)
	}
}

// TestVerifyFromCatchesARollback: a log shorter than the saved state, or
// whose newest checkpoint is below it, fails.
func TestVerifyFromCatchesARollback(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.append(t, entries(0, 20, "c"))
	if _, err := f.cp.Once(ctx); err != nil {
		t.Fatal(err)
	}
	from := f.verifiedState(t, f.verify(t))
	f.exec(t, "ALTER TABLE audit_checkpoints DISABLE TRIGGER ALL")
	f.exec(t, "DELETE FROM audit_checkpoints WHERE tree_size = 20")
	if rep := f.verifyFrom(t, from); rep.OK() || rep.Consistency != "failed" || !strings.Contains(strings.Join(rep.Problems, "\n"), "smaller than the 20 verified before") {
		t.Fatalf("checkpoints rolled back: %+v", rep)
	}
	f.exec(t, "ALTER TABLE audit_entries DISABLE TRIGGER ALL")
	f.exec(t, "DELETE FROM audit_entries WHERE seq >= 12")
	if rep := f.verifyFrom(t, from); rep.OK() || !strings.Contains(strings.Join(rep.Problems, "\n"), "the log holds 12 entries, fewer than the 20 verified before") {
		t.Fatalf("entries truncated: %+v", rep)
	}
}

// TestVerifyStateFile: the state is written atomically with mode 0600 and
// read strictly; a state of another log (another origin, or a checkpoint
// another key signed) is refused.
func TestVerifyStateFile(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.append(t, entries(0, 4, "c"))
	if _, err := f.cp.Once(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := NewVerifyState(ctx, f.pool, f.verify(t), WitnessPolicy{}, f.verifier)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "state.json")
	if err := st.Write(path); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode: %v %v", fi, err)
	}
	if files, _ := os.ReadDir(filepath.Dir(path)); len(files) != 1 {
		t.Fatalf("temporary files left: %v", files)
	}
	back, err := ReadVerifyState(path)
	if err != nil || back.Size != 4 || back.Origin != testOrigin || back.Checkpoint != st.Checkpoint || back.Version != VerifyStateVersion {
		t.Fatalf("read back: %+v %v", back, err)
	}
	if _, err := back.Tree(testOrigin, f.verifier); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadVerifyState(filepath.Join(t.TempDir(), "none")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing: %v", err)
	}
	b, _ := json.Marshal(st)
	for name, text := range map[string]string{
		"unknown field": strings.Replace(string(b), `"version":1`, `"version":1,"extra":1`, 1),
		"version 2":     strings.Replace(string(b), `"version":1`, `"version":2`, 1),
		"trailing data": string(b) + "{}",
	} {
		os.WriteFile(path, []byte(text), 0o600)
		if _, err := ReadVerifyState(path); err == nil {
			t.Errorf("%s: read", name)
		}
	}
	var mismatch *OriginMismatch
	if _, err := st.Tree("mediator.example/audit", f.verifier); !errors.As(err, &mismatch) {
		t.Fatalf("another origin: %v", err)
	}
	skey, _, _ := note.GenerateKey(rand.Reader, testOrigin)
	other, _ := note.NewSigner(skey)
	forged := *st
	forged.Checkpoint, _ = SignCheckpoint(testOrigin, 4, tlog.Hash{1}, other)
	if _, err := forged.Tree(testOrigin, f.verifier); err == nil || !strings.Contains(err.Error(), "another log's state") {
		t.Fatalf("another key: %v", err)
	}
}

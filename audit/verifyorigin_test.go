package audit

import (
	"context"
	"crypto/rand"
	"slices"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// TestVerifyOriginMismatchIsNotTampering: verified against another origin
// than the one its checkpoints name (a verifier configured with the
// default origin, say), an intact log is an origin mismatch, a
// configuration error, with no problem found; a tampered entry is still a
// problem at its seq; and a checkpoint naming another origin among the
// log's own is a problem, not a mismatch.
func TestVerifyOriginMismatchIsNotTampering(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.append(t, entries(0, 10, "c"))
	if _, err := f.cp.Once(ctx); err != nil {
		t.Fatal(err)
	}
	_, vkey, err := note.GenerateKey(rand.Reader, "mediator/audit")
	if err != nil {
		t.Fatal(err)
	}
	other, _ := note.NewVerifier(vkey)
	rep, err := VerifyWith(ctx, f.pool, VerifyOptions{Origin: "mediator/audit"}, other)
	if err != nil {
		t.Fatal(err)
	}
	m := rep.OriginMismatch
	if m == nil || m.Expected != "mediator/audit" || !slices.Equal(m.Found, []string{testOrigin}) || len(rep.Problems) != 0 || rep.OK() {
		t.Fatalf("mismatch %+v, problems %v, ok %v", m, rep.Problems, rep.OK())
	}
	if want := "origin mediator/audit expected, " + testOrigin + " found"; m.Error() != want {
		t.Fatalf("%q, want %q", m.Error(), want)
	}
	if rep.Entries != 10 || rep.TreeSize != 10 || rep.CheckpointSize != 0 {
		t.Fatalf("entries %d, tree size %d, checkpoint size %d", rep.Entries, rep.TreeSize, rep.CheckpointSize)
	}

	// The same log under its own origin verifies, and names its tree.
	rep, err = VerifyWith(ctx, f.pool, VerifyOptions{Origin: testOrigin}, f.verifier)
	if err != nil || !rep.OK() || rep.OriginMismatch != nil {
		t.Fatalf("own origin: %v %+v", err, rep)
	}
	cp, _ := f.store.latestStored(ctx)
	if rep.TreeSize != 10 || rep.Root != cp.Root || rep.CheckpointSize != 10 || rep.Origin != testOrigin {
		t.Fatalf("tree %d %x, checkpoint %d, origin %q; the checkpoint says 10 %x", rep.TreeSize, rep.Root, rep.CheckpointSize, rep.Origin, cp.Root)
	}

	// A tampered entry is found whatever the origin.
	for _, q := range []string{
		"ALTER TABLE audit_entries DISABLE TRIGGER audit_entries_append_only",
		"UPDATE audit_entries SET kind = 'receipt' WHERE seq = 4",
	} {
		if _, err := f.pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	rep, err = VerifyWith(ctx, f.pool, VerifyOptions{Origin: "mediator/audit"}, other)
	if err != nil || rep.OK() || rep.FirstBadSeq != 4 || !strings.Contains(rep.FirstBadProblem, "kind") || rep.OriginMismatch == nil {
		t.Fatalf("tampered, other origin: %v %+v", err, rep)
	}
	if _, err := f.pool.Exec(ctx, "UPDATE audit_entries SET kind = 'message' WHERE seq = 4"); err != nil {
		t.Fatal(err)
	}

	// A checkpoint of another origin among the log's: a problem.
	skey, _, _ := note.GenerateKey(rand.Reader, "elsewhere/audit")
	s, _ := note.NewSigner(skey)
	forged, err := SignCheckpoint("elsewhere/audit", 5, tlog.Hash{}, s)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"ALTER TABLE audit_checkpoints DISABLE TRIGGER audit_checkpoints_append_only",
		"INSERT INTO audit_checkpoints (tree_size, root_hash, note) VALUES (5, $1, $2)",
	} {
		args := []any{}
		if strings.Contains(q, "$1") {
			args = append(args, make([]byte, 32), forged)
		}
		if _, err := f.pool.Exec(ctx, q, args...); err != nil {
			t.Fatal(err)
		}
	}
	rep, err = VerifyWith(ctx, f.pool, VerifyOptions{Origin: testOrigin}, f.verifier)
	if err != nil || rep.OK() || rep.OriginMismatch != nil || !strings.Contains(strings.Join(rep.Problems, "\n"), `checkpoint 5: names origin "elsewhere/audit"`) {
		t.Fatalf("a checkpoint of another origin among the log's: %v %+v", err, rep)
	}
}

// TestVerifyTellsProgress: the progress hook hears of every page, from 0
// to the whole log, rising, with the log's size as the total.
func TestVerifyTellsProgress(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	const n = 2*verifyPage + 500
	f.appendMany(t, n, "c")
	type call struct{ done, total int64 }
	var calls []call
	rep, err := VerifyWith(ctx, f.pool, VerifyOptions{Progress: func(done, total int64) { calls = append(calls, call{done, total}) }}, f.verifier)
	if err != nil || !rep.OK() || rep.Entries != n {
		t.Fatalf("%v %+v", err, rep)
	}
	if len(calls) < 4 || calls[0] != (call{0, n}) || calls[len(calls)-1] != (call{n, n}) {
		t.Fatalf("progress: %v", calls)
	}
	for i := 1; i < len(calls); i++ {
		if calls[i].done < calls[i-1].done || calls[i].total != n {
			t.Fatalf("progress goes back or changes its total: %v", calls)
		}
	}
}

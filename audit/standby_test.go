package audit

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/mod/sumdb/note"
)

// TestReadsFromAStandbyNeverServeWrong: a Log whose reads go to a
// standby serves the published checkpoint, proofs and tiles as far as the
// standby has replayed, answers ErrNotReplicated for a tree it has not
// (never a wrong proof, never "no such thing" for what the primary has),
// reads a missing entry from the primary, and serves the same proofs as
// the primary once it has caught up.
func TestReadsFromAStandbyNeverServeWrong(t *testing.T) {
	ctx := context.Background()
	primary, standby, dsn := startPrimaryAndStandby(t, "reads")
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	readPool, err := pgxpool.New(ctx, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/reads?sslmode=disable&target_session_attrs=prefer-standby", standby.Port()))
	if err != nil {
		t.Fatal(err)
	}
	defer readPool.Close()

	skey, _, _ := note.GenerateKey(rand.Reader, testOrigin)
	key, _ := ParseCheckpointKey(skey, testOrigin)
	l, closeLog, err := Open(ctx, Config{Pool: pool, ReadPool: readPool, Origin: testOrigin, Key: key, CheckpointInterval: 20 * time.Millisecond, LeaderInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer closeLog(ctx)
	signed := func(want int64) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if _, err := l.store.checkpointAt(ctx, want); err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("no checkpoint of %d entries signed", want)
			}
		}
	}
	if _, err := l.Append(ctx, entries(0, 300, "s")); err != nil {
		t.Fatal(err)
	}
	signed(300)
	waitReplayed(t, ctx, primary, standby)
	if _, err := readPool.Exec(ctx, "SELECT pg_wal_replay_pause()"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, entries(300, 300, "s")); err != nil {
		t.Fatal(err)
	}
	signed(600)

	if cp, err := l.LatestCheckpoint(ctx); err != nil || cp.Size != 300 {
		t.Fatalf("the standby's published checkpoint: %d %v, want 300", cp.Size, err)
	}
	if _, err := l.InclusionProof(ctx, 5, 600); !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("an inclusion proof in a tree the standby lacks: %v", err)
	}
	if _, err := l.ConsistencyProof(ctx, 300, 600); !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("a consistency proof to a tree the standby lacks: %v", err)
	}
	if _, err := l.HashTile(ctx, 0, 1, TileWidth); !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("a full tile the primary holds: %v", err)
	}
	if _, err := l.HashTile(ctx, 0, 9, TileWidth); !errors.Is(err, ErrNotFound) || errors.Is(err, ErrNotReplicated) {
		t.Fatalf("a tile no one holds: %v", err)
	}
	if e, err := l.Entry(ctx, 550); err != nil || e.Seq != 550 {
		t.Fatalf("an entry the standby lacks, read from the primary: %v %v", e.Seq, err)
	}
	want, err := l.store.InclusionProof(ctx, 5, 300)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := l.InclusionProof(ctx, 5, 300); err != nil || !slices.Equal(got, want) {
		t.Fatalf("a proof in the replayed tree: %v", err)
	}

	if _, err := readPool.Exec(ctx, "SELECT pg_wal_replay_resume()"); err != nil {
		t.Fatal(err)
	}
	waitReplayed(t, ctx, primary, standby)
	want, err = l.store.InclusionProof(ctx, 5, 600)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := l.InclusionProof(ctx, 5, 600); err != nil || !slices.Equal(got, want) {
		t.Fatalf("the proof once the standby caught up: %v", err)
	}
	if cp, err := l.LatestCheckpoint(ctx); err != nil || cp.Size != 600 {
		t.Fatalf("the standby's published checkpoint after catching up: %d %v", cp.Size, err)
	}
}

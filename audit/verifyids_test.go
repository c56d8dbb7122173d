package audit

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/mediatorhq/mediator/idfilter"
)

// logAround appends e as the runtime role can, with INSERT and SELECT
// alone and around the sequencer and its duplicate check: a leaf at the
// log's end, and the stored hashes that make it a sound tree with the
// entries before it.
func logAround(t *testing.T, rt *pgxpool.Pool, e Entry) int64 {
	t.Helper()
	ctx := context.Background()
	var size int64
	if err := rt.QueryRow(ctx, sqlTreeSize).Scan(&size); err != nil {
		t.Fatal(err)
	}
	at := time.Now().UTC().Truncate(time.Microsecond)
	leaf, err := EncodeLeaf(e.Record, size, at)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := tlog.StoredHashes(size, leaf, entryHashes.Reader(ctx, rt))
	if err != nil {
		t.Fatal(err)
	}
	var packed []byte
	for _, h := range stored {
		packed = append(packed, h[:]...)
	}
	if _, err := rt.Exec(ctx, `INSERT INTO audit_entries (seq, leaf, hashes, kind, event_id, submitter, conversation_id, occurred_at, ingested_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		size, leaf, packed, e.Kind, e.EventID, nullable(e.Submitter), e.ConversationID, e.OccurredAt, at); err != nil {
		t.Fatal(err)
	}
	return size
}

// TestVerifyFindsAnEventLoggedTwice plays the runtime role, which may
// insert into audit_entries: it logs an event a gateway already logged
// again, around the sequencer, with a leaf and stored hashes that make a
// sound tree, and the service's next checkpoint signs over it (an event
// id's uniqueness rests on the sequencer, not on a constraint). A full
// verification and one from a state saved before both name the entry
// and the one it repeats; the same event id under another submitter is
// not a repeat.
func TestVerifyFindsAnEventLoggedTwice(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.append(t, []Entry{submitted("gw-a", "ev-1", "first"), submitted("gw-a", "ev-2", "second")})
	f.append(t, entries(0, 40, "c"))
	// The same id, another submitter: another event.
	f.append(t, []Entry{submitted("gw-b", "ev-1", "another gateway's")})
	if _, err := f.cp.Once(ctx); err != nil {
		t.Fatal(err)
	}
	rep := f.verify(t)
	if !rep.OK() || rep.EventIDs != 43 || rep.DuplicateEventIDs != 0 || rep.EventIDIndex == nil || rep.EventIDIndex.Count != 43 {
		t.Fatalf("a log without a repeat: %+v", rep)
	}
	state := f.verifiedState(t, rep)

	rt := f.runtimeLogin(t)
	again := logAround(t, rt, submitted("gw-a", "ev-2", "second"))
	if again != 43 {
		t.Fatalf("the repeat went to seq %d", again)
	}
	f.append(t, entries(100, 5, "c"))
	if _, err := f.cp.Once(ctx); err != nil {
		t.Fatal(err)
	}

	for name, rep := range map[string]*Report{"full": f.verify(t), "from the state": f.verifyFrom(t, state)} {
		want := "seq 43: logs again the event id its submitter logged at seq 1"
		if rep.OK() || rep.DuplicateEventIDs != 1 || rep.FirstBadSeq != 43 || len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0], want) {
			t.Fatalf("%s: %d duplicates, first bad seq %d, problems %q; want only %q", name, rep.DuplicateEventIDs, rep.FirstBadSeq, rep.Problems, want)
		}
		if rep.EventIDIndex != nil {
			t.Fatalf("%s: an index was kept for a log that failed", name)
		}
		if rep.CheckpointSize != 49 || rep.Consistency == "failed" {
			t.Fatalf("%s: the tree itself is sound, and must verify as such: %+v", name, rep)
		}
	}
}

// TestIDIndexEditedIsRefused: an event-id index that is not the one the
// state recorded (a pair removed, which would hide an id, or one byte
// changed), or is gone, stops an incremental verification, rather than
// check against it.
func TestIDIndexEditedIsRefused(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.append(t, entries(0, 30, "c"))
	if _, err := f.cp.Once(ctx); err != nil {
		t.Fatal(err)
	}
	state := f.verifiedState(t, f.verify(t))
	path := state.EventIDs.Path()
	good, err := os.ReadFile(path)
	if err != nil || len(good) != 30*idPairSize {
		t.Fatalf("index %s: %d bytes, %v", path, len(good), err)
	}
	if rep := f.verifyFrom(t, state); !rep.OK() || rep.EventIDs != 0 {
		t.Fatalf("from the state, unedited: %+v", rep)
	}
	flipped := slices.Clone(good)
	flipped[len(flipped)-1] ^= 1
	for name, edited := range map[string][]byte{"a pair removed": good[:len(good)-idPairSize], "a byte changed": flipped} {
		if err := os.WriteFile(path, edited, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := VerifyFrom(ctx, f.pool, VerifyOptions{}, state, f.verifier); err == nil || !strings.Contains(err.Error(), "is not the one the state file recorded") {
			t.Fatalf("%s: %v, want the index refused", name, err)
		}
	}
	// A missing index names the way out.
	os.Remove(path)
	if _, err := VerifyFrom(ctx, f.pool, VerifyOptions{}, state, f.verifier); err == nil || !strings.Contains(err.Error(), "remove the state to verify in full") {
		t.Fatalf("a missing index: %v", err)
	}
	// A tree without an index is refused too: its new entries could not
	// be checked against it.
	state.EventIDs = nil
	if _, err := VerifyFrom(ctx, f.pool, VerifyOptions{}, state, f.verifier); err != ErrNoIDIndex {
		t.Fatalf("without an index: %v", err)
	}
}

// TestVerifyIDsAcrossChunks: ids are sorted in chunks of idChunk and
// merged; a repeat whose two entries are in different chunks, and one
// within a chunk, are both candidates, and the merged index holds every
// pair below the size kept, in order.
func TestVerifyIDsAcrossChunks(t *testing.T) {
	c := newIDCollector(t.TempDir())
	defer c.close()
	n := int64(idChunk*2 + 100)
	key := func(seq int64) uint64 { return uint64(seq)*0x9e3779b97f4a7c15 + 1 }
	for seq := range n {
		k := key(seq)
		switch seq {
		case idChunk + 5: // repeats seq 3, in the first chunk
			k = key(3)
		case 2*idChunk + 50: // repeats seq 2*idChunk + 10, in the same (last) chunk
			k = key(2*idChunk + 10)
		}
		if err := c.add(k, seq); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.wait(); err != nil {
		t.Fatal(err)
	}
	if len(c.files) != 2 {
		t.Fatalf("%d chunk files, want 2", len(c.files))
	}
	slices.SortFunc(c.chunk, compareIDPairs)
	srcs := []idSource{&idSlice{c.chunk}}
	for _, name := range c.files {
		f, err := openIDFile(name, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer f.f.Close()
		srcs = append(srcs, f)
	}
	var kept []idPair
	got, more, err := mergeIDs(srcs, 0, n-10, func(p idPair) error { kept = append(kept, p); return nil })
	if err != nil || more {
		t.Fatal(err, more)
	}
	want := [][2]int64{{3, idChunk + 5}, {2*idChunk + 10, 2*idChunk + 50}}
	slices.SortFunc(got, func(a, b [2]int64) int { return int(a[0] - b[0]) })
	if !slices.Equal(got, want) {
		t.Fatalf("candidates %v, want %v", got, want)
	}
	if int64(len(kept)) != n-10 || !slices.IsSortedFunc(kept, compareIDPairs) {
		t.Fatalf("kept %d pairs (sorted: %v), want %d", len(kept), slices.IsSortedFunc(kept, compareIDPairs), n-10)
	}
	// Only repeats reaching start are candidates: the rest were checked
	// by the verification that wrote the index.
	c2 := &idSlice{slices.Clone(kept)}
	if got, _, err := mergeIDs([]idSource{c2}, idChunk+6, 0, nil); err != nil || len(got) != 1 || got[0] != want[1] {
		t.Fatalf("from %d: %v %v, want only %v", idChunk+6, got, err, want[1])
	}
}

// TestIDKeyIsTheFilterKey: the key verification keeps is the one the
// sequencer's filters hash, so the two name an id the same way.
func TestIDKeyIsTheFilterKey(t *testing.T) {
	var buf []byte
	for _, c := range [][2]string{{"", "ev-1"}, {"gw-a", "ev-1"}, {"gw-a", ""}, {"g", "w-aev-1"}} {
		k := idfilter.KeyOf(c[0], c[1])
		want := uint64(0)
		for _, b := range k[:8] {
			want = want<<8 | uint64(b)
		}
		if got := idKeyOf(&buf, []byte(c[0]), []byte(c[1])); got != want {
			t.Fatalf("%q: %x, want %x", c, got, want)
		}
	}
}

// fillSound appends entries from to to (exclusive) as sound filler: JSON
// leaves without an event id and the stored hashes that make a tree with
// the entries before them, written with one COPY, faster than the
// sequencer would.
func (f *fixture) fillSound(t *testing.T, from, to int64) {
	t.Helper()
	ctx := context.Background()
	hashes := make([]tlog.Hash, tlog.StoredHashCount(to))
	old, err := readHashes(ctx, f.pool, seqRange(0, tlog.StoredHashCount(from)))
	if err != nil {
		t.Fatal(err)
	}
	copy(hashes, old)
	reader := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = hashes[x]
		}
		return out, nil
	})
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	rows := make([][]any, 0, to-from)
	for seq := from; seq < to; seq++ {
		leaf, err := EncodeLeaf(rec{Kind: "filler", Note: "f"}, seq, at)
		if err != nil {
			t.Fatal(err)
		}
		stored, err := tlog.StoredHashes(seq, leaf, reader)
		if err != nil {
			t.Fatal(err)
		}
		var packed []byte
		for j, h := range stored {
			hashes[tlog.StoredHashIndex(0, seq)+int64(j)] = h
			packed = append(packed, h[:]...)
		}
		rows = append(rows, []any{seq, leaf, packed, "filler", at})
	}
	if _, err := f.pool.CopyFrom(ctx, pgx.Identifier{"audit_entries"}, []string{"seq", "leaf", "hashes", "kind", "ingested_at"}, pgx.CopyFromRows(rows)); err != nil {
		t.Fatal(err)
	}
}

// seqRange is the numbers from to to (exclusive).
func seqRange(from, to int64) []int64 {
	out := make([]int64, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

// TestVerifyFindsARepeatAForgedFilterLetIn plays the runtime role against
// a closed generation whose filter the service has not stored yet: it
// stores, as the service's job would, a filter of the generation's size
// and last leaf that holds no id, so that the duplicate check of a
// process that reads it rules out every id of that generation, and a
// gateway's resend of an event logged there is logged again as a new
// entry. The next checkpoint signs it; verification names it.
func TestVerifyFindsARepeatAForgedFilterLetIn(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.append(t, entries(0, 100, "c"))
	f.fillSound(t, 100, closedGenerationSize)

	rt := f.runtimeLogin(t)
	empty, err := idfilter.New(1 << generationBits).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Exec(ctx, sqlStoreFilter, 0, empty, int64(1<<generationBits)-1); err != nil {
		t.Fatalf("the runtime role stores a filter: %v", err)
	}
	// A process started now reads the stored filters.
	s := newStore(f.pool)
	out, err := s.appendNow(ctx, entries(5, 1, "c"))
	if err != nil {
		t.Fatal(err)
	}
	if out[0].Duplicate || out[0].Seq != closedGenerationSize {
		t.Fatalf("the resend of ev-5: %+v; want it logged again at %d, past the forged filter", out[0], closedGenerationSize)
	}
	if _, err := f.cp.Once(ctx); err != nil {
		t.Fatal(err)
	}
	rep := f.verify(t)
	want := fmt.Sprintf("seq %d: logs again the event id its submitter logged at seq 5", closedGenerationSize)
	if rep.OK() || rep.DuplicateEventIDs != 1 || len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0], want) {
		t.Fatalf("%d duplicates, problems %q; want only %q", rep.DuplicateEventIDs, rep.Problems, want)
	}
}

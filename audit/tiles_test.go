package audit

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/client"
	"golang.org/x/mod/sumdb/tlog"
)

// TestTilesAgainstTesseraClient reads the log's C2SP tiles and entry
// bundles with Tessera's client, code we did not write: its inclusion and
// consistency proofs, built from our hash tiles alone, must be byte-equal
// to the store's own, and its parse of our entry bundles must give back
// the stored leaves.
func TestTilesAgainstTesseraClient(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	const size = 70_000 // a full level-1 tile (65,536 entries) and partial tiles at levels 0, 1 and 2
	f.appendMany(t, size, "c")
	tiles := func(ctx context.Context, level, index uint64, p uint8) ([]byte, error) {
		width := int(p)
		if width == 0 {
			width = TileWidth
		}
		return f.store.HashTile(ctx, int(level), int64(index), width, size)
	}
	// Level-0 tiles are read as a range of leaf hashes: the same bytes
	// golang.org/x/mod's tlog.ReadTileData gives from the stored hashes.
	for _, tl := range []tlog.Tile{{H: TileHeight, L: 0, N: 0, W: 256}, {H: TileHeight, L: 0, N: 17, W: 256}, {H: TileHeight, L: 0, N: 273, W: 112}, {H: TileHeight, L: 0, N: 273, W: 1}} {
		want, err := tlog.ReadTileData(tl, f.store.HashReader(ctx))
		if err != nil {
			t.Fatal(err)
		}
		got, err := f.store.HashTile(ctx, 0, tl.N, tl.W, size)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("level-0 tile %d.%d: %v, differs from tlog.ReadTileData: %v", tl.N, tl.W, err, !bytes.Equal(got, want))
		}
	}
	pb, err := client.NewProofBuilder(ctx, size, tiles)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(24, 25))
	for range 200 {
		seq := rng.Int64N(size)
		theirs, err := pb.InclusionProof(ctx, uint64(seq))
		if err != nil {
			t.Fatalf("tessera inclusion proof of %d: %v", seq, err)
		}
		ours, err := f.store.InclusionProof(ctx, seq, size)
		if err != nil {
			t.Fatal(err)
		}
		if len(theirs) != len(ours) {
			t.Fatalf("inclusion proof of %d: tessera %d hashes, ours %d", seq, len(theirs), len(ours))
		}
		for i := range ours {
			if !bytes.Equal(theirs[i], ours[i][:]) {
				t.Fatalf("inclusion proof of %d differs at hash %d", seq, i)
			}
		}
		small := 1 + rng.Int64N(size-1)
		theirs, err = pb.ConsistencyProof(ctx, uint64(small), size)
		if err != nil {
			t.Fatalf("tessera consistency proof %d → %d: %v", small, size, err)
		}
		cons, err := f.store.ConsistencyProof(ctx, small, size)
		if err != nil {
			t.Fatal(err)
		}
		if len(theirs) != len(cons) {
			t.Fatalf("consistency proof %d: tessera %d hashes, ours %d", small, len(theirs), len(cons))
		}
		for i := range cons {
			if !bytes.Equal(theirs[i], cons[i][:]) {
				t.Fatalf("consistency proof %d differs at hash %d", small, i)
			}
		}
	}

	bundles := func(ctx context.Context, index uint64, p uint8) ([]byte, error) {
		width := int(p)
		if width == 0 {
			width = TileWidth
		}
		return f.store.EntryBundle(ctx, int64(index), width, size)
	}
	for _, seq := range []int64{0, 255, 256, 4242, size - 1} {
		b, err := client.GetEntryBundle(ctx, bundles, uint64(seq/TileWidth), size)
		if err != nil {
			t.Fatalf("entry bundle of %d: %v", seq, err)
		}
		e, err := f.store.Entry(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if got := b.Entries[seq%TileWidth]; !bytes.Equal(got, e.Leaf) {
			t.Fatalf("entry %d in its bundle: %q, stored %q", seq, got, e.Leaf)
		}
	}
	var last api.EntryBundle
	raw, err := f.store.EntryBundle(ctx, size/TileWidth, size%TileWidth, size)
	if err != nil || last.UnmarshalText(raw) != nil || len(last.Entries) != size%TileWidth {
		t.Fatalf("the partial bundle: %d entries, %v", len(last.Entries), err)
	}
}

// TestTilesStayInsideTheTree refuses tiles and bundles beyond the tree
// they are asked of, and beyond the log.
func TestTilesStayInsideTheTree(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.append(t, entries(0, 300, "c"))
	full, err := f.store.HashTile(ctx, 0, 0, TileWidth, 300)
	if err != nil || len(full) != TileWidth*32 {
		t.Fatalf("full tile 0/0: %d bytes, %v", len(full), err)
	}
	// A full tile is the same bytes in every larger tree; a partial one
	// is a prefix of it.
	if part, err := f.store.HashTile(ctx, 0, 0, 100, 100); err != nil || !bytes.Equal(part, full[:100*32]) {
		t.Fatalf("partial tile 0/0.p/100 is not a prefix of the full tile: %v", err)
	}
	for _, c := range []struct {
		level       int
		index       int64
		width       int
		size        int64
		wantErr     error
		description string
	}{
		{0, 1, 44, 300, nil, "the partial tile of a tree of 300"},
		{0, 1, 45, 300, ErrBadRange, "wider than the tree"},
		{0, 1, TileWidth, 300, ErrBadRange, "a full tile the tree lacks"},
		{1, 0, 1, 300, nil, "the one hash of level 8"},
		{1, 0, 2, 300, ErrBadRange, "two hashes of level 8"},
		{0, 0, 0, 300, ErrBadRange, "width 0"},
		{0, 0, TileWidth + 1, 300, ErrBadRange, "width 257"},
		{0, -1, 1, 300, ErrBadRange, "a negative index"},
		{-1, 0, 1, 300, ErrBadRange, "a negative level"},
		{8, 0, 1, 300, ErrBadRange, "a level beyond 64 bits"},
		{0, 1, 90, 346, ErrMissingEntries, "a tree larger than the log"},
		{1, 0, 2, 65536, ErrMissingEntries, "a level-1 tile of a tree larger than the log"},
	} {
		_, err := f.store.HashTile(ctx, c.level, c.index, c.width, c.size)
		if !errors.Is(err, c.wantErr) && (c.wantErr != nil || err != nil) {
			t.Errorf("%s: %v, want %v", c.description, err, c.wantErr)
		}
	}
	if _, err := f.store.EntryBundle(ctx, 1, 44, 300); err != nil {
		t.Errorf("the partial bundle of a tree of 300: %v", err)
	}
	if _, err := f.store.EntryBundle(ctx, 1, 45, 300); !errors.Is(err, ErrBadRange) {
		t.Errorf("a bundle wider than the tree: %v", err)
	}
	if _, err := f.store.EntryBundle(ctx, 1, 90, 346); !errors.Is(err, ErrMissingEntries) {
		t.Errorf("a bundle of a tree larger than the log: %v", err)
	}
}

// TestFullTilesAreStored: the log writes every full hash tile of its
// published tree, over more than one round: for 70,000 entries, the 273
// level-0 tiles in eight parts each into audit_leaf_tile_parts and the one
// level-1 tile into audit_tiles, each the bytes computed from the stored
// hashes, each part with the roots beside it; and serves full tiles from
// there.
func TestFullTilesAreStored(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	l := f.openLog(t)
	const size = 70_000
	for from := 0; from < size; from += 5000 {
		if _, err := l.Append(ctx, entries(from, 5000, "s")); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		var tiles, parts int
		if err := f.pool.QueryRow(ctx, "SELECT (SELECT count(*) FROM audit_tiles), (SELECT count(*) FROM audit_leaf_tile_parts)").Scan(&tiles, &parts); err != nil {
			t.Fatal(err)
		}
		if tiles == 1 && parts == 273*leafTileParts {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d tiles and %d parts stored, want 1 and %d", tiles, parts, 273*leafTileParts)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var level, idx int
	var data []byte
	if err := f.pool.QueryRow(ctx, "SELECT level, idx, data FROM audit_tiles").Scan(&level, &idx, &data); err != nil || level != 1 || idx != 0 {
		t.Fatalf("audit_tiles holds tile %d/%d, want 1/0 (%v)", level, idx, err)
	}
	if computed, err := f.store.computeTile(ctx, 1, 0, TileWidth); err != nil || !bytes.Equal(computed, data) {
		t.Fatalf("stored tile 1/0 differs from the stored hashes' (%v)", err)
	}
	rows, err := f.pool.Query(ctx, "SELECT idx, part, siblings, hashes FROM audit_leaf_tile_parts ORDER BY idx, part")
	if err != nil {
		t.Fatal(err)
	}
	var stored []leafPart
	for rows.Next() {
		var lp leafPart
		if err := rows.Scan(&lp.tile, &lp.part, &lp.siblings, &lp.hashes); err != nil {
			t.Fatal(err)
		}
		stored = append(stored, lp)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for index := range int64(273) {
		computed, err := f.store.leafHashTile(ctx, index, TileWidth)
		if err != nil {
			t.Fatal(err)
		}
		tl := tlog.Tile{H: TileHeight, L: 0, N: index, W: TileWidth}
		for p, lp := range stored[index*leafTileParts : (index+1)*leafTileParts] {
			if lp.tile != index || lp.part != p || !bytes.Equal(lp.hashes, computed[p*leafPartWidth*32:(p+1)*leafPartWidth*32]) {
				t.Fatalf("stored part %d/%d is not the leaf hashes of part %d of tile 0/%d", lp.tile, lp.part, p, index)
			}
			for k := range leafPartSiblings {
				want, _ := tlog.HashFromTile(tl, computed, tlog.StoredHashIndex(leafPartHeight+k, (index*leafTileParts+int64(p))>>k^1))
				if !bytes.Equal(lp.siblings[32*k:32*(k+1)], want[:]) {
					t.Fatalf("part %d of tile 0/%d: the root beside it at level %d differs from the tile's", p, index, leafPartHeight+k)
				}
			}
		}
		if index%50 == 0 {
			served, err := l.HashTile(ctx, 0, index, TileWidth)
			if err != nil || !bytes.Equal(served, computed) {
				t.Fatalf("served tile 0/%d: %v", index, err)
			}
		}
	}
}

// TestVerifyChecksStoredTiles: audit verify compares every stored full
// tile with the hashes it recomputes, and names one a database superuser
// rewrote, in a level-0 tile's parts (a leaf hash, a root beside a part)
// and at level 1; a full verification checks all of
// them, an incremental one those that begin inside its range.
func TestVerifyChecksStoredTiles(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	const size = 70_000
	f.appendMany(t, size, "v")
	f.storeAllTiles(t, size)
	if ok, err := f.cp.Once(ctx); err != nil || !ok {
		t.Fatalf("checkpoint: %v %v", ok, err)
	}
	rep, err := f.store.verify(ctx, f.verifier)
	if err != nil || !rep.OK() || rep.Tiles != 274+1 {
		t.Fatalf("clean: %d tiles checked, want 275 (and the partial tile 2/0.1): %v %v", rep.Tiles, rep.Problems, err)
	}
	// A superuser rewrites a leaf hash of part 3 of tile 0/200, a root
	// beside part 6 of the same tile, and the level-1 tile.
	if _, err := f.pool.Exec(ctx, `ALTER TABLE audit_tiles DISABLE TRIGGER audit_tiles_append_only;
		UPDATE audit_tiles SET data = overlay(data PLACING '\xff'::bytea FROM 100) WHERE (level, idx) = (1, 0);
		ALTER TABLE audit_tiles ENABLE TRIGGER audit_tiles_append_only;
		ALTER TABLE audit_leaf_tile_parts DISABLE TRIGGER audit_leaf_tile_parts_append_only;
		UPDATE audit_leaf_tile_parts SET hashes = overlay(hashes PLACING '\xff'::bytea FROM 100) WHERE (idx, part) = (200, 3);
		UPDATE audit_leaf_tile_parts SET siblings = overlay(siblings PLACING '\xff'::bytea FROM 40) WHERE (idx, part) = (200, 6);
		ALTER TABLE audit_leaf_tile_parts ENABLE TRIGGER audit_leaf_tile_parts_append_only`); err != nil {
		t.Fatal(err)
	}
	rep, err = f.store.verify(ctx, f.verifier)
	problems := strings.Join(rep.Problems, "\n")
	if err != nil || rep.OK() || !strings.Contains(problems, "stored part 3 of tile 0/200 (audit_leaf_tile_parts) differs") ||
		!strings.Contains(problems, "stored part 6 of tile 0/200 (audit_leaf_tile_parts) differs") || !strings.Contains(problems, "stored tile 1/0 (audit_tiles) differs") || len(rep.Problems) != 3 {
		t.Fatalf("rewritten tiles: %v %v", rep.Problems, err)
	}
	// Incremental runs compare the tiles they complete, those begun
	// below their start included: from 51,200 (tile 200's first entry)
	// and from 51,300 (inside it), tiles 200–272, the level-1 tile and
	// the partial level-2 tile its last hash completes.
	for _, start := range []int64{51_200, 51_300} {
		from := VerifiedTree{Size: start}
		from.Root, err = f.store.TreeHash(ctx, start)
		if err != nil {
			t.Fatal(err)
		}
		rep, err = f.store.verifyRange(ctx, VerifyOptions{}, &from, f.verifier)
		problems := strings.Join(rep.Problems, "\n")
		if err != nil || rep.Tiles != 74+1 || !strings.Contains(problems, "stored part 3 of tile 0/200") || !strings.Contains(problems, "stored tile 1/0") {
			t.Fatalf("incremental from %d: %d tiles, %v %v", start, rep.Tiles, rep.Problems, err)
		}
	}
	// A superuser drops the table's check and stores a ninth part: verify
	// names it rather than failing on it.
	f.exec(t, `ALTER TABLE audit_leaf_tile_parts DROP CONSTRAINT audit_leaf_tile_parts_part_check;
		INSERT INTO audit_leaf_tile_parts (idx, part, siblings, hashes) VALUES (5, 9, decode(repeat('00', 96), 'hex'), decode(repeat('00', 1024), 'hex'))`)
	rep, err = f.store.verify(ctx, f.verifier)
	if err != nil || !strings.Contains(strings.Join(rep.Problems, "\n"), "stored part 9 of tile 0/5 (audit_leaf_tile_parts) is not a part of a tile") {
		t.Fatalf("a ninth part: %v %v", rep.Problems, err)
	}
}

// TestProofsReadStoredTiles: inclusion and consistency proofs are the
// same with the stored tiles as without them, for entries and sizes at
// every tile boundary, and they do read the tiles: a database superuser's
// rewrite of a level-0 tile's part, a leaf hash or a root beside it,
// makes the proofs that use the rewritten hash fail the client's check,
// never pass, and leaves the others good; with parts deleted, proofs take
// those hashes from the rows.
func TestProofsReadStoredTiles(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	const size = 70_000
	f.appendMany(t, size, "p")
	pc := newProofCheck(t, f)
	sizes := []int64{1, 255, 256, 257, 65_535, 65_536, 65_537, 65_792, size}
	seqs := []int64{0, 1, 255, 256, 25_700, 65_535, 65_536, 65_791, size - 1}
	pc.all("no tiles stored", sizes, seqs)
	f.storeAllTiles(t, size)
	pc.all("tiles stored", sizes, seqs)

	f.exec(t, `ALTER TABLE audit_leaf_tile_parts DISABLE TRIGGER audit_leaf_tile_parts_append_only;
		UPDATE audit_leaf_tile_parts SET hashes = overlay(hashes PLACING '\xff'::bytea FROM 100) WHERE (idx, part) = (100, 0);
		ALTER TABLE audit_leaf_tile_parts ENABLE TRIGGER audit_leaf_tile_parts_append_only`)
	// Byte 100 of part 0 is in its fourth hash, entry 25,603's leaf hash:
	// the other entries of the part (25,600–25,631) have it in their
	// proofs; 25,603 does not, the other parts of the tile take the root
	// of part 0 from their own rows, and entries outside the tile take
	// node 100 of level 8 from tile 1/0.
	pc.passes("a rewritten part 0/100.0", size, map[int64]bool{25_600: false, 25_631: false, 25_603: true, 25_632: true, 25_700: true, 60_000: true})
	// A rewritten root beside part 3 at level 6 (the node over parts 0
	// and 1) fails the proofs of parts 3's entries only.
	f.exec(t, `ALTER TABLE audit_leaf_tile_parts DISABLE TRIGGER audit_leaf_tile_parts_append_only;
		UPDATE audit_leaf_tile_parts SET siblings = overlay(siblings PLACING '\xff'::bytea FROM 40) WHERE (idx, part) = (100, 3);
		ALTER TABLE audit_leaf_tile_parts ENABLE TRIGGER audit_leaf_tile_parts_append_only`)
	pc.passes("a rewritten root beside part 0/100.3", size, map[int64]bool{25_696: false, 25_700: false, 25_727: false, 25_664: true, 25_728: true})
	// A tile with a part missing (deleted by a superuser) takes that part's
	// hashes from the rows: every proof passes again.
	f.exec(t, `ALTER TABLE audit_leaf_tile_parts DISABLE TRIGGER audit_leaf_tile_parts_append_only;
		DELETE FROM audit_leaf_tile_parts WHERE idx = 100 AND part IN (0, 3);
		ALTER TABLE audit_leaf_tile_parts ENABLE TRIGGER audit_leaf_tile_parts_append_only`)
	pc.passes("parts 0/100.0 and .3 missing", size, map[int64]bool{25_600: true, 25_631: true, 25_700: true})
	pc.all("parts 0/100.0 and .3 missing", sizes, seqs)
	if served, err := f.store.HashTile(ctx, 0, 100, TileWidth, size); err != nil || !bytes.Equal(served, pc.tile(100)) {
		t.Fatalf("tile 0/100 with parts missing: %v", err)
	}
}

// TestPartialTilesAboveTheFullOnes: as the log grows past each multiple of
// 65,536 entries, the tile job stores the rightmost level-2 tile as wide
// as the tree then holds it, once, computed from the stored hashes;
// proofs in every tree size take their level-16 nodes from the widest
// stored one the tree holds; HashTile serves it. A forged row, inserted
// by the runtime role ahead of the job or rewritten by a database
// superuser, makes the proofs that use it fail the client's check, never
// pass, is not copied into the wider rows, and audit verify names it.
func TestPartialTilesAboveTheFullOnes(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	const size = 140_000 // level-16 nodes 0 and 1: partial level-2 tiles of widths 1 and 2
	f.appendMany(t, size, "w")
	pc := newProofCheck(t, f)
	seqs := []int64{0, 1_000, 65_535, 65_536, 70_000, 131_071, 131_072, 135_000, size - 1}
	pc.all("no tiles stored", []int64{65_536, 65_537, 131_071, 131_072, 131_073, size}, seqs)

	// The runtime role (INSERT and SELECT) stores a forged width 1 before
	// the job does; the job then stores the tiles of each published tree
	// it sees: each width once, whatever its runs in between.
	f.exec(t, `SET ROLE mediator_runtime;
		INSERT INTO audit_partial_tiles (level, idx, width, data) VALUES (2, 0, 1, decode(repeat('ff', 32), 'hex'));
		RESET ROLE`)
	for _, n := range []int64{70_000, 75_000, 131_072, size} {
		f.storeAllTiles(t, n)
	}
	q, err := f.pool.Query(ctx, "SELECT data FROM audit_partial_tiles WHERE (level, idx) = (2, 0) ORDER BY width")
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(q, pgx.RowTo[[]byte])
	if err != nil || len(got) != 2 {
		t.Fatalf("stored partial tiles: %d, %v; want widths 1 and 2 of tile 2/0", len(got), err)
	}
	want, err := tlog.ReadTileData(tlog.Tile{H: TileHeight, L: 2, N: 0, W: 2}, pc.rows)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[1], want) || bytes.Equal(got[0], want[:tlog.HashSize]) {
		t.Fatalf("stored partial tiles 2/0.1 and 2/0.2: want the forged one kept and the wider one computed from the rows")
	}
	if served, err := f.store.HashTile(ctx, 2, 0, 2, size); err != nil || !bytes.Equal(served, want) {
		t.Fatalf("served tile 2/0.2: %v", err)
	}
	// Trees of 131,072 entries and more read width 2, built from the rows.
	pc.all("partial tiles stored", []int64{131_072, 131_073, size}, seqs)
	// Narrower trees read the forged width 1: entries from 65,536 on,
	// whose sibling is level-16 node 0, fail; those below, which take
	// their right side from rows, pass.
	for _, c := range []struct {
		seq, size int64
		pass      bool
	}{{70_000, 131_071, false}, {1_000, 131_071, true}, {1_000, 65_537, true}} {
		p, err := f.store.InclusionProof(ctx, c.seq, c.size)
		if err != nil {
			t.Fatal(err)
		}
		if err := tlog.CheckRecord(p, c.size, pc.root(c.size), c.seq, pc.leafHash(c.seq)); (err == nil) != c.pass {
			t.Errorf("entry %d in %d under a forged partial tile 2/0.1: check %v, want it to pass: %v", c.seq, c.size, err, c.pass)
		}
	}
	if ok, err := f.cp.Once(ctx); err != nil || !ok {
		t.Fatalf("checkpoint: %v %v", ok, err)
	}
	rep, err := f.store.verify(ctx, f.verifier)
	if err != nil || rep.Tiles != 546+2+2 || len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0], "stored partial tile 2/0.1 (audit_partial_tiles) differs") {
		t.Fatalf("forged width 1: %d tiles checked, want 550: %v %v", rep.Tiles, rep.Problems, err)
	}

	// A superuser rewrites width 2. Byte 40 is in level-16 node 1, the
	// sibling of every entry below 65,536 and, hashed with node 0, the
	// left half of the tree of every entry from 131,072 on: their proofs
	// in the tree of size 140,000 fail; those in 65,536–131,071 take node
	// 0 and pass.
	f.exec(t, `ALTER TABLE audit_partial_tiles DISABLE TRIGGER audit_partial_tiles_append_only;
		UPDATE audit_partial_tiles SET data = overlay(data PLACING '\xff'::bytea FROM 40) WHERE (level, idx, width) = (2, 0, 2);
		ALTER TABLE audit_partial_tiles ENABLE TRIGGER audit_partial_tiles_append_only`)
	for _, c := range []struct {
		seq  int64
		pass bool
	}{{1_000, false}, {70_000, true}, {135_000, false}} {
		p, err := f.store.InclusionProof(ctx, c.seq, size)
		if err != nil {
			t.Fatal(err)
		}
		if err := tlog.CheckRecord(p, size, pc.root(size), c.seq, pc.leafHash(c.seq)); (err == nil) != c.pass {
			t.Errorf("entry %d under a rewritten partial tile 2/0.2: check %v, want it to pass: %v", c.seq, err, c.pass)
		}
	}
	rep, err = f.store.verify(ctx, f.verifier)
	if err != nil || rep.OK() || !strings.Contains(strings.Join(rep.Problems, "\n"), "stored partial tile 2/0.2 (audit_partial_tiles) differs") {
		t.Fatalf("rewritten partial tile: %v %v", rep.Problems, err)
	}
}

// TestPartialTilesFromTheJobsMemory: a tile job that has run since a
// level-2 tile began makes each wider partial tile from the roots of the
// level-1 tiles it stored, and reads no entry row for it. A superuser
// rewrites the level-16 hash in entry 131,071's row (its 17th stored
// hash; the level-8 hash the level-1 tile reads is left alone): the rows
// would now give another width 2, and the job stores the true one.
func TestPartialTilesFromTheJobsMemory(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	const size = 140_000
	f.appendMany(t, size, "m")
	pc := newProofCheck(t, f)
	want, err := tlog.ReadTileData(tlog.Tile{H: TileHeight, L: 2, N: 0, W: 2}, pc.rows)
	if err != nil {
		t.Fatal(err)
	}
	var edges partialTileEdges
	f.storeTilesRemembering(t, 70_000, &edges)
	f.exec(t, `ALTER TABLE audit_entries DISABLE TRIGGER audit_entries_append_only;
		UPDATE audit_entries SET hashes = overlay(hashes PLACING '\xff'::bytea FROM 16 * 32 + 1) WHERE seq = 131071;
		ALTER TABLE audit_entries ENABLE TRIGGER audit_entries_append_only`)
	if rows, err := f.store.computeTile(ctx, 2, 0, 2); err != nil || bytes.Equal(rows, want) {
		t.Fatalf("tile 2/0.2 from the rows after the rewrite: still the true tile (%v)", err)
	}
	f.storeTilesRemembering(t, size, &edges)
	q, err := f.pool.Query(ctx, "SELECT data FROM audit_partial_tiles WHERE (level, idx) = (2, 0) ORDER BY width")
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(q, pgx.RowTo[[]byte])
	if err != nil || len(got) != 2 || !bytes.Equal(got[0], want[:tlog.HashSize]) || !bytes.Equal(got[1], want) {
		t.Fatalf("stored partial tiles of 2/0: %d, %v; want widths 1 and 2 as the level-1 tiles' roots", len(got), err)
	}
}

// proofCheck checks the store's proofs against the roots and leaf hashes
// of the stored hashes alone.
type proofCheck struct {
	t    *testing.T
	f    *fixture
	rows tlog.HashReader
}

func newProofCheck(t *testing.T, f *fixture) *proofCheck {
	return &proofCheck{t: t, f: f, rows: f.store.HashReader(context.Background())}
}

func (pc *proofCheck) root(n int64) tlog.Hash {
	pc.t.Helper()
	h, err := tlog.TreeHash(n, pc.rows)
	if err != nil {
		pc.t.Fatal(err)
	}
	return h
}

func (pc *proofCheck) leafHash(seq int64) tlog.Hash {
	pc.t.Helper()
	hs, err := pc.rows.ReadHashes([]int64{tlog.StoredHashIndex(0, seq)})
	if err != nil {
		pc.t.Fatal(err)
	}
	return hs[0]
}

// passes checks that the inclusion proof of each entry of want in the tree
// of size n passes the client's check exactly when want says so.
func (pc *proofCheck) passes(what string, n int64, want map[int64]bool) {
	pc.t.Helper()
	for seq, pass := range want {
		p, err := pc.f.store.InclusionProof(context.Background(), seq, n)
		if err != nil {
			pc.t.Fatal(err)
		}
		if err := tlog.CheckRecord(p, n, pc.root(n), seq, pc.leafHash(seq)); (err == nil) != pass {
			pc.t.Errorf("%s: entry %d: check %v, want it to pass: %v", what, seq, err, pass)
		}
	}
}

// tile returns full level-0 tile index from the stored hashes alone.
func (pc *proofCheck) tile(index int64) []byte {
	pc.t.Helper()
	data, err := tlog.ReadTileData(tlog.Tile{H: TileHeight, L: 0, N: index, W: TileWidth}, pc.rows)
	if err != nil {
		pc.t.Fatal(err)
	}
	return data
}

// all checks the inclusion proof of every entry of seqs in every tree of
// sizes that holds it, and the consistency proof between every two sizes.
func (pc *proofCheck) all(what string, sizes, seqs []int64) {
	pc.t.Helper()
	ctx := context.Background()
	for _, n := range sizes {
		r := pc.root(n)
		for _, seq := range seqs {
			if seq < n {
				p, err := pc.f.store.InclusionProof(ctx, seq, n)
				if err == nil {
					err = tlog.CheckRecord(p, n, r, seq, pc.leafHash(seq))
				}
				if err != nil {
					pc.t.Fatalf("%s: inclusion proof of %d in %d: %v", what, seq, n, err)
				}
			}
		}
		for _, m := range sizes {
			if m <= n {
				p, err := pc.f.store.ConsistencyProof(ctx, m, n)
				if err == nil {
					err = tlog.CheckTree(p, n, r, m, pc.root(m))
				}
				if err != nil {
					pc.t.Fatalf("%s: consistency proof %d → %d: %v", what, m, n, err)
				}
			}
		}
	}
}

// storeAllTiles stores every full tile of the tree of size n, as the
// tile job does over time, but as a job that has just started: it
// remembers nothing of the partial tiles from earlier calls.
func (f *fixture) storeAllTiles(t *testing.T, n int64) {
	t.Helper()
	f.storeTilesRemembering(t, n, &partialTileEdges{})
}

// storeTilesRemembering is storeAllTiles for a job that has run since
// edges was new.
func (f *fixture) storeTilesRemembering(t *testing.T, n int64, edges *partialTileEdges) {
	t.Helper()
	for {
		stored, err := f.store.storeTiles(context.Background(), n, edges)
		if err != nil {
			t.Fatal(err)
		}
		if stored == 0 {
			return
		}
	}
}

// TestTilesFromKeptLeaves: the tile job makes a full level-0 tile from the
// leaf hashes the process kept of its committed appends, not from the
// rows, and only while their root is the level-8 hash the table stores:
// kept hashes that no longer match the table are never a tile.
func TestTilesFromKeptLeaves(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.append(t, entries(0, 3000, "k"))
	f.append(t, entries(3000, 2000, "k"))
	for index := range int64(5000 / TileWidth) {
		kept, err := f.store.computeTile(ctx, 0, index, TileWidth)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := f.store.leafHashTile(ctx, index, TileWidth)
		if err != nil || !bytes.Equal(kept, rows) {
			t.Fatalf("tile 0/%d from the kept leaves differs from the rows' (%v)", index, err)
		}
	}
	// A superuser rewrites entry 300's leaf hash, and only it: the level-8
	// hash of tile 1 is unchanged, so the tile still comes from the kept
	// leaves, which proves they are read, and is the true tile.
	want, _ := f.store.leafHashTile(ctx, 1, TileWidth)
	f.exec(t, `ALTER TABLE audit_entries DISABLE TRIGGER audit_entries_append_only;
		UPDATE audit_entries SET hashes = overlay(hashes PLACING '\xff'::bytea FROM 1) WHERE seq = 300;
		ALTER TABLE audit_entries ENABLE TRIGGER audit_entries_append_only`)
	if got, err := f.store.computeTile(ctx, 0, 1, TileWidth); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("tile 0/1 with entry 300 rewritten: not the kept leaves' tile (%v)", err)
	}
	// Kept leaves that the table's roots contradict (a lost tail, another
	// process's entries) give way to the rows.
	f.store.leaves.mu.Lock()
	f.store.leaves.hashes[2*TileWidth+7][0] ^= 1
	f.store.leaves.mu.Unlock()
	rows, _ := f.store.leafHashTile(ctx, 2, TileWidth)
	if got, err := f.store.computeTile(ctx, 0, 2, TileWidth); err != nil || !bytes.Equal(got, rows) {
		t.Fatalf("tile 0/2 with a kept leaf the table contradicts: not the rows' tile (%v)", err)
	}
	// A run that does not continue the kept one replaces it.
	f.store.leaves.committed(9000, make([]tlog.Hash, 10))
	if f.store.leaves.tile(0) != nil {
		t.Fatal("tile 0 still kept after a run from entry 9,000")
	}
}

package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

// TestLeafPartsGiveTheTilesNodes: for two full level-0 tiles of made-up
// leaf hashes, every node a proof may ask of them (levels 0 to 7) comes
// from the parts chooseLeafParts picks exactly as tlog computes it from
// the whole tile; an inclusion proof's nodes all come from one part, the
// one holding its entry; and a part gives no node it does not hold.
func TestLeafPartsGiveTheTilesNodes(t *testing.T) {
	tiles := map[int64][]byte{}
	parts := map[int64][leafTileParts]leafPart{}
	for _, index := range []int64{0, 39_062} {
		data := make([]byte, 0, TileWidth*tlog.HashSize)
		for i := range TileWidth {
			h := sha256.Sum256(binary.BigEndian.AppendUint64(nil, uint64(index)*TileWidth+uint64(i)))
			data = append(data, h[:]...)
		}
		split, err := splitLeafTile(index, data)
		if err != nil {
			t.Fatal(err)
		}
		tiles[index], parts[index] = data, split
	}
	read := func(indexes []int64) []tlog.Hash {
		t.Helper()
		chosen, of := chooseLeafParts(indexes)
		for k := range chosen {
			chosen[k] = parts[chosen[k].tile][chosen[k].part]
		}
		out := make([]tlog.Hash, len(indexes))
		for i, idx := range indexes {
			level, n := tlog.SplitStoredHashIndex(idx)
			h, ok := chosen[of[i]].hash(level, n)
			if !ok {
				t.Fatalf("node %d/%d: the part chosen for it (%d.%d) does not give it", level, n, chosen[of[i]].tile, chosen[of[i]].part)
			}
			out[i] = h
		}
		return out
	}
	for index, data := range tiles {
		tl := tlog.Tile{H: TileHeight, L: 0, N: index, W: TileWidth}
		var all []int64
		for level := range TileHeight {
			for k := range int64(TileWidth >> level) {
				all = append(all, tlog.StoredHashIndex(level, index<<(TileHeight-level)+k))
			}
		}
		// One node at a time, and all of them in one read.
		got := read(all)
		for i, idx := range all {
			want, err := tlog.HashFromTile(tl, data, idx)
			if err != nil {
				t.Fatal(err)
			}
			if one := read([]int64{idx}); one[0] != want || got[i] != want {
				level, n := tlog.SplitStoredHashIndex(idx)
				t.Fatalf("node %d/%d of tile 0/%d: from parts differs from tlog's", level, n, index)
			}
		}
		// The nodes of an inclusion proof within the tile: the siblings of
		// the entry's path, levels 0 to 7.
		for _, leaf := range []int64{0, 31, 32, 100, 255} {
			seq := index*TileWidth + leaf
			var path []int64
			for level := range TileHeight {
				path = append(path, tlog.StoredHashIndex(level, seq>>level^1))
			}
			chosen, _ := chooseLeafParts(path)
			if len(chosen) != 1 || chosen[0].tile != index || chosen[0].part != int(leaf/leafPartWidth) {
				t.Fatalf("proof of entry %d: parts %+v, want only part %d of tile %d", seq, chosen, leaf/leafPartWidth, index)
			}
			read(path)
		}
	}
	// A part gives the nodes inside it and the three roots beside it, and
	// no other: not its own root, not a node of another part.
	lp := parts[0][2]
	for _, c := range []struct {
		level int
		n     int64
		gives bool
	}{
		{0, 64, true}, {0, 95, true}, {4, 5, true}, {5, 3, true}, {6, 0, true}, {7, 1, true},
		{0, 63, false}, {0, 96, false}, {5, 2, false}, {6, 1, false}, {7, 0, false}, {8, 0, false},
	} {
		if _, ok := lp.hash(c.level, c.n); ok != c.gives {
			t.Errorf("part 0.2 gives node %d/%d: %v, want %v", c.level, c.n, ok, c.gives)
		}
	}
}

// TestLeafPartsFromAnOlderLog plays a log that grew before the parts
// existed: its level-0 tiles are audit_tiles rows, one of them rewritten
// by a database superuser. Tiles are served from those rows meanwhile;
// the tile job then stores the parts of every tile, copied from a row
// whose root is the stored level-8 hash (not read back from its 256
// entries) and computed from the entries for the rewritten one, so no
// forged hash reaches the parts.
func TestLeafPartsFromAnOlderLog(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	const size = 5 * TileWidth
	f.append(t, entries(0, size, "o"))
	pc := newProofCheck(t, f)
	for index := range int64(size / TileWidth) {
		f.exec(t, "INSERT INTO audit_tiles (level, idx, data) VALUES (0, $1, $2)", index, pc.tile(index))
	}
	f.exec(t, `ALTER TABLE audit_tiles DISABLE TRIGGER audit_tiles_append_only;
		UPDATE audit_tiles SET data = overlay(data PLACING '\xff'::bytea FROM 100) WHERE (level, idx) = (0, 3);
		ALTER TABLE audit_tiles ENABLE TRIGGER audit_tiles_append_only`)
	if served, err := f.store.HashTile(ctx, 0, 1, TileWidth, size); err != nil || !bytes.Equal(served, pc.tile(1)) {
		t.Fatalf("tile 0/1 before its parts: %v", err)
	}
	// A superuser also rewrites entry 517's leaf hash, and only it: the
	// level-8 hash of tile 2 is unchanged, so its audit_tiles row still
	// passes the root check and its parts are copied from that row, which
	// proves the row is read, and hold the true tile.
	tile2 := pc.tile(2)
	f.exec(t, `ALTER TABLE audit_entries DISABLE TRIGGER audit_entries_append_only;
		UPDATE audit_entries SET hashes = overlay(hashes PLACING '\xff'::bytea FROM 1) WHERE seq = 517;
		ALTER TABLE audit_entries ENABLE TRIGGER audit_entries_append_only`)
	f.store.leaves.committed(1<<40, nil) // no kept leaf hashes: the job reads the tables
	f.storeAllTiles(t, size)
	var parts int
	if err := f.pool.QueryRow(ctx, "SELECT count(*) FROM audit_leaf_tile_parts").Scan(&parts); err != nil || parts != 5*leafTileParts {
		t.Fatalf("%d parts stored, want %d (%v)", parts, 5*leafTileParts, err)
	}
	for index := range int64(size / TileWidth) {
		want := pc.tile(index)
		if index == 2 {
			want = tile2
		}
		data, err := f.store.storedLeafTile(ctx, index)
		if err != nil || !bytes.Equal(data, want) {
			t.Fatalf("tile 0/%d from its parts is not the true tile (%v)", index, err)
		}
	}
	pc.all("parts from an older log", []int64{size}, []int64{0, 3*TileWidth + 1, size - 1})
}

// TestForgedLeafPartAheadOfTheJob: the runtime role (INSERT and SELECT)
// stores a forged part before the tile job reaches its tile. The job
// stores the tiles after it and never copies the forged hashes; the
// proofs that read the forged part fail the client's check, every other
// proof passes (its hashes come from the rows or from true parts), and
// audit verify names the part.
func TestForgedLeafPartAheadOfTheJob(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	const size = 4 * TileWidth
	f.append(t, entries(0, size, "a"))
	f.exec(t, `SET ROLE mediator_runtime;
		INSERT INTO audit_leaf_tile_parts (idx, part, siblings, hashes) VALUES (1, 2, decode(repeat('00', 96), 'hex'), decode(repeat('ff', 1024), 'hex'));
		RESET ROLE`)
	f.storeAllTiles(t, size)
	pc := newProofCheck(t, f)
	if got, err := f.store.storedLeafTile(ctx, 3); err != nil || !bytes.Equal(got, pc.tile(3)) {
		t.Fatalf("tile 0/3, stored after the forged part: %v", err)
	}
	// Part 2 of tile 1 holds entries 320-351.
	pc.passes("a forged part 0/1.2", size, map[int64]bool{320: false, 351: false, 319: true, 352: true, 10: true, 900: true})
	pc.all("a forged part 0/1.2", []int64{300, size}, []int64{0, 255, 256, 600, size - 1})
	if ok, err := f.cp.Once(ctx); err != nil || !ok {
		t.Fatalf("checkpoint: %v %v", ok, err)
	}
	rep, err := f.store.verify(ctx, f.verifier)
	if err != nil || !strings.Contains(strings.Join(rep.Problems, "\n"), "stored part 2 of tile 0/1 (audit_leaf_tile_parts) differs") {
		t.Fatalf("verify: %v %v", rep.Problems, err)
	}
}

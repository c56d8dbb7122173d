package audit

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/tlog"
)

// Full level-0 tiles are stored in parts (migration 00022): part p of tile
// n holds the leaf hashes of entries 256·n+32·p to 256·n+32·p+31 and the
// roots of the three subtrees beside them at tree levels 5, 6 and 7, so
// that the hashes an inclusion proof takes from its entry's level-0 tile
// are one row, one heap page.
const (
	leafTileParts    = 8
	leafPartHeight   = 5 // a part is a subtree of tree level 5
	leafPartWidth    = 1 << leafPartHeight
	leafPartSiblings = TileHeight - leafPartHeight // at tree levels 5, 6 and 7

	sqlLeafTilePart    = "SELECT siblings, hashes FROM audit_leaf_tile_parts WHERE idx = $1 AND part = $2"
	sqlLeafTilePartsOf = "SELECT part, hashes FROM audit_leaf_tile_parts WHERE idx = $1 ORDER BY part"
	sqlStoredLeafTiles = "SELECT coalesce(max(idx) + 1, 0) FROM audit_leaf_tile_parts"
	// A tile's parts in one statement: the job stores a hundred tiles a
	// second at full ingest.
	sqlInsertLeafParts = `INSERT INTO audit_leaf_tile_parts (idx, part, siblings, hashes)
		SELECT $1, part, siblings, hashes FROM unnest($2::smallint[], $3::bytea[], $4::bytea[]) AS p(part, siblings, hashes)
		ON CONFLICT DO NOTHING`
	sqlLeafPartsWindow = "SELECT idx, part, siblings, hashes FROM audit_leaf_tile_parts WHERE idx >= $1 AND idx < $2 ORDER BY idx, part"
)

// leafPart is one stored part of a full level-0 tile.
type leafPart struct {
	tile     int64
	part     int
	siblings []byte // leafPartSiblings hashes: the roots beside the part at levels 5, 6, 7
	hashes   []byte // leafPartWidth leaf hashes
}

// splitLeafTile cuts the full level-0 tile index, data its 256 leaf
// hashes, into its parts, each with the roots beside it, computed with
// tlog from data alone.
func splitLeafTile(index int64, data []byte) ([leafTileParts]leafPart, error) {
	var parts [leafTileParts]leafPart
	if len(data) != TileWidth*tlog.HashSize {
		return parts, fmt.Errorf("audit: level-0 tile %d: %d bytes, want %d", index, len(data), TileWidth*tlog.HashSize)
	}
	t := tlog.Tile{H: TileHeight, L: 0, N: index, W: TileWidth}
	for p := range parts {
		siblings := make([]byte, 0, leafPartSiblings*tlog.HashSize)
		for k := range leafPartSiblings {
			level := leafPartHeight + k
			n := (index*leafTileParts + int64(p)) >> k // the part's ancestor at level
			h, err := tlog.HashFromTile(t, data, tlog.StoredHashIndex(level, n^1))
			if err != nil {
				return parts, fmt.Errorf("audit: level-0 tile %d: %w", index, err)
			}
			siblings = append(siblings, h[:]...)
		}
		parts[p] = leafPart{tile: index, part: p, siblings: siblings,
			hashes: data[p*leafPartWidth*tlog.HashSize : (p+1)*leafPartWidth*tlog.HashSize]}
	}
	return parts, nil
}

// hash returns the node at tree level and index n, if the part gives it:
// a node inside the part, below level 5, from its leaf hashes; a root
// beside it, from its siblings.
func (lp leafPart) hash(level int, n int64) (tlog.Hash, bool) {
	if len(lp.hashes) != leafPartWidth*tlog.HashSize || len(lp.siblings) != leafPartSiblings*tlog.HashSize {
		return tlog.Hash{}, false
	}
	if level < leafPartHeight {
		t := tlog.Tile{H: leafPartHeight, L: 0, N: lp.node(), W: leafPartWidth}
		h, err := tlog.HashFromTile(t, lp.hashes, tlog.StoredHashIndex(level, n))
		return h, err == nil
	}
	if lp.besides(level, n) {
		k := level - leafPartHeight
		return tlog.Hash(lp.siblings[k*tlog.HashSize : (k+1)*tlog.HashSize]), true
	}
	return tlog.Hash{}, false
}

// node is the part's own node at tree level 5.
func (lp leafPart) node() int64 { return lp.tile*leafTileParts + int64(lp.part) }

// besides reports whether tree node (level, n) is one of the roots the
// part stores: the node beside its ancestor at level 5, 6 or 7.
func (lp leafPart) besides(level int, n int64) bool {
	k := level - leafPartHeight
	return k >= 0 && k < leafPartSiblings && n == (lp.node()>>k)^1
}

// leafPartFor returns the part of the level-0 tile holding tree node
// (level, n) that gives it: the part the node lies in, below level 5,
// else the first part of the subtree beside the node, which holds the
// node as a sibling root.
func leafPartFor(level int, n int64) (tile int64, part int) {
	if level >= leafPartHeight {
		n, level = n^1, level-leafPartHeight
		first := n << level // a part (level-5 node) below the node beside it
		return first / leafTileParts, int(first % leafTileParts)
	}
	node := n >> (leafPartHeight - level)
	return node / leafTileParts, int(node % leafTileParts)
}

// chooseLeafParts picks, for the stored hash indexes of nodes in full
// level-0 tiles, the parts a proof reads them from: the parts that hold
// nodes below level 5, then, for each node from level 5 up, one of those
// if it gives the node, else the part leafPartFor names. An inclusion
// proof's level-0 hashes all come from the part holding its entry. It
// returns the parts (unread) and, for each index, its part's position.
func chooseLeafParts(indexes []int64) ([]leafPart, []int) {
	var parts []leafPart
	of := make([]int, len(indexes))
	add := func(tile int64, part int) int {
		k := slices.IndexFunc(parts, func(lp leafPart) bool { return lp.tile == tile && lp.part == part })
		if k < 0 {
			k = len(parts)
			parts = append(parts, leafPart{tile: tile, part: part})
		}
		return k
	}
	for i, idx := range indexes {
		if level, n := tlog.SplitStoredHashIndex(idx); level < leafPartHeight {
			of[i] = add(leafPartFor(level, n))
		}
	}
	for i, idx := range indexes {
		level, n := tlog.SplitStoredHashIndex(idx)
		if level < leafPartHeight {
			continue
		}
		of[i] = slices.IndexFunc(parts, func(lp leafPart) bool { return lp.besides(level, n) })
		if of[i] < 0 {
			of[i] = add(leafPartFor(level, n))
		}
	}
	return parts, of
}

// queueLeafPart adds the read of part lp to b; lp's hashes stay nil if it
// is not stored or not well-formed.
func queueLeafPart(b *pgx.Batch, lp *leafPart) {
	b.Queue(sqlLeafTilePart, lp.tile, lp.part).QueryRow(func(row pgx.Row) error {
		var siblings, hashes []byte
		if err := row.Scan(&siblings, &hashes); err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if len(siblings) == leafPartSiblings*tlog.HashSize && len(hashes) == leafPartWidth*tlog.HashSize {
			lp.siblings, lp.hashes = siblings, hashes
		}
		return nil
	})
}

// storedLeafTile reads the full level-0 tile index from its stored parts:
// nil if fewer than all of them are stored.
func (s *store) storedLeafTile(ctx context.Context, index int64) ([]byte, error) {
	rows, err := s.pool.Query(ctx, sqlLeafTilePartsOf, index)
	if err != nil {
		return nil, fmt.Errorf("audit: hash tile 0/%d: %w", index, err)
	}
	defer rows.Close()
	data := make([]byte, 0, TileWidth*tlog.HashSize)
	next := 0
	for rows.Next() {
		var part int
		var hashes []byte
		if err := rows.Scan(&part, &hashes); err != nil {
			return nil, fmt.Errorf("audit: hash tile 0/%d: %w", index, err)
		}
		if part != next || len(hashes) != leafPartWidth*tlog.HashSize {
			return nil, nil
		}
		data, next = append(data, hashes...), next+1
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit: hash tile 0/%d: %w", index, err)
	}
	if next != leafTileParts {
		return nil, nil
	}
	return data, nil
}

// storeLeafTiles writes the parts of the full level-0 tiles of the tree of
// size treeSize that are not stored yet, in order, at most max tiles, each
// tile's parts in one statement, and returns how many tiles it wrote.
// A tile comes from the leaf hashes the process kept, else from an
// audit_tiles row whose root is the stored level-8 hash (a log older than
// the parts), else from the rows.
func (s *store) storeLeafTiles(ctx context.Context, treeSize int64, max int) (int, error) {
	full := treeSize >> TileHeight
	var next int64
	if err := s.pool.QueryRow(ctx, sqlStoredLeafTiles).Scan(&next); err != nil {
		return 0, fmt.Errorf("audit: store tiles: %w", err)
	}
	written := 0
	for ; next < full && written < max; next++ {
		data, err := s.leafTileToStore(ctx, next)
		if err != nil {
			return written, fmt.Errorf("audit: store tiles: %w", err)
		}
		parts, err := splitLeafTile(next, data)
		if err != nil {
			return written, fmt.Errorf("audit: store tiles: %w", err)
		}
		var numbers [leafTileParts]int16
		var siblings, hashes [leafTileParts][]byte
		for p, lp := range parts {
			numbers[p], siblings[p], hashes[p] = int16(lp.part), lp.siblings, lp.hashes
		}
		// One statement: all eight parts or none.
		if _, err := s.pool.Exec(ctx, sqlInsertLeafParts, next, numbers[:], siblings[:], hashes[:]); err != nil {
			return written, fmt.Errorf("audit: store tile 0/%d: %w", next, err)
		}
		written++
	}
	return written, nil
}

// leafTileToStore returns the full level-0 tile index as the tile job
// stores it: see storeLeafTiles.
func (s *store) leafTileToStore(ctx context.Context, index int64) ([]byte, error) {
	data, err := s.leafTile(ctx, index)
	if err != nil || data != nil {
		return data, err
	}
	var old []byte
	err = s.pool.QueryRow(ctx, sqlStoredTile, 0, index).Scan(&old)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("audit: hash tile 0/%d: %w", index, err)
	}
	if old != nil {
		ok, err := s.leafTileHasStoredRoot(ctx, index, old)
		if err != nil {
			return nil, err
		}
		if ok {
			return old, nil
		}
	}
	return s.leafHashTile(ctx, index, TileWidth)
}

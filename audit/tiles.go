package audit

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/tlog"
)

// The C2SP tlog-tiles layout: tiles are TileHeight levels of the tree
// high and up to TileWidth hashes wide; an entry bundle holds the leaves
// of up to TileWidth entries.
const (
	TileHeight = 8
	TileWidth  = 1 << TileHeight
)

// sqlEntryRange reads the leaves of the entries in [$1, $2), in seq order:
// an entry bundle, a range of the primary key.
const sqlEntryRange = "SELECT leaf FROM audit_entries WHERE seq >= $1 AND seq < $2 ORDER BY seq"

// sqlLeafHashRange reads the leaf hashes of the entries in [$1, $2), in
// seq order: a level-0 hash tile, a range of the primary key. Each row's
// stored hashes begin with its leaf hash (packedhash.Owner: level 0, position 0).
const sqlLeafHashRange = "SELECT substring(hashes FROM 1 FOR 32) FROM audit_entries WHERE seq >= $1 AND seq < $2 ORDER BY seq"

// tileInTree reports whether the tile at level, index and width (hashes,
// or entries at level -1) lies within the tree of size treeSize.
func tileInTree(level int, index int64, width int, treeSize int64) bool {
	if index < 0 || width < 1 || width > TileWidth || treeSize < 0 || index > math.MaxInt64/TileWidth {
		return false
	}
	available := treeSize // entries, or level-0 hashes
	if level > 0 {
		if level*TileHeight >= 63 {
			return false
		}
		available = treeSize >> (level * TileHeight)
	}
	return index*TileWidth+int64(width) <= available
}

// HashTile returns the C2SP tlog-tiles hash tile at level and index, width
// hashes wide (TileWidth for a full tile), as the tree of size treeSize
// holds it: the width hashes of tree level level·TileHeight it covers,
// concatenated, read from the stored tile where there is one (a full
// level-0 tile from its eight parts, a full tile above from audit_tiles, a
// partial one of that width), else from the stored hashes in one query. A
// tile that reaches beyond treeSize is ErrBadRange: a full tile is then
// the same bytes for every larger tree, and a partial one is a prefix of
// its full tile.
func (s *store) HashTile(ctx context.Context, level int, index int64, width int, treeSize int64) ([]byte, error) {
	if level < 0 || !tileInTree(level, index, width, treeSize) {
		return nil, ErrBadRange
	}
	if level == 0 && width == TileWidth {
		data, err := s.storedLeafTile(ctx, index)
		if err != nil || data != nil {
			return data, err
		}
	}
	if width == TileWidth {
		var data []byte
		err := s.pool.QueryRow(ctx, sqlStoredTile, level, index).Scan(&data)
		if err == nil && len(data) == TileWidth*tlog.HashSize {
			return data, nil
		}
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("audit: hash tile %d/%d: %w", level, index, err)
		}
	} else if level >= partialTileLevel {
		var data []byte
		err := s.pool.QueryRow(ctx, sqlPartialTileOfWidth, level, index, width).Scan(&data)
		if err == nil && len(data) == width*tlog.HashSize {
			return data, nil
		}
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("audit: hash tile %d/%d.%d: %w", level, index, width, err)
		}
	}
	return s.computeTile(ctx, level, index, width)
}

// computeTile reads a tile from the stored hashes: a full level-0 tile
// from the leaf hashes this process kept of its appends, if it kept them
// and the table holds their root (leafTile), else a level-0 tile as a
// range of leaf hashes, a higher one hash by hash.
func (s *store) computeTile(ctx context.Context, level int, index int64, width int) ([]byte, error) {
	if level == 0 && width == TileWidth {
		data, err := s.leafTile(ctx, index)
		if err != nil {
			return nil, fmt.Errorf("audit: hash tile 0/%d: %w", index, err)
		}
		if data != nil {
			return data, nil
		}
	}
	if level == 0 {
		return s.leafHashTile(ctx, index, width)
	}
	data, err := tlog.ReadTileData(tlog.Tile{H: TileHeight, L: level, N: index, W: width}, s.HashReader(ctx))
	if err != nil {
		return nil, fmt.Errorf("%w: hash tile %d/%d.%d: %w", ErrMissingEntries, level, index, width, err)
	}
	return data, nil
}

// Stored full tiles (migration 00017): read one, write one.
const (
	sqlStoredTile   = "SELECT data FROM audit_tiles WHERE level = $1 AND idx = $2"
	sqlInsertTile   = "INSERT INTO audit_tiles (level, idx, data) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
	sqlStoredTiles  = "SELECT coalesce(max(idx) + 1, 0) FROM audit_tiles WHERE level = $1"
	maxTilesPerCall = 256
)

// storeTiles writes the full hash tiles of the tree of size treeSize that
// are not stored yet, at every level, at most maxTilesPerCall of them, in
// order, then its partial tiles (storePartialTiles); it returns how many
// it wrote. Level-0 tiles go into audit_leaf_tile_parts, in parts
// (storeLeafTiles), the others into audit_tiles. Each tile is computed
// from the stored hashes as HashTile would serve it. Full tiles of a tree
// are the same in every larger tree, so a tile once stored is never wrong
// for a later checkpoint. edges is what the caller's earlier rounds
// computed of the partial tiles; storeTiles adds to it.
func (s *store) storeTiles(ctx context.Context, treeSize int64, edges *partialTileEdges) (int, error) {
	written, err := s.storeLeafTiles(ctx, treeSize, maxTilesPerCall)
	if err != nil {
		return written, err
	}
	for level := 1; level < 8 && written < maxTilesPerCall; level++ {
		full := treeSize >> ((level + 1) * TileHeight)
		if full == 0 {
			break
		}
		var next int64
		if err := s.pool.QueryRow(ctx, sqlStoredTiles, level).Scan(&next); err != nil {
			return written, fmt.Errorf("audit: store tiles: %w", err)
		}
		for ; next < full && written < maxTilesPerCall; next++ {
			data, err := s.computeTile(ctx, level, next, TileWidth)
			if err != nil {
				return written, fmt.Errorf("audit: store tiles: %w", err)
			}
			if _, err := s.pool.Exec(ctx, sqlInsertTile, level, next, data); err != nil {
				return written, fmt.Errorf("audit: store tile %d/%d: %w", level, next, err)
			}
			written++
			if err := edges.addRootOf(level, next, data); err != nil {
				return written, fmt.Errorf("audit: store tiles: %w", err)
			}
		}
	}
	if written < maxTilesPerCall {
		n, err := s.storePartialTiles(ctx, treeSize, edges)
		written += n
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

// Stored partial tiles (migration 00021): the rightmost tile of each level
// from partialTileLevel up, once for each width it reaches. Below that
// level a partial tile's hashes are recent rows, and it would take a new
// row every 256 entries at level 1; from it up, a row every 65,536.
const (
	partialTileLevel      = 2
	sqlPartialTile        = "SELECT width, data FROM audit_partial_tiles WHERE level = $1 AND idx = $2 AND width <= $3 ORDER BY width DESC LIMIT 1"
	sqlPartialTileOfWidth = "SELECT data FROM audit_partial_tiles WHERE level = $1 AND idx = $2 AND width = $3"
	sqlInsertPartialTile  = "INSERT INTO audit_partial_tiles (level, idx, width, data) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING"
)

// partialTileEdges is what the tile job has computed, between its rounds,
// of the rightmost partial tile at each level from partialTileLevel up:
// its first hashes, in order. Tree level L·TileHeight's node n is the root
// of full tile n at level L-1, which the job computes as it stores that
// tile (addRootOf), so each wider partial tile is what the job holds plus
// the roots of the full tiles it stored since, and costs no read: without
// it, every 65,536 entries a level-2 tile read up to 255 entry rows
// scattered over the table. What it does not hold (after a restart, or
// past a tile it did not store itself) is computed from the stored hashes
// and remembered. The zero value holds nothing; a nil one is never used.
type partialTileEdges struct {
	levels [8]partialTileEdge // by tile level; below partialTileLevel unused
}

// partialTileEdge is the start of the tile at index of its level: the
// first len(data)/tlog.HashSize hashes.
type partialTileEdge struct {
	index int64
	data  []byte
}

// tile returns the partial tile at level and index, width hashes wide, if
// e holds it, else nil.
func (e *partialTileEdges) tile(level int, index int64, width int) []byte {
	if e == nil || level < partialTileLevel || level >= len(e.levels) {
		return nil
	}
	edge := &e.levels[level]
	if edge.index != index || len(edge.data) < width*tlog.HashSize {
		return nil
	}
	return edge.data[: width*tlog.HashSize : width*tlog.HashSize]
}

// remember records data, the first hashes of the tile at level and index,
// unless e already holds as many of them.
func (e *partialTileEdges) remember(level int, index int64, data []byte) {
	if e == nil || level < partialTileLevel || level >= len(e.levels) {
		return
	}
	edge := &e.levels[level]
	if edge.index == index && len(edge.data) >= len(data) {
		return
	}
	*edge = partialTileEdge{index: index, data: slices.Clone(data)}
}

// addRootOf adds the root of the full tile at level and index, whose
// hashes are data, to the partial tile above it, if it is the next hash
// that tile lacks or its first.
func (e *partialTileEdges) addRootOf(level int, index int64, data []byte) error {
	above := level + 1
	if e == nil || above < partialTileLevel || above >= len(e.levels) {
		return nil
	}
	edge := &e.levels[above]
	next := index / TileWidth
	at := int(index % TileWidth)
	switch {
	case at == 0:
		edge.index, edge.data = next, nil
	case edge.index != next || len(edge.data) != at*tlog.HashSize:
		return nil // a gap: the next partial tile is computed from the rows
	}
	// The tile holds its levels up to the two halves of its root.
	t := tlog.Tile{H: TileHeight, L: level, N: index, W: TileWidth}
	var halves [2]tlog.Hash
	for i := range halves {
		h, err := tlog.HashFromTile(t, data, tlog.StoredHashIndex(above*TileHeight-1, 2*index+int64(i)))
		if err != nil {
			return fmt.Errorf("root of tile %d/%d: %w", level, index, err)
		}
		halves[i] = h
	}
	root := tlog.NodeHash(halves[0], halves[1])
	edge.data = append(edge.data, root[:]...)
	return nil
}

// storePartialTiles writes the partial tiles of the tree of size treeSize,
// from level partialTileLevel up, that are not stored yet, and returns how
// many it wrote. Each is what edges holds of it, else computed from the
// stored hashes as HashTile would serve it (at level 2, one query of up to
// 255 rows), and never copied from a narrower stored row, so that a forged
// row is not copied into the wider ones. A partial tile of width w is the
// first w hashes of its full tile, the same in every tree that holds them.
func (s *store) storePartialTiles(ctx context.Context, treeSize int64, edges *partialTileEdges) (int, error) {
	written := 0
	for level := partialTileLevel; level*TileHeight < 63 && treeSize>>(level*TileHeight) > 0; level++ {
		nodes := treeSize >> (level * TileHeight)
		index, width := nodes/TileWidth, int(nodes%TileWidth)
		if width == 0 {
			continue
		}
		var stored []byte
		err := s.pool.QueryRow(ctx, sqlPartialTileOfWidth, level, index, width).Scan(&stored)
		if err == nil {
			continue
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return written, fmt.Errorf("audit: store partial tile %d/%d.%d: %w", level, index, width, err)
		}
		data := edges.tile(level, index, width)
		if data == nil {
			data, err = s.computeTile(ctx, level, index, width)
			if err != nil {
				return written, fmt.Errorf("audit: store partial tile %d/%d.%d: %w", level, index, width, err)
			}
			edges.remember(level, index, data)
		}
		if _, err := s.pool.Exec(ctx, sqlInsertPartialTile, level, index, width, data); err != nil {
			return written, fmt.Errorf("audit: store partial tile %d/%d.%d: %w", level, index, width, err)
		}
		written++
	}
	return written, nil
}

// ErrMissingEntries: a tile or bundle of a tree the log had reaches
// entries or hashes that are not stored (rows deleted behind the
// service's back, or a tree larger than the log). The tree size comes
// from a published checkpoint, so the read itself is the check: no
// separate query of the log's size.
var ErrMissingEntries = errors.New("audit: the log is missing entries of the tree")

// leafHashTile reads a level-0 tile, the leaf hashes of entries
// TileWidth·index up to width more, with one range of the primary key
// rather than width lookups.
func (s *store) leafHashTile(ctx context.Context, index int64, width int) ([]byte, error) {
	first := index * TileWidth
	rows, err := s.pool.Query(ctx, sqlLeafHashRange, first, first+int64(width))
	if err != nil {
		return nil, fmt.Errorf("audit: hash tile 0/%d.%d: %w", index, width, err)
	}
	defer rows.Close()
	out := make([]byte, 0, width*tlog.HashSize)
	for rows.Next() {
		var h []byte
		if err := rows.Scan(&h); err != nil {
			return nil, fmt.Errorf("audit: hash tile 0/%d.%d: %w", index, width, err)
		}
		if len(h) != tlog.HashSize {
			return nil, fmt.Errorf("%w: hash tile 0/%d.%d: entry %d has no stored leaf hash", ErrMissingEntries, index, width, first+int64(len(out)/tlog.HashSize))
		}
		out = append(out, h...)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit: hash tile 0/%d.%d: %w", index, width, err)
	}
	if len(out) != width*tlog.HashSize {
		return nil, fmt.Errorf("%w: hash tile 0/%d.%d: %d of its entries stored", ErrMissingEntries, index, width, len(out)/tlog.HashSize)
	}
	return out, nil
}

// Leaves returns the leaves of entries [start, end), in order: what a
// mirror upload sends (mirror.Source).
func (s *store) Leaves(ctx context.Context, start, end int64) ([][]byte, error) {
	rows, err := s.pool.Query(ctx, sqlEntryRange, start, end)
	if err != nil {
		return nil, fmt.Errorf("audit: read leaves: %w", err)
	}
	leaves, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return nil, fmt.Errorf("audit: read leaves: %w", err)
	}
	return leaves, nil
}

// ErrEntryTooLarge is returned for an entry bundle holding a leaf longer
// than an entry bundle can frame (65,535 bytes).
var ErrEntryTooLarge = fmt.Errorf("audit: a leaf longer than %d bytes does not fit an entry bundle", math.MaxUint16)

// EntryBundle returns the C2SP tlog-tiles entry bundle at index, width
// entries wide (TileWidth for a full bundle), of the tree of size
// treeSize: each entry's exact leaf bytes, the bytes the tree hashes,
// after its length as a big-endian uint16.
func (s *store) EntryBundle(ctx context.Context, index int64, width int, treeSize int64) ([]byte, error) {
	if !tileInTree(0, index, width, treeSize) {
		return nil, ErrBadRange
	}
	first := index * TileWidth
	rows, err := s.pool.Query(ctx, sqlEntryRange, first, first+int64(width))
	if err != nil {
		return nil, fmt.Errorf("audit: entry bundle %d.%d: %w", index, width, err)
	}
	defer rows.Close()
	var out []byte
	n := 0
	for rows.Next() {
		var leaf []byte
		if err := rows.Scan(&leaf); err != nil {
			return nil, fmt.Errorf("audit: entry bundle %d.%d: %w", index, width, err)
		}
		if len(leaf) > math.MaxUint16 {
			return nil, fmt.Errorf("%w: entry %d", ErrEntryTooLarge, first+int64(n))
		}
		out = binary.BigEndian.AppendUint16(out, uint16(len(leaf)))
		out = append(out, leaf...)
		n++
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit: entry bundle %d.%d: %w", index, width, err)
	}
	if n != width {
		return nil, fmt.Errorf("%w: entry bundle %d.%d: %d of its entries stored", ErrMissingEntries, index, width, n)
	}
	return out, nil
}

// tileCheck compares the stored full tiles (audit_tiles, and the parts of
// level-0 ones in audit_leaf_tile_parts) and partial tiles
// (audit_partial_tiles) with the hashes verification recomputes, in seq
// order: each tile as its last hash is made, each partial tile as the
// hash that ends its width is. A tile not stored is not a problem (the
// job may not have reached it); a stored tile that differs is, since
// clients would be served it.
// It holds one tile per level being assembled and a window of stored
// level-0 tiles: memory is bounded by a constant.
type tileCheck struct {
	store *store
	rep   *Report
	cur   [8]struct {
		idx  int64
		data []byte
		ok   bool
	}
	window      map[int64][]byte     // stored level-0 tiles (audit_tiles) from windowStart
	partsWindow map[int64][]leafPart // stored level-0 tiles' parts from windowStart
	windowStart int64
	windowEnd   int64
}

// prefill starts the tiles that a verification from tree size start
// enters midway with their nodes below start, read from the stored
// hashes (which the run that verified the tree checked), so that an
// incremental run compares every tile it completes, those spanning two
// runs included.
func (tc *tileCheck) prefill(ctx context.Context, start int64) error {
	for level := 0; level < len(tc.cur); level++ {
		done := start >> (level * TileHeight) // complete nodes of tree level 8·level
		n, pos := done/TileWidth, done%TileWidth
		if done == 0 {
			break
		}
		if pos == 0 {
			continue
		}
		indexes := make([]int64, pos)
		for i := range indexes {
			indexes[i] = tlog.StoredHashIndex(level*TileHeight, n*TileWidth+int64(i))
		}
		hashes, err := tc.store.HashReader(ctx).ReadHashes(indexes)
		if err != nil {
			return fmt.Errorf("audit: verify: the stored hashes of tile %d/%d below tree size %d: %w", level, n, start, err)
		}
		c := &tc.cur[level]
		c.idx, c.data, c.ok = n, c.data[:0], true
		for _, h := range hashes {
			c.data = append(c.data, h[:]...)
		}
	}
	return nil
}

// tileWindow is how many stored level-0 tiles one query reads (2 MiB, and
// 2.2 MiB of their parts).
const tileWindow = 256

// add takes the recomputed stored hashes of entry seq (stored[j] the node
// of level j it completed) and checks every tile it completes.
func (tc *tileCheck) add(ctx context.Context, seq int64, stored []tlog.Hash) error {
	for level := 0; level < len(tc.cur) && level*TileHeight < len(stored); level++ {
		k := (seq+1)>>(level*TileHeight) - 1 // the node's index at tree level 8·level
		n, pos := k/TileWidth, k%TileWidth
		c := &tc.cur[level]
		if pos == 0 {
			c.idx, c.data, c.ok = n, c.data[:0], true
		}
		if !c.ok || c.idx != n {
			continue // verification began inside this tile
		}
		c.data = append(c.data, stored[level*TileHeight][:]...)
		if pos == TileWidth-1 {
			c.ok = false
			if err := tc.compare(ctx, level, n, c.data); err != nil {
				return err
			}
		} else if level >= partialTileLevel {
			if err := tc.comparePartial(ctx, level, n, c.data); err != nil {
				return err
			}
		}
	}
	return nil
}

// compare checks the stored tile at level and index, if there is one,
// against data.
func (tc *tileCheck) compare(ctx context.Context, level int, index int64, data []byte) error {
	var stored []byte
	if level == 0 {
		if index < tc.windowStart || index >= tc.windowEnd {
			if err := tc.readWindow(ctx, index); err != nil {
				return err
			}
		}
		stored = tc.window[index]
	} else {
		err := tc.store.pool.QueryRow(ctx, sqlStoredTile, level, index).Scan(&stored)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("audit: verify: stored tile %d/%d: %w", level, index, err)
		}
	}
	if level == 0 {
		if err := tc.compareLeafParts(index, data); err != nil {
			return err
		}
	}
	if stored == nil {
		return nil
	}
	tc.rep.Tiles++
	if !bytes.Equal(stored, data) {
		tc.rep.bad(-1, "stored tile %d/%d (audit_tiles) differs from the recomputed hashes: clients are served a tile their proofs fail with", level, index)
	}
	return nil
}

// compareLeafParts checks the stored parts of full level-0 tile index, if
// there are any, against data, its recomputed leaf hashes: each part's
// hashes and the roots beside it. A tile with parts counts as one tile.
func (tc *tileCheck) compareLeafParts(index int64, data []byte) error {
	stored := tc.partsWindow[index]
	if len(stored) == 0 {
		return nil
	}
	want, err := splitLeafTile(index, data)
	if err != nil {
		return fmt.Errorf("audit: verify: %w", err)
	}
	tc.rep.Tiles++
	for _, lp := range stored {
		if lp.part < 0 || lp.part >= leafTileParts {
			tc.rep.bad(-1, "stored part %d of tile 0/%d (audit_leaf_tile_parts) is not a part of a tile: the table's checks were changed", lp.part, index)
			continue
		}
		w := want[lp.part]
		if !bytes.Equal(lp.hashes, w.hashes) || !bytes.Equal(lp.siblings, w.siblings) {
			tc.rep.bad(-1, "stored part %d of tile 0/%d (audit_leaf_tile_parts) differs from the recomputed hashes: clients are served proofs and a tile that fail", lp.part, index)
		}
	}
	return nil
}

// comparePartial checks the stored partial tile at level and index as wide
// as data, if there is one, against data: one query for every 65,536
// entries at level 2.
func (tc *tileCheck) comparePartial(ctx context.Context, level int, index int64, data []byte) error {
	width := len(data) / tlog.HashSize
	var stored []byte
	err := tc.store.pool.QueryRow(ctx, sqlPartialTileOfWidth, level, index, width).Scan(&stored)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("audit: verify: stored partial tile %d/%d.%d: %w", level, index, width, err)
	}
	tc.rep.Tiles++
	if !bytes.Equal(stored, data) {
		tc.rep.bad(-1, "stored partial tile %d/%d.%d (audit_partial_tiles) differs from the recomputed hashes: clients are served proofs that fail", level, index, width)
	}
	return nil
}

// readWindow reads the stored level-0 tiles from index on.
func (tc *tileCheck) readWindow(ctx context.Context, index int64) error {
	rows, err := tc.store.pool.Query(ctx, "SELECT idx, data FROM audit_tiles WHERE level = 0 AND idx >= $1 AND idx < $2", index, index+tileWindow)
	if err != nil {
		return fmt.Errorf("audit: verify: stored tiles: %w", err)
	}
	defer rows.Close()
	tc.window = make(map[int64][]byte, tileWindow)
	for rows.Next() {
		var idx int64
		var data []byte
		if err := rows.Scan(&idx, &data); err != nil {
			return fmt.Errorf("audit: verify: stored tiles: %w", err)
		}
		tc.window[idx] = data
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("audit: verify: stored tiles: %w", err)
	}
	rows.Close()
	rows, err = tc.store.pool.Query(ctx, sqlLeafPartsWindow, index, index+tileWindow)
	if err != nil {
		return fmt.Errorf("audit: verify: stored tile parts: %w", err)
	}
	defer rows.Close()
	tc.partsWindow = make(map[int64][]leafPart, tileWindow)
	for rows.Next() {
		var lp leafPart
		if err := rows.Scan(&lp.tile, &lp.part, &lp.siblings, &lp.hashes); err != nil {
			return fmt.Errorf("audit: verify: stored tile parts: %w", err)
		}
		tc.partsWindow[lp.tile] = append(tc.partsWindow[lp.tile], lp)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("audit: verify: stored tile parts: %w", err)
	}
	tc.windowStart, tc.windowEnd = index, index+tileWindow
	return nil
}

// proofReader is the tlog.HashReader of a proof in the tree of size
// treeSize. It takes each hash from the stored tile covering it: the full
// tile, where the tree holds that tile whole, else, from level
// partialTileLevel up, the widest stored partial tile the tree holds; the
// rest from the entries' stored hashes. A full level-0 tile is read in
// parts (chooseLeafParts). An inclusion proof at 10 M entries then reads
// three rows: the part of its level-0 tile that holds its entry (32 leaf
// hashes and the three roots beside them), the 256 level-8 nodes around
// those, and the partial tile of level-16 nodes that every proof shares.
// Only the hashes along the tree's right edge below level 16, which every
// proof shares too, come from rows. The log's size,
// the tiles and the rows are one batch, one round trip; a tile the job
// has not stored yet costs a second read, of its hashes as rows. A forged
// tile makes the proof fail the client's check against a cosigned
// checkpoint, as a forged stored hash does; it never makes one pass.
type proofReader struct {
	ctx      context.Context
	s        *store
	treeSize int64
	checked  bool // the log's size was read and holds treeSize
}

// Where a proof's hash comes from when it is not one of tiles.
const (
	fromRows     = -1 // an entry row: no stored tile of the tree covers it
	fromMissing  = -2 // an entry row read after the tiles: its tile is not stored, or not that wide
	fromLeafPart = -3 // a part of a full level-0 tile
)

// proofTile is a stored tile a proof asks for: full, or the widest
// partial one of at most W hashes (W < TileWidth).
type proofTile struct {
	t    tlog.Tile
	data []byte // nil until read, and if none is stored
}

// proofSources is where each hash of one ReadHashes call comes from.
type proofSources struct {
	tiles     []proofTile
	tileOf    []int      // per index: into tiles, or fromRows, fromMissing or fromLeafPart
	rows      []int64    // hashes no stored tile of the tree covers
	leafNodes []int64    // hashes in full level-0 tiles
	leafAt    []int      // their positions in indexes
	parts     []leafPart // the parts of level-0 tiles leafNodes are read from
	partOf    []int      // per leafNodes: into parts
	rowHashes []tlog.Hash
}

// ReadHashes implements tlog.HashReader.
func (r *proofReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	src := r.sources(indexes)
	if err := r.read(src); err != nil {
		return nil, err
	}
	return r.assemble(indexes, src)
}

// sources decides where each hash of indexes comes from.
func (r *proofReader) sources(indexes []int64) *proofSources {
	src := &proofSources{tileOf: make([]int, len(indexes))}
	for i, idx := range indexes {
		t, ok := storedTileFor(idx, r.treeSize)
		src.tileOf[i] = fromRows
		if !ok {
			src.rows = append(src.rows, idx)
			continue
		}
		if t.L == 0 && t.W == TileWidth {
			src.tileOf[i] = fromLeafPart
			src.leafNodes, src.leafAt = append(src.leafNodes, idx), append(src.leafAt, i)
			continue
		}
		src.tileOf[i] = slices.IndexFunc(src.tiles, func(pt proofTile) bool { return pt.t == t })
		if src.tileOf[i] < 0 {
			src.tileOf[i] = len(src.tiles)
			src.tiles = append(src.tiles, proofTile{t: t})
		}
	}
	src.parts, src.partOf = chooseLeafParts(src.leafNodes)
	return src
}

// read reads the log's size, the tiles, the parts and the rows of src in
// one batch, and checks that the log holds the tree.
func (r *proofReader) read(src *proofSources) error {
	b := &pgx.Batch{}
	size := int64(-1)
	b.Queue(sqlTreeSize).QueryRow(func(row pgx.Row) error { return row.Scan(&size) })
	for k := range src.tiles {
		queueProofTile(b, &src.tiles[k])
	}
	for k := range src.parts {
		queueLeafPart(b, &src.parts[k])
	}
	if len(src.rows) > 0 {
		entryHashes.Queue(b, src.rows, &src.rowHashes)
	}
	err := r.s.pool.SendBatch(r.ctx, b).Close()
	// The size first: a log shorter than the tree (a standby behind) also
	// lacks the rows.
	if size >= 0 && r.treeSize > size {
		return fmt.Errorf("%w: tree size %d is beyond the log's %d entries", ErrNotFound, r.treeSize, size)
	}
	if err != nil {
		return fmt.Errorf("audit: proof hashes: %w", err)
	}
	r.checked = true
	return nil
}

// queueProofTile adds the read of pt to b: a full tile, or the widest
// stored partial one of at most its width. pt.data stays nil if none is
// stored.
func queueProofTile(b *pgx.Batch, pt *proofTile) {
	if pt.t.W == TileWidth {
		b.Queue(sqlStoredTile, pt.t.L, pt.t.N).QueryRow(func(row pgx.Row) error {
			var d []byte
			if err := row.Scan(&d); err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
			if len(d) == TileWidth*tlog.HashSize {
				pt.data = d
			}
			return nil
		})
		return
	}
	b.Queue(sqlPartialTile, pt.t.L, pt.t.N, pt.t.W).QueryRow(func(row pgx.Row) error {
		var w int
		var d []byte
		if err := row.Scan(&w, &d); err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if w >= 1 && w <= pt.t.W && len(d) == w*tlog.HashSize {
			pt.t.W, pt.data = w, d
		}
		return nil
	})
}

// assemble takes each hash of indexes from what read found, and reads the
// hashes of tiles and parts not stored (or not that wide) from the rows,
// in a second query.
func (r *proofReader) assemble(indexes []int64, src *proofSources) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	tileOf := src.tileOf
	for j, i := range src.leafAt {
		level, n := tlog.SplitStoredHashIndex(src.leafNodes[j])
		if h, ok := src.parts[src.partOf[j]].hash(level, n); ok {
			out[i] = h
		} else {
			tileOf[i] = fromMissing
		}
	}
	var missing []int64 // in tiles not stored yet, or beyond the widest stored
	for i, idx := range indexes {
		if tileOf[i] == fromMissing {
			missing = append(missing, idx)
		}
		if k := tileOf[i]; k >= 0 {
			if h, ok := hashFromTile(src.tiles[k], idx); ok {
				out[i] = h
				continue
			}
			tileOf[i] = fromMissing
			missing = append(missing, idx)
		}
	}
	var missingHashes []tlog.Hash
	if len(missing) > 0 {
		var err error
		if missingHashes, err = readHashes(r.ctx, r.s.pool, missing); err != nil {
			return nil, err
		}
	}
	rowHashes := src.rowHashes
	for i := range indexes {
		switch tileOf[i] {
		case fromRows:
			out[i], rowHashes = rowHashes[0], rowHashes[1:]
		case fromMissing:
			out[i], missingHashes = missingHashes[0], missingHashes[1:]
		}
	}
	return out, nil
}

// storedTileFor returns the stored tile a proof in the tree of size
// treeSize may take the hash at stored index idx from: the full tile
// covering it, if the tree holds that tile whole; else, from level
// partialTileLevel up, the tile as wide as the tree holds it (the widest
// stored partial tile up to that width may hold the hash). Below that
// level, the hashes of partial tiles come from rows.
func storedTileFor(idx, treeSize int64) (tlog.Tile, bool) {
	t := tlog.TileForIndex(TileHeight, idx)
	t.W = TileWidth
	if tileInTree(t.L, t.N, t.W, treeSize) {
		return t, true
	}
	if t.L < partialTileLevel || t.L*TileHeight >= 63 {
		return tlog.Tile{}, false
	}
	w := (treeSize >> (t.L * TileHeight)) - t.N*TileWidth
	if w < 1 || w >= TileWidth {
		return tlog.Tile{}, false
	}
	t.W = int(w)
	return t, true
}

// hashFromTile returns the hash at stored index idx from the tile read,
// if it holds it.
func hashFromTile(pt proofTile, idx int64) (tlog.Hash, bool) {
	if pt.data == nil {
		return tlog.Hash{}, false
	}
	h, err := tlog.HashFromTile(pt.t, pt.data, idx)
	return h, err == nil
}

// checkSize fails unless the log holds treeSize entries: a proof that read
// no hashes did not check.
func (r *proofReader) checkSize() error {
	if r.checked {
		return nil
	}
	return r.s.checkSize(r.ctx, r.treeSize)
}

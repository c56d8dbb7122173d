package audit

import (
	"context"
	"sync"

	"golang.org/x/mod/sumdb/tlog"
)

// maxRecentLeaves bounds the leaf hashes a process keeps for the tile job:
// 2^18 hashes, 8 MiB, some eight seconds of ingest at 30,000 events/s,
// while the job stores each level-0 tile a second or two after its entries.
const maxRecentLeaves = 1 << 18

// recentLeaves holds the leaf hashes of the entries this process appended
// most recently, in one contiguous run, each added only once its
// transaction committed. The tile job makes a level-0 tile from them
// instead of reading back its 256 rows: those rows' heap pages have
// usually left shared buffers by then (COPY writes through a small ring of
// buffers), and reading them back cost PostgreSQL some 3 µs an entry,
// evicted the indexes' hot pages and dirtied every heap page a second time
// for its hint bits (docs/performance.md, "Fifth pass"). A tile from here
// is used only if its root is the level-8 hash stored in the table
// (leafTile), so a run of leaves that no longer matches the table (a lost
// tail, another process's appends) is never stored as a tile.
type recentLeaves struct {
	mu     sync.Mutex
	start  int64 // the seq of hashes[0]
	hashes []tlog.Hash
}

// committed adds the leaf hashes of entries [from, from+len(leaves)), which
// have just committed. A run that does not continue the kept one replaces
// it.
func (r *recentLeaves) committed(from int64, leaves []tlog.Hash) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if from != r.start+int64(len(r.hashes)) {
		r.start, r.hashes = from, r.hashes[:0]
	}
	r.hashes = append(r.hashes, leaves...)
	if len(r.hashes) > maxRecentLeaves {
		drop := len(r.hashes) - maxRecentLeaves/2
		r.start += int64(drop)
		r.hashes = append(r.hashes[:0], r.hashes[drop:]...)
	}
}

// end is the seq after the kept run: where this process's last committed
// append ended, 0 before its first.
func (r *recentLeaves) end() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.start + int64(len(r.hashes))
}

// tile returns level-0 tile index, full, from the kept hashes, or nil if
// they do not cover it.
func (r *recentLeaves) tile(index int64) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	first := index*TileWidth - r.start
	if first < 0 || first+TileWidth > int64(len(r.hashes)) {
		return nil
	}
	data := make([]byte, 0, TileWidth*tlog.HashSize)
	for _, h := range r.hashes[first : first+TileWidth] {
		data = append(data, h[:]...)
	}
	return data
}

// leafTile returns full level-0 tile index from the kept leaf hashes when
// they cover it and its root is the level-8 hash the table stores for it
// (one row, the tile's last entry's), or nil. The root binds all 256 leaf
// hashes, so a tile returned is the one the table's rows make.
func (s *store) leafTile(ctx context.Context, index int64) ([]byte, error) {
	data := s.leaves.tile(index)
	if data == nil {
		return nil, nil
	}
	ok, err := s.leafTileHasStoredRoot(ctx, index, data)
	if err != nil || !ok {
		return nil, err
	}
	return data, nil
}

// leafTileHasStoredRoot reports whether data, the 256 leaf hashes of full
// level-0 tile index, hash to the level-8 node the table stores for it.
func (s *store) leafTileHasStoredRoot(ctx context.Context, index int64, data []byte) (bool, error) {
	t := tlog.Tile{H: TileHeight, L: 0, N: index, W: TileWidth}
	left, err := tlog.HashFromTile(t, data, tlog.StoredHashIndex(TileHeight-1, 2*index))
	if err != nil {
		return false, err
	}
	right, err := tlog.HashFromTile(t, data, tlog.StoredHashIndex(TileHeight-1, 2*index+1))
	if err != nil {
		return false, err
	}
	stored, err := readHashes(ctx, s.pool, []int64{tlog.StoredHashIndex(TileHeight, index)})
	if err != nil {
		return false, err
	}
	return tlog.NodeHash(left, right) == stored[0], nil
}

package mirror

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/transparency-dev/tessera/api/layout"
	"golang.org/x/mod/sumdb/tlog"
)

// Handler serves the mirror: the submission endpoints at its root
// (POST /add-checkpoint, POST /add-entries) and the copy, as C2SP
// tlog-tiles, under /<origin hash>/ (checkpoint, tile/<L>/<N>[.p/<W>],
// tile/entries/<N>[.p/<W>]). GET /healthz answers {"status":"ok"} while
// its database does, 503 otherwise.
func (m *Mirror) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /add-checkpoint", m.pending.Handler())
	mux.HandleFunc("POST /add-entries", m.addEntries)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if err := m.pool.Ping(r.Context()); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, `{"status":"unavailable"}`)
			return
		}
		fmt.Fprintln(w, `{"status":"ok"}`)
	})
	mux.HandleFunc("GET /"+m.prefix+"/checkpoint", m.reader(m.serveCheckpoint))
	mux.HandleFunc("GET /"+m.prefix+"/tile/entries/{path...}", m.reader(m.serveBundle))
	mux.HandleFunc("GET /"+m.prefix+"/tile/{level}/{path...}", m.reader(m.serveTile))
	return mux
}

// addEntries is POST /add-entries (C2SP tlog-mirror).
func (m *Mirror) addEntries(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Accept-Encoding", "gzip")
	body := io.Reader(r.Body)
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, _ := gzipReaders.Get().(*gzip.Reader)
		var err error
		if zr == nil {
			zr, err = gzip.NewReader(r.Body)
		} else {
			err = zr.Reset(r.Body)
		}
		if err != nil {
			http.Error(w, "the body is not gzip", http.StatusBadRequest)
			return
		}
		defer gzipReaders.Put(zr)
		body = zr
	}
	status, answer := m.upload(r.Context(), bufio.NewReaderSize(body, 64<<10))
	m.opts.Metrics.answered(status)
	switch status {
	case http.StatusOK:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	case http.StatusConflict, http.StatusAccepted:
		w.Header().Set("Content-Type", "text/x.tlog.mirror-info")
	default:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
	}
	w.WriteHeader(status)
	_, _ = w.Write(answer)
}

// gzipReaders are reused across add-entries requests.
var gzipReaders sync.Pool

// commitEvery is how many authenticated packages one transaction commits.
const commitEvery = 32

// mirrorInfo is the body of a 409 or 202 answer: a valid pending size, the
// next entry, and the ticket (always empty: every pending checkpoint is
// kept, so none needs recovering).
func mirrorInfo(pending, next int64) []byte {
	return fmt.Appendf(nil, "%d\n%d\n%s\n", pending, next, base64.StdEncoding.EncodeToString(nil))
}

// upload processes an add-entries body and returns the answer's status
// and body.
func (m *Mirror) upload(ctx context.Context, r *bufio.Reader) (int, []byte) {
	u, err := readUpload(r)
	if err != nil {
		return http.StatusBadRequest, []byte("the body does not begin with an add-entries header\n")
	}
	if u.origin != m.opts.Origin {
		return http.StatusNotFound, []byte("this mirror does not mirror that log\n")
	}
	next, err := m.next(ctx, m.pool)
	if err != nil {
		return m.unavailable(err)
	}
	mirrorSize, _, err := m.mirrored(ctx, m.pool)
	if err != nil {
		return m.unavailable(err)
	}
	cp, err := m.pendingAt(ctx, u.end)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && u.end < mirrorSize) {
		latest, lerr := m.latestPending(ctx)
		if lerr != nil && !errors.Is(lerr, pgx.ErrNoRows) {
			return m.unavailable(lerr)
		}
		return http.StatusConflict, mirrorInfo(latest.size, next)
	}
	if err != nil {
		return m.unavailable(err)
	}
	if u.start > u.end || u.start > next || u.start < next-maxBehind*PackageSize {
		return http.StatusConflict, mirrorInfo(u.end, next)
	}
	// Packages are authenticated one by one as they arrive and committed
	// together, up to commitEvery at a time: one transaction, not one a
	// package (the specification lets a mirror defer commits).
	var pending []verified
	saved, status := 0, 0
	var answer []byte
	flush := func() bool {
		n, err := m.commit(ctx, pending)
		if err != nil {
			status, answer = m.unavailable(err)
			return false
		}
		saved += len(pending)
		next, pending = n, pending[:0]
		return true
	}
	for lo := u.start &^ (PackageSize - 1); lo < u.end && status == 0; lo += PackageSize {
		s, e := max(u.start, lo), min(u.end, lo+PackageSize)
		p, err := readPackage(r, e-s)
		if err != nil {
			status = http.StatusAccepted // the body ended or broke: what was authenticated is kept
			break
		}
		v, err := m.verifyPackage(ctx, cp, lo, s, e, p)
		switch {
		case errors.Is(err, ErrProof):
			m.opts.Log.Warn("mirror: refused an entry package", "from", lo, "to", e, "checkpoint", cp.size)
			status, answer = http.StatusUnprocessableEntity, []byte(err.Error()+"\n")
		case err != nil:
			status, answer = m.unavailable(err)
		default:
			pending = append(pending, v)
			if len(pending) == commitEvery && !flush() {
				return status, answer
			}
		}
	}
	if len(pending) > 0 && !flush() {
		return status, answer
	}
	switch {
	case status == http.StatusAccepted && saved == 0:
		return http.StatusBadRequest, []byte("the body ends or breaks before its first whole entry package\n")
	case status == http.StatusAccepted:
		return http.StatusAccepted, mirrorInfo(u.end, next)
	case status != 0:
		return status, answer
	}
	lines, err := m.cosign(ctx, cp)
	if errors.Is(err, ErrBehind) {
		latest, _ := m.latestPending(ctx)
		return http.StatusConflict, mirrorInfo(latest.size, next)
	}
	if err != nil {
		return m.unavailable(err)
	}
	return http.StatusOK, lines
}

func (m *Mirror) unavailable(err error) (int, []byte) {
	m.opts.Log.Error("mirror: add-entries failed", "err", err)
	return http.StatusServiceUnavailable, []byte("the mirror's database is unavailable\n")
}

// reader wraps a read of the copy with the read token check.
func (m *Mirror) reader(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !m.opts.PublicReads {
			token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || m.opts.ReadToken == "" || subtle.ConstantTimeCompare([]byte(token), []byte(m.opts.ReadToken)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="mirror"`)
				http.Error(w, "a read token is required", http.StatusUnauthorized)
				return
			}
		}
		h(w, r)
	}
}

// serveCheckpoint is GET <origin hash>/checkpoint: the mirror checkpoint,
// the log's signature and the mirror's cosignature.
func (m *Mirror) serveCheckpoint(w http.ResponseWriter, r *http.Request) {
	_, signed, err := m.mirrored(r.Context(), m.pool)
	if err != nil {
		http.Error(w, "the mirror's database is unavailable", http.StatusServiceUnavailable)
		return
	}
	if signed == "" {
		http.Error(w, "the mirror holds no checkpoint yet", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = io.WriteString(w, signed)
}

// serveTile is GET <origin hash>/tile/<L>/<N>[.p/<W>] of the mirror
// checkpoint's tree.
func (m *Mirror) serveTile(w http.ResponseWriter, r *http.Request) {
	level := r.PathValue("level")
	l, n, p, err := layout.ParseTileLevelIndexPartial(level, r.PathValue("path"))
	if err != nil || (len(level) > 1 && level[0] == '0') || n > math.MaxInt64/PackageSize || l > 30 {
		http.Error(w, "not a tlog-tiles tile path", http.StatusBadRequest)
		return
	}
	size, _, err := m.mirrored(r.Context(), m.pool)
	if err != nil {
		http.Error(w, "the mirror's database is unavailable", http.StatusServiceUnavailable)
		return
	}
	tile := tlog.Tile{H: 8, L: int(l), N: int64(n), W: width(p)}
	if !inTree(tile, size) {
		http.Error(w, "no such tile in the mirror checkpoint's tree", http.StatusNotFound)
		return
	}
	data, err := tlog.ReadTileData(tile, entryTable.Reader(r.Context(), m.pool))
	writeTile(w, data, err)
}

// serveBundle is GET <origin hash>/tile/entries/<N>[.p/<W>].
func (m *Mirror) serveBundle(w http.ResponseWriter, r *http.Request) {
	n, p, err := layout.ParseTileIndexPartial(r.PathValue("path"))
	if err != nil || n > math.MaxInt64/PackageSize {
		http.Error(w, "not a tlog-tiles entry bundle path", http.StatusBadRequest)
		return
	}
	size, _, err := m.mirrored(r.Context(), m.pool)
	if err != nil {
		http.Error(w, "the mirror's database is unavailable", http.StatusServiceUnavailable)
		return
	}
	tile := tlog.Tile{H: 8, L: 0, N: int64(n), W: width(p)}
	if !inTree(tile, size) {
		http.Error(w, "no such entry bundle in the mirror checkpoint's tree", http.StatusNotFound)
		return
	}
	lo := int64(n) * PackageSize
	rows, err := m.pool.Query(r.Context(), sqlEntryRange, lo, lo+int64(tile.W))
	var leaves [][]byte
	if err == nil {
		leaves, err = pgx.CollectRows(rows, pgx.RowTo[[]byte])
	}
	if err == nil && len(leaves) != tile.W {
		err = fmt.Errorf("mirror: %d of %d entries of bundle %d", len(leaves), tile.W, n)
	}
	var b bytes.Buffer
	for _, leaf := range leaves {
		b.Write([]byte{byte(len(leaf) >> 8), byte(len(leaf))})
		b.Write(leaf)
	}
	writeTile(w, b.Bytes(), err)
}

// width is the width a tile path names: W of a partial tile, else 256.
func width(p uint8) int {
	if p == 0 {
		return PackageSize
	}
	return int(p)
}

// inTree reports whether the tile is one of a tree of size n: a full tile
// under it, or the partial tile at its right edge with exactly its width.
func inTree(t tlog.Tile, n int64) bool {
	span := int64(1) << (8 * t.L) // entries under one hash of the tile's level
	full := n / span / PackageSize
	switch {
	case t.N < full:
		return t.W == PackageSize
	case t.N == full:
		return int64(t.W) == n/span%PackageSize && t.W > 0
	}
	return false
}

func writeTile(w http.ResponseWriter, data []byte, err error) {
	if err != nil {
		http.Error(w, "the mirror could not read its copy", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	_, _ = w.Write(data)
}

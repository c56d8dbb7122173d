package api

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/transparency-dev/tessera/api/layout"

	"github.com/mediatorhq/mediator/audit"
)

// tileCacheControl is the caching of tiles and entry bundles: a tile's
// path names its content for good (C2SP tlog-tiles: "immutable, so its
// caching headers SHOULD be long-lived"), and only callers with a token
// may read it, so shared caches must not keep it.
const tileCacheControl = "private, max-age=31536000, immutable"

// tlogTile is GET /v1/audit/tlog/tile/{level}/*: a C2SP tlog-tiles hash
// tile, <L>/<N>[.p/<W>], of the latest published checkpoint's tree.
func (s *server) tlogTile(w http.ResponseWriter, r *http.Request) {
	level := chi.URLParam(r, "level")
	l, n, p, err := layout.ParseTileLevelIndexPartial(level, chi.URLParam(r, "*"))
	if err != nil || (len(level) > 1 && level[0] == '0') || n > math.MaxInt64/audit.TileWidth {
		writeError(w, http.StatusBadRequest, codeBadRequest, "not a tlog-tiles tile path: tile/<L>/<N>[.p/<W>], N in 3-digit groups (x001/x234/067)")
		return
	}
	data, err := s.auditLog.HashTile(r.Context(), int(l), int64(n), tileWidth(p))
	s.writeTile(w, r, data, err)
}

// tlogEntries is GET /v1/audit/tlog/tile/entries/*: a C2SP tlog-tiles
// entry bundle, <N>[.p/<W>], of the latest published checkpoint's tree.
func (s *server) tlogEntries(w http.ResponseWriter, r *http.Request) {
	n, p, err := layout.ParseTileIndexPartial(chi.URLParam(r, "*"))
	if err != nil || n > math.MaxInt64/audit.TileWidth {
		writeError(w, http.StatusBadRequest, codeBadRequest, "not a tlog-tiles entry bundle path: tile/entries/<N>[.p/<W>], N in 3-digit groups (x001/x234/067)")
		return
	}
	data, err := s.auditLog.EntryBundle(r.Context(), int64(n), tileWidth(p))
	if err == nil && acceptsGzip(r) {
		// C2SP tlog-tiles: entry bundles compress well (JSON leaves) and
		// should be compressed at the HTTP layer.
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
		_, _ = zw.Write(data)
		if zw.Close() == nil {
			w.Header().Set("Content-Encoding", "gzip")
			data = buf.Bytes()
		}
	}
	w.Header().Set("Vary", "Accept-Encoding")
	s.writeTile(w, r, data, err)
}

// acceptsGzip reports whether r's Accept-Encoding names gzip with a
// nonzero weight (RFC 9110: "gzip", "gzip;q=0.5"; not "gzip;q=0.000").
func acceptsGzip(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept-Encoding") {
		for _, part := range strings.Split(v, ",") {
			coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
				continue
			}
			name, weight, ok := strings.Cut(strings.ReplaceAll(params, " ", ""), "=")
			if !ok || !strings.EqualFold(name, "q") {
				return true
			}
			q, err := strconv.ParseFloat(weight, 64)
			return err == nil && q > 0
		}
	}
	return false
}

// tlogProof is GET /v1/audit/entries/{seq}/tlog-proof: a C2SP tlog-proof
// of the entry under the latest published checkpoint, its leaf as the
// proof's extra data.
func (s *server) tlogProof(w http.ResponseWriter, r *http.Request) {
	seq, ok := nonNegative(w, "seq", chi.URLParam(r, "seq"))
	if !ok {
		return
	}
	b, err := s.auditLog.TlogProof(r.Context(), seq)
	switch {
	case errors.Is(err, audit.ErrNotReplicated):
		notReplicated(w)
		return
	case errors.Is(err, audit.ErrNotPublished):
		w.Header().Set("Retry-After", "2")
		writeError(w, http.StatusNotFound, codeNotPublished, "the entry is not in a published checkpoint's tree yet; retry after the next publication")
		return
	case errors.Is(err, audit.ErrNotFound):
		writeError(w, http.StatusNotFound, codeNotFound, "no entry with that seq")
		return
	case err != nil:
		s.logFailure(r, "tlog-proof", err)
		unavailable(w, "postgres", "the audit log is unavailable")
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=\"%d.tlog-proof\"", seq))
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b)
}

// tileWidth is the width a tile path names: W of a partial tile, else a
// full tile's.
func tileWidth(p uint8) int {
	if p == 0 {
		return audit.TileWidth
	}
	return int(p)
}

// writeTile answers a tile or entry bundle read.
func (s *server) writeTile(w http.ResponseWriter, r *http.Request, data []byte, err error) {
	switch {
	case errors.Is(err, audit.ErrNotReplicated):
		notReplicated(w)
		return
	case errors.Is(err, audit.ErrNotFound):
		writeError(w, http.StatusNotFound, codeNotFound, "no such tile in the latest published checkpoint's tree (or no checkpoint is published yet)")
		return
	case errors.Is(err, audit.ErrMissingEntries):
		s.logFailure(r, "read tile", err)
		writeError(w, http.StatusInternalServerError, codeInternal, "the log is missing entries of its published tree; run `mediator audit verify`")
		return
	case errors.Is(err, audit.ErrEntryTooLarge):
		s.logFailure(r, "read entry bundle", err)
		writeError(w, http.StatusInternalServerError, codeInternal, "an entry of this bundle is longer than an entry bundle can frame")
		return
	case err != nil:
		s.logFailure(r, "read tile", err)
		unavailable(w, "postgres", "the audit log is unavailable")
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Cache-Control", tileCacheControl)
	w.Header().Set("Content-Length", strconv.Itoa(len(data))) // not chunked: 8 KiB is past net/http's buffer
	_, _ = w.Write(data)
}

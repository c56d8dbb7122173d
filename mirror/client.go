package mirror

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/mediatorhq/mediator/subtree"
)

// Source is the log an upload reads: its stored hashes and its leaves.
type Source interface {
	HashReader(ctx context.Context) tlog.HashReader
	// Leaves returns the leaves of entries [start, end), in order.
	Leaves(ctx context.Context, start, end int64) ([][]byte, error)
}

// maxPackagesPerRequest is C2SP tlog-mirror's advice: at most 32 packages
// (8192 entries) per add-entries request.
const maxPackagesPerRequest = 32

// requestTimeout bounds one add-entries request.
const requestTimeout = 30 * time.Second

// ErrNotPending: the mirror does not hold the checkpoint as pending (send
// it to add-checkpoint first), or holds a newer mirror checkpoint.
var ErrNotPending = errors.New("mirror: the checkpoint is not pending at the mirror")

// Upload sends the mirror at url (its submission prefix) the entries of
// src it lacks up to size, the size of a checkpoint it already holds as
// pending, and returns its cosignature lines once it holds them all. next
// is where to start (the mirror's next entry as last known, or 0); Upload
// returns the mirror's next entry as it last said it, for the next call,
// also with an error. Each request carries at most 32 packages; each
// package is proven with a subtree consistency proof.
func Upload(ctx context.Context, hc *http.Client, url, origin string, size, next int64, src Source) ([]byte, int64, error) {
	start := min(next, size)
	for stalls := 0; stalls < 3; {
		end := min(size, start&^(PackageSize-1)+maxPackagesPerRequest*PackageSize)
		body, err := uploadBody(ctx, origin, start, end, size, src)
		if err != nil {
			return nil, next, err
		}
		status, answer, err := post(ctx, hc, strings.TrimSuffix(url, "/")+"/add-entries", body)
		if err != nil {
			return nil, next, err
		}
		switch status {
		case http.StatusOK:
			return answer, size, nil
		case http.StatusAccepted, http.StatusConflict:
			pending, n, err := parseInfo(answer)
			if err != nil {
				return nil, next, err
			}
			if status == http.StatusConflict && pending != size {
				return nil, n, fmt.Errorf("%w: it offers %d, not %d", ErrNotPending, pending, size)
			}
			if n <= start {
				stalls++
			}
			start, next = min(n, size), n
		default:
			return nil, next, fmt.Errorf("mirror: add-entries from %d to %d: %d %s", start, size, status, strings.TrimSpace(string(answer)))
		}
	}
	return nil, next, fmt.Errorf("mirror: add-entries makes no progress past %d", start)
}

// uploadBody is an add-entries request body for [start, size), holding
// the packages of the canonical sequence that end at or before end.
func uploadBody(ctx context.Context, origin string, start, end, size int64, src Source) ([]byte, error) {
	var raw bytes.Buffer
	_ = binary.Write(&raw, binary.BigEndian, uint16(len(origin)))
	raw.WriteString(origin)
	_ = binary.Write(&raw, binary.BigEndian, uint64(start))
	_ = binary.Write(&raw, binary.BigEndian, uint64(size))
	_ = binary.Write(&raw, binary.BigEndian, uint16(0)) // no ticket
	if start < end {
		leaves, err := src.Leaves(ctx, start, end)
		if err != nil {
			return nil, err
		}
		if int64(len(leaves)) != end-start {
			return nil, fmt.Errorf("mirror: read %d leaves of [%d, %d)", len(leaves), start, end)
		}
		hashes, err := prefetch(src.HashReader(ctx), start, end, size)
		if err != nil {
			return nil, err
		}
		for lo := start &^ (PackageSize - 1); lo < end; lo += PackageSize {
			s, e := max(start, lo), min(end, lo+PackageSize)
			for _, leaf := range leaves[s-start : e-start] {
				if len(leaf) > 0xffff {
					return nil, fmt.Errorf("mirror: entry of %d bytes cannot be framed", len(leaf))
				}
				_ = binary.Write(&raw, binary.BigEndian, uint16(len(leaf)))
				raw.Write(leaf)
			}
			proof, err := subtree.Prove(size, lo, e, hashes)
			if err != nil {
				return nil, err
			}
			raw.WriteByte(byte(len(proof)))
			for _, h := range proof {
				raw.Write(h[:])
			}
		}
	}
	var z bytes.Buffer
	zw := gzipWriters.Get().(*gzip.Writer)
	defer gzipWriters.Put(zw)
	zw.Reset(&z)
	_, _ = zw.Write(raw.Bytes())
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return z.Bytes(), nil
}

// gzipWriters are reused: a new one allocates and clears some 800 KB of
// state, which at 25,000 entries a second cost more than the compression.
var gzipWriters = sync.Pool{New: func() any {
	zw, _ := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed)
	return zw
}}

// prefetch reads, in one call of r, every hash the proofs of the packages
// of [start, end) in a tree of size need, and returns a reader of them.
func prefetch(r tlog.HashReader, start, end, size int64) (tlog.HashReader, error) {
	var indexes []int64
	for lo := start &^ (PackageSize - 1); lo < end; lo += PackageSize {
		indexes = append(indexes, subtree.ProofIndexes(size, lo, min(end, lo+PackageSize))...)
	}
	read, err := r.ReadHashes(indexes)
	if err != nil {
		return nil, fmt.Errorf("mirror: read proof hashes: %w", err)
	}
	if len(read) != len(indexes) {
		return nil, fmt.Errorf("mirror: read %d proof hashes of %d", len(read), len(indexes))
	}
	m := make(map[int64]tlog.Hash, len(indexes))
	for i, idx := range indexes {
		m[idx] = read[i]
	}
	return tlog.HashReaderFunc(func(want []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(want))
		for i, idx := range want {
			h, ok := m[idx]
			if !ok {
				return nil, fmt.Errorf("mirror: proof hash %d was not read", idx)
			}
			out[i] = h
		}
		return out, nil
	}), nil
}

// post sends one gzip-compressed add-entries body.
func post(ctx context.Context, hc *http.Client, url string, body []byte) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Content-Encoding", "gzip")
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("mirror: add-entries: %w", err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return 0, nil, fmt.Errorf("mirror: add-entries: %w", err)
	}
	if (resp.StatusCode == http.StatusConflict || resp.StatusCode == http.StatusAccepted) &&
		resp.Header.Get("Content-Type") != "text/x.tlog.mirror-info" {
		return 0, nil, fmt.Errorf("mirror: add-entries answered %d without mirror info", resp.StatusCode)
	}
	return resp.StatusCode, answer, nil
}

// parseInfo reads a text/x.tlog.mirror-info body: pending size, next
// entry, ticket.
func parseInfo(b []byte) (pending, next int64, err error) {
	lines := strings.Split(string(b), "\n")
	if len(lines) != 4 || lines[3] != "" {
		return 0, 0, fmt.Errorf("mirror: malformed mirror info %q", b)
	}
	pending, err1 := strconv.ParseInt(lines[0], 10, 64)
	next, err2 := strconv.ParseInt(lines[1], 10, 64)
	if err1 != nil || err2 != nil || pending < 0 || next < 0 {
		return 0, 0, fmt.Errorf("mirror: malformed mirror info %q", b)
	}
	return pending, next, nil
}

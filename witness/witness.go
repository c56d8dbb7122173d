// Package witness is a transparency-log witness (C2SP tlog-witness): for
// each log it is configured with, it remembers the latest checkpoint it
// cosigned, and cosigns a new one (C2SP tlog-cosignature, cosignature/v1,
// Ed25519) only if the log signed it and it provably extends that one. A
// witness never cosigns two views of one log: a fork, or a checkpoint
// smaller than the one it cosigned, is refused.
//
// Each custodian runs one, so the log's checkpoints are cosigned by the
// same independent parties that hold the shares.
package witness

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	tlogfmt "github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Checkpoint is the state a witness keeps per log: the size and root of
// the latest checkpoint it cosigned.
type Checkpoint struct {
	Size int64
	Root tlog.Hash
	// Note is the checkpoint as the log signed it, given to Put (a mirror
	// keeps it, C2SP tlog-mirror); Latest need not return it.
	Note string
}

// Store keeps the latest cosigned checkpoint per log origin, durably. Put
// must be atomic: it stores next only if the stored checkpoint is still
// prev (nil: none), and returns ErrChanged otherwise.
type Store interface {
	Latest(ctx context.Context, origin string) (Checkpoint, bool, error)
	Put(ctx context.Context, origin string, prev *Checkpoint, next Checkpoint) error
}

// ErrChanged: the stored checkpoint changed since it was read.
var ErrChanged = errors.New("witness: the stored checkpoint changed")

// Log is a log the witness follows: its origin and the verifiers of its
// signatures.
type Log struct {
	Origin    string
	Verifiers []note.Verifier
}

// Witness cosigns checkpoints of its logs. It is safe for concurrent use.
// Without a signer (NewRecorder) it checks and stores them the same way
// but cosigns nothing.
type Witness struct {
	signer note.Signer
	logs   map[string]Log
	store  Store
	mu     sync.Mutex // serializes check-and-persist within this process
}

// New returns a witness that cosigns with signer (a cosignature/v1 signer,
// github.com/transparency-dev/formats/note.NewSignerForCosignatureV1).
func New(signer note.Signer, store Store, logs ...Log) *Witness {
	w := &Witness{signer: signer, store: store, logs: map[string]Log{}}
	for _, l := range logs {
		w.logs[l.Origin] = l
	}
	return w
}

// NewRecorder returns a witness that checks every checkpoint as New's
// does and stores it, with the log's signature, but signs nothing: its
// add-checkpoint answers an empty body. It is a mirror's pending
// checkpoint (C2SP tlog-mirror, add-checkpoint).
func NewRecorder(store Store, logs ...Log) *Witness {
	return New(nil, store, logs...)
}

// Error is a refusal with the HTTP status C2SP tlog-witness gives it.
type Error struct {
	Status int
	// Size is the witness's latest cosigned size, for 409 Conflict.
	Size int64
	Msg  string
}

func (e *Error) Error() string { return "witness: " + e.Msg }

func refuse(status int, format string, args ...any) *Error {
	return &Error{Status: status, Msg: fmt.Sprintf(format, args...)}
}

// maxProofLines bounds the consistency proof lines of a request.
const maxProofLines = 63

// maxBody bounds a request body.
const maxBody = 64 << 10

// AddCheckpoint handles an add-checkpoint request body: an old size line,
// consistency proof lines, an empty line and the checkpoint note. It
// returns the witness's cosignature lines, or an *Error.
func (w *Witness) AddCheckpoint(ctx context.Context, body []byte) ([]byte, error) {
	r := bufio.NewReader(bytes.NewReader(body))
	first, err := r.ReadString('\n')
	oldStr, ok := strings.CutPrefix(strings.TrimSuffix(first, "\n"), "old ")
	old, perr := strconv.ParseInt(oldStr, 10, 64)
	if err != nil || !ok || perr != nil || old < 0 || (len(oldStr) > 1 && oldStr[0] == '0') {
		return nil, refuse(http.StatusBadRequest, "the request does not begin with an old size line")
	}
	var proof tlog.TreeProof
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, refuse(http.StatusBadRequest, "the request ends before its checkpoint")
		}
		if line == "\n" {
			break
		}
		h, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(line, "\n"))
		if err != nil || len(h) != tlog.HashSize || len(proof) >= maxProofLines {
			return nil, refuse(http.StatusBadRequest, "a consistency proof line is not a base64 hash, or there are too many")
		}
		proof = append(proof, tlog.Hash(h))
	}
	signed, _ := io.ReadAll(r)
	origin, _, _ := strings.Cut(string(signed), "\n")
	l, known := w.logs[origin]
	if !known {
		return nil, refuse(http.StatusNotFound, "unknown log %q", origin)
	}
	var cp *tlogfmt.Checkpoint
	var n *note.Note
	for _, v := range l.Verifiers {
		if cp, _, n, err = tlogfmt.ParseCheckpoint(signed, origin, v); err == nil {
			break
		}
	}
	if cp == nil || n == nil {
		return nil, refuse(http.StatusForbidden, "the checkpoint is not signed by a key of log %q", origin)
	}
	if len(cp.Hash) != tlog.HashSize {
		return nil, refuse(http.StatusBadRequest, "the checkpoint's root is not a SHA-256 hash")
	}
	size, root := int64(cp.Size), tlog.Hash(cp.Hash)
	if old > size {
		return nil, refuse(http.StatusBadRequest, "old size %d is larger than the checkpoint's %d", old, size)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	latest, found, err := w.store.Latest(ctx, origin)
	if err != nil {
		return nil, refuse(http.StatusServiceUnavailable, "its store is unavailable")
	}
	if !found {
		latest = Checkpoint{}
	}
	if old != latest.Size {
		e := refuse(http.StatusConflict, "old size %d is not the size %d it cosigned last", old, latest.Size)
		e.Size = latest.Size
		return nil, e
	}
	switch {
	case old == size && found && root != latest.Root:
		e := refuse(http.StatusConflict, "a checkpoint of size %d with another root than the one it cosigned: a fork", size)
		e.Size = latest.Size
		return nil, e
	case old > 0 && old < size:
		if err := tlog.CheckTree(proof, size, root, old, latest.Root); err != nil {
			return nil, refuse(http.StatusUnprocessableEntity, "the consistency proof from %d to %d does not verify: %v", old, size, err)
		}
	case old == 0 && len(proof) > 0:
		return nil, refuse(http.StatusBadRequest, "a consistency proof from size 0")
	}
	var prev *Checkpoint
	if found {
		prev = &latest
	}
	if err := w.store.Put(ctx, origin, prev, Checkpoint{Size: size, Root: root, Note: logSigned(n)}); err != nil {
		if errors.Is(err, ErrChanged) {
			return nil, refuse(http.StatusConflict, "another request moved the log meanwhile; try again")
		}
		return nil, refuse(http.StatusServiceUnavailable, "its store is unavailable")
	}
	if w.signer == nil {
		return []byte{}, nil
	}
	cosigned, err := note.Sign(&note.Note{Text: n.Text}, w.signer)
	if err != nil {
		return nil, refuse(http.StatusInternalServerError, "could not cosign")
	}
	_, sigs, _ := bytes.Cut(cosigned, []byte("\n\n"))
	return sigs, nil
}

// logSigned is the checkpoint n with only the signatures that verified:
// the log's. A cosignature some other party added is not passed on.
func logSigned(n *note.Note) string {
	var b bytes.Buffer
	b.WriteString(n.Text)
	b.WriteString("\n")
	for _, s := range n.Sigs {
		fmt.Fprintf(&b, "— %s %s\n", s.Name, s.Base64)
	}
	return b.String()
}

// Handler serves POST /add-checkpoint.
func (w *Witness) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /add-checkpoint", func(rw http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
		if err != nil || len(body) > maxBody {
			http.Error(rw, "request body too large or unreadable", http.StatusBadRequest)
			return
		}
		sigs, err := w.AddCheckpoint(r.Context(), body)
		var we *Error
		switch {
		case errors.As(err, &we) && we.Status == http.StatusConflict:
			rw.Header().Set("Content-Type", "text/x.tlog.size")
			rw.WriteHeader(http.StatusConflict)
			fmt.Fprintf(rw, "%d\n", we.Size)
		case errors.As(err, &we):
			http.Error(rw, we.Msg, we.Status)
		case err != nil:
			http.Error(rw, "internal error", http.StatusInternalServerError)
		default:
			rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
			rw.Write(sigs)
		}
	})
	return mux
}

package mirror

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/mediatorhq/mediator/packedhash"
	"github.com/mediatorhq/mediator/subtree"
)

const (
	// PackageSize is the span of an entry package: packages are aligned
	// at its multiples, like entry bundles.
	PackageSize = 256
	// maxBehind is how far below its next entry, in packages, an upload
	// may start: further is "too far below" (409 with the next entry).
	maxBehind = 32
	// maxProofHashes bounds a package's subtree consistency proof.
	maxProofHashes = 63
	// maxOrigin bounds the origin a request names.
	maxOrigin = 1024
)

// upload is the header of an add-entries request.
type upload struct {
	origin     string
	start, end int64
	ticket     []byte
}

// errMalformed: the request's bytes are not an add-entries body.
var errMalformed = errors.New("mirror: not an add-entries request body")

// ErrProof: a package's entries do not prove into the pending checkpoint.
var ErrProof = errors.New("mirror: an entry package does not prove into the pending checkpoint")

func readUpload(r *bufio.Reader) (upload, error) {
	var u upload
	var n16 uint16
	if err := binary.Read(r, binary.BigEndian, &n16); err != nil || int(n16) > maxOrigin {
		return u, errMalformed
	}
	origin := make([]byte, n16)
	if _, err := io.ReadFull(r, origin); err != nil {
		return u, errMalformed
	}
	var start, end uint64
	if binary.Read(r, binary.BigEndian, &start) != nil || binary.Read(r, binary.BigEndian, &end) != nil ||
		binary.Read(r, binary.BigEndian, &n16) != nil || start > 1<<62 || end > 1<<62 {
		return u, errMalformed
	}
	u.ticket = make([]byte, n16)
	if _, err := io.ReadFull(r, u.ticket); err != nil {
		return u, errMalformed
	}
	u.origin, u.start, u.end = string(origin), int64(start), int64(end)
	return u, nil
}

// entryPackage is one package: its entries and its proof.
type entryPackage struct {
	leaves [][]byte
	proof  []tlog.Hash
}

// readPackage reads a package of n entries; io.EOF only if the body ends
// exactly before it.
func readPackage(r *bufio.Reader, n int64) (entryPackage, error) {
	var p entryPackage
	for i := int64(0); i < n; i++ {
		var size uint16
		if err := binary.Read(r, binary.BigEndian, &size); err != nil {
			if i == 0 && err == io.EOF {
				return p, io.EOF
			}
			return p, errMalformed
		}
		leaf := make([]byte, size)
		if _, err := io.ReadFull(r, leaf); err != nil {
			return p, errMalformed
		}
		p.leaves = append(p.leaves, leaf)
	}
	count, err := r.ReadByte()
	if err != nil || count > maxProofHashes {
		return p, errMalformed
	}
	p.proof = make([]tlog.Hash, count)
	for i := range p.proof {
		if _, err := io.ReadFull(r, p.proof[i][:]); err != nil {
			return p, errMalformed
		}
	}
	return p, nil
}

// verified is an authenticated package: entries [s, e) and their leaves.
type verified struct {
	s, e   int64
	leaves [][]byte
	hashes []tlog.Hash // the leaves' record hashes
}

// verifyPackage authenticates the package of entries [s, e), in the
// package span starting at lo, against the pending checkpoint cp: the
// subtree [lo, e), hashed from the entries below s the mirror holds and
// the package's, must prove into cp.
func (m *Mirror) verifyPackage(ctx context.Context, cp checkpoint, lo, s, e int64, p entryPackage) (verified, error) {
	known, err := m.leafHashes(ctx, lo, s)
	if err != nil {
		return verified{}, err
	}
	own := len(known)
	for _, leaf := range p.leaves {
		known = append(known, tlog.RecordHash(leaf))
	}
	if err := subtree.Check(p.proof, cp.size, cp.root, lo, e, subtree.Root(known)); err != nil {
		return verified{}, fmt.Errorf("%w: [%d, %d) in %d", ErrProof, lo, e, cp.size)
	}
	return verified{s: s, e: e, leaves: p.leaves, hashes: known[own:]}, nil
}

// commit stores, in one transaction, the entries of the authenticated
// packages (at least one, consecutive, in order) that the mirror lacks, and returns its
// next entry. Entries another request stored first are skipped: they were
// proven into a checkpoint of the same log, so they are the same.
func (m *Mirror) commit(ctx context.Context, packages []verified) (int64, error) {
	first, last := packages[0].s, packages[len(packages)-1].e
	next := int64(0)
	err := pgx.BeginFunc(ctx, m.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", commitLock); err != nil {
			return err
		}
		n, err := m.next(ctx, tx)
		if err != nil {
			return err
		}
		next = max(n, last)
		if n < first {
			return fmt.Errorf("mirror: entries from %d are missing below a package at %d", n, first)
		}
		if n >= last {
			return nil // another request stored them first
		}
		batch, err := packedhash.NewBatch(ctx, tx, entryTable, n)
		if err != nil {
			return err
		}
		rows := make([][]any, 0, last-n)
		for _, p := range packages {
			for i := max(n, p.s); i < p.e; i++ {
				packed, _, err := batch.AppendHash(i, p.hashes[i-p.s])
				if err != nil {
					return err
				}
				rows = append(rows, []any{i, p.leaves[i-p.s], packed})
			}
		}
		_, err = tx.CopyFrom(ctx, pgx.Identifier{"mirror_entries"}, []string{"idx", "leaf", "hashes"}, pgx.CopyFromRows(rows))
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("mirror: store entries [%d, %d): %w", first, last, err)
	}
	m.opts.Metrics.stored(next)
	return next, nil
}

// leafHashes reads the leaf hashes of the stored entries [lo, hi).
func (m *Mirror) leafHashes(ctx context.Context, lo, hi int64) ([]tlog.Hash, error) {
	if lo >= hi {
		return make([]tlog.Hash, 0, PackageSize), nil
	}
	rows, err := m.pool.Query(ctx, sqlLeafHashRange, lo, hi)
	if err != nil {
		return nil, fmt.Errorf("mirror: read leaf hashes: %w", err)
	}
	hs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (tlog.Hash, error) {
		var b []byte
		err := row.Scan(&b)
		return tlog.Hash(b), err
	})
	if err != nil || int64(len(hs)) != hi-lo {
		return nil, fmt.Errorf("mirror: read leaf hashes [%d, %d): %d rows, %v", lo, hi, len(hs), err)
	}
	return hs, nil
}

// ErrBehind: the checkpoint to cosign is older than the mirror's.
var ErrBehind = errors.New("mirror: the checkpoint is older than the mirror's")

// cosign makes the pending checkpoint cp the mirror checkpoint, if every
// entry it covers is stored and it is not older than the current one, and
// returns the mirror's cosignature lines on it. The same size again gets
// the cosignature already given.
func (m *Mirror) cosign(ctx context.Context, cp checkpoint) ([]byte, error) {
	var lines []byte
	err := pgx.BeginFunc(ctx, m.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", commitLock); err != nil {
			return err
		}
		next, err := m.next(ctx, tx)
		if err != nil {
			return err
		}
		if next < cp.size {
			return fmt.Errorf("mirror: entries from %d of a checkpoint of %d are missing", next, cp.size)
		}
		size, signed, err := m.mirrored(ctx, tx)
		if err != nil {
			return err
		}
		switch {
		case cp.size < size:
			return ErrBehind
		case cp.size == size && signed != "":
			lines = m.ownLines(signed)
			return nil
		}
		n, err := note.Open([]byte(cp.note), note.VerifierList(m.opts.LogVerifiers...))
		if err != nil {
			return fmt.Errorf("mirror: the pending checkpoint of %d no longer verifies: %w", cp.size, err)
		}
		cosigned, err := note.Sign(&note.Note{Text: n.Text, Sigs: n.Sigs}, m.opts.Signer)
		if err != nil {
			return fmt.Errorf("mirror: cosign: %w", err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO mirror_checkpoints (tree_size, note) VALUES ($1, $2)", cp.size, string(cosigned)); err != nil {
			return fmt.Errorf("mirror: store its checkpoint: %w", err)
		}
		lines = m.ownLines(string(cosigned))
		return nil
	})
	if err == nil {
		m.opts.Metrics.cosigned(cp.size)
	}
	return lines, err
}

// ownLines returns the mirror's own signature lines of a signed note.
func (m *Mirror) ownLines(signed string) []byte {
	var out []byte
	for _, line := range strings.SplitAfter(signed, "\n") {
		if strings.HasPrefix(line, "— "+m.opts.Signer.Name()+" ") {
			out = append(out, line...)
		}
	}
	return out
}

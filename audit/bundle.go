package audit

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// An evidence bundle is NDJSON: first a checkpoint line, then one line per
// entry with the entry's leaf, its record, and an inclusion proof against
// that checkpoint. Anyone with the log's verifier key can check it offline
// (VerifyBundle, `mediator audit verify --bundle`).
//
//	{"type":"checkpoint","checkpoint":"<signed note>"}
//	{"type":"entry","seq":N,"leaf":"<base64>","record":{...},"inclusion":["<base64>",...]}

// BundleLine is one line of a bundle.
type BundleLine struct {
	Type       string         `json:"type"`
	Checkpoint string         `json:"checkpoint,omitempty"`
	Seq        int64          `json:"seq,omitempty"`
	Leaf       []byte         `json:"leaf,omitempty"`
	Record     map[string]any `json:"record,omitempty"`
	Inclusion  []tlog.Hash    `json:"inclusion,omitempty"`
}

// WriteBundle writes the entries matching q that the latest stored
// checkpoint covers, each with its inclusion proof. It returns the number
// of entries. The service uses Log.WriteBundle, which checks the
// checkpoint first.
func (s *Store) WriteBundle(ctx context.Context, w io.Writer, q Query) (int, error) {
	cp, err := s.LatestCheckpoint(ctx)
	if err != nil {
		return 0, err
	}
	return s.WriteBundleAt(ctx, w, q, cp)
}

// WriteBundleAt writes the entries matching q that checkpoint cp covers,
// each with its inclusion proof. It returns the number of entries.
func (s *Store) WriteBundleAt(ctx context.Context, w io.Writer, q Query, cp Checkpoint) (int, error) {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(BundleLine{Type: "checkpoint", Checkpoint: cp.Note}); err != nil {
		return 0, fmt.Errorf("audit: write bundle: %w", err)
	}
	n := 0
	q.Limit = MaxSearchLimit
	for {
		page, err := s.Search(ctx, q)
		if err != nil {
			return n, err
		}
		for _, e := range page {
			if e.Seq >= cp.Size {
				return n, nil
			}
			proof, err := s.InclusionProof(ctx, e.Seq, cp.Size)
			if err != nil {
				return n, err
			}
			_, rec, err := ParseLeaf(e.Leaf)
			if err != nil {
				return n, err
			}
			if err := enc.Encode(BundleLine{Type: "entry", Seq: e.Seq, Leaf: e.Leaf, Record: rec, Inclusion: proof}); err != nil {
				return n, fmt.Errorf("audit: write bundle: %w", err)
			}
			n++
		}
		if len(page) < q.Limit {
			return n, nil
		}
		q.AfterSeq = page[len(page)-1].Seq
	}
}

// maxBundleLine bounds one line of a bundle we read.
const maxBundleLine = 16 << 20

// VerifyBundle checks a bundle offline: the checkpoint's signature (by any
// of verifiers, named by the log's origin), and for each entry that its
// leaf is in the checkpoint's tree at its seq, that the leaf says that seq,
// and that the record shown is exactly the leaf's. FirstBadSeq names the
// first entry that fails.
func VerifyBundle(r io.Reader, verifiers ...note.Verifier) (*Report, error) {
	if len(verifiers) == 0 {
		return nil, errors.New("audit: bundle: no verifier key")
	}
	rep := &Report{FirstBadSeq: -1}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxBundleLine)
	var (
		size int64
		root tlog.Hash
		seen bool
	)
	for line := 1; sc.Scan(); line++ {
		var l BundleLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			rep.bad(-1, "line %d: not a bundle line: %v", line, err)
			continue
		}
		switch l.Type {
		case "checkpoint":
			if seen {
				rep.bad(-1, "line %d: a second checkpoint", line)
				continue
			}
			var err error
			size, root, err = OpenCheckpoint([]byte(l.Checkpoint), verifiers[0].Name(), verifiers...)
			if err != nil {
				return nil, fmt.Errorf("audit: bundle checkpoint: %w", err)
			}
			seen = true
			rep.Checkpoints = 1
		case "entry":
			if !seen {
				return nil, errors.New("audit: bundle has an entry before its checkpoint")
			}
			rep.Entries++
			if err := tlog.CheckRecord(l.Inclusion, size, root, l.Seq, tlog.RecordHash(l.Leaf)); err != nil {
				rep.bad(l.Seq, "seq %d: not included in the checkpoint's tree: %v", l.Seq, err)
				continue
			}
			f, rec, err := ParseLeaf(l.Leaf)
			if err != nil || f.Seq != l.Seq {
				rep.bad(l.Seq, "seq %d: leaf does not say seq %d", l.Seq, l.Seq)
				continue
			}
			if !reflect.DeepEqual(rec, l.Record) {
				rep.bad(l.Seq, "seq %d: record differs from the signed leaf", l.Seq)
			}
		default:
			rep.bad(-1, "line %d: unknown type %q", line, l.Type)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("audit: read bundle: %w", err)
	}
	if !seen {
		return nil, errors.New("audit: bundle has no checkpoint")
	}
	return rep, nil
}

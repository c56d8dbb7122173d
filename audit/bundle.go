package audit

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"reflect"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// An evidence bundle is NDJSON: a header, one line per entry, a trailer.
//
//	{"type":"header","query":{...},"checkpoint":"<signed note>","count":N,"seqs_sha256":"sha256:<hex>"}
//	{"type":"entry","seq":S,"leaf":"<base64>","record":{...},"inclusion":["<base64>",...]}
//	{"type":"trailer","count":N,"seqs_sha256":"sha256:<hex>"}
//
// The header names the query the bundle answers and the checkpoint every
// inclusion proof is against, and commits to how many entries follow and
// which (SeqsDigest); the trailer repeats both, so a bundle cut short, or
// with a line removed, does not verify. Anyone with the log's verifier key
// checks it offline (VerifyBundle, `mediator audit verify --bundle`).

// BundleLine is one line of a bundle.
type BundleLine struct {
	Type       string         `json:"type"`
	Query      *BundleQuery   `json:"query,omitempty"`
	Checkpoint string         `json:"checkpoint,omitempty"`
	Count      *int64         `json:"count,omitempty"`
	SeqsSHA256 string         `json:"seqs_sha256,omitempty"`
	Seq        int64          `json:"seq,omitempty"`
	Leaf       []byte         `json:"leaf,omitempty"`
	Record     map[string]any `json:"record,omitempty"`
	Inclusion  []tlog.Hash    `json:"inclusion,omitempty"`
}

// BundleQuery is the query a bundle answers, as its header states it.
type BundleQuery struct {
	ConversationID string    `json:"conversation_id,omitempty"`
	Kind           string    `json:"kind,omitempty"`
	From           time.Time `json:"from,omitzero"`
	To             time.Time `json:"to,omitzero"`
	AfterSeq       int64     `json:"after_seq"`
}

func bundleQuery(q Query) *BundleQuery {
	return &BundleQuery{ConversationID: q.ConversationID, Kind: q.Kind, From: q.From.UTC(), To: q.To.UTC(), AfterSeq: q.AfterSeq}
}

// outside reports why the entry with these leaf fields is outside the
// query, or "".
func (q BundleQuery) outside(seq int64, f LeafFields) string {
	switch {
	case seq <= q.AfterSeq:
		return fmt.Sprintf("seq %d is not after %d", seq, q.AfterSeq)
	case q.ConversationID != "" && f.ConversationID != q.ConversationID:
		return fmt.Sprintf("conversation %q, not %q", f.ConversationID, q.ConversationID)
	case q.Kind != "" && f.Kind != q.Kind:
		return fmt.Sprintf("kind %q, not %q", f.Kind, q.Kind)
	}
	if q.From.IsZero() && q.To.IsZero() {
		return ""
	}
	if f.OccurredAt == nil {
		return "no occurred_at, and the query bounds it"
	}
	at, err := time.Parse(time.RFC3339Nano, *f.OccurredAt)
	switch {
	case err != nil:
		return "an unreadable occurred_at"
	case !q.From.IsZero() && at.Before(q.From):
		return fmt.Sprintf("occurred_at %s, before %s", *f.OccurredAt, q.From.Format(time.RFC3339))
	case !q.To.IsZero() && !at.Before(q.To):
		return fmt.Sprintf("occurred_at %s, not before %s", *f.OccurredAt, q.To.Format(time.RFC3339))
	}
	return ""
}

// SeqsDigest accumulates the digest of a bundle's list of seqs: "sha256:"
// and the hex SHA-256 of each seq as 8 bytes, big-endian, in order.
type SeqsDigest struct {
	h hash.Hash
	n int64
}

// NewSeqsDigest returns an empty digest.
func NewSeqsDigest() *SeqsDigest { return &SeqsDigest{h: sha256.New()} }

// Add appends seq.
func (d *SeqsDigest) Add(seq int64) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(seq))
	d.h.Write(b[:])
	d.n++
}

// Count is how many seqs were added.
func (d *SeqsDigest) Count() int64 { return d.n }

// Sum is the digest so far.
func (d *SeqsDigest) Sum() string { return "sha256:" + hex.EncodeToString(d.h.Sum(nil)) }

// writeBundleAt writes the complete bundle of the entries matching q that
// checkpoint cp covers: a header with the count and digest of their seqs
// (read first), each entry with its inclusion proof, and a trailer. If the
// entries read do not match what the header promised, it stops without a
// trailer, so the bundle does not verify. It returns the number of entries.
func (s *store) writeBundleAt(ctx context.Context, w io.Writer, q Query, cp Checkpoint) (int, error) {
	promised, err := s.bundleSeqs(ctx, q, cp.Size)
	if err != nil {
		return 0, err
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	count := promised.Count()
	if err := enc.Encode(BundleLine{Type: "header", Query: bundleQuery(q), Checkpoint: cp.Note, Count: &count, SeqsSHA256: promised.Sum()}); err != nil {
		return 0, fmt.Errorf("audit: write bundle: %w", err)
	}
	written := NewSeqsDigest()
	q.Limit = MaxSearchLimit
	for done := false; !done; {
		page, err := s.Search(ctx, q)
		if err != nil {
			return int(written.Count()), err
		}
		done = len(page) < q.Limit
		for _, e := range page {
			if e.Seq >= cp.Size {
				done = true
				break
			}
			proof, err := s.InclusionProof(ctx, e.Seq, cp.Size)
			if err != nil {
				return int(written.Count()), err
			}
			_, rec, err := ParseLeaf(e.Leaf)
			if err != nil {
				return int(written.Count()), err
			}
			if err := enc.Encode(BundleLine{Type: "entry", Seq: e.Seq, Leaf: e.Leaf, Record: rec, Inclusion: proof}); err != nil {
				return int(written.Count()), fmt.Errorf("audit: write bundle: %w", err)
			}
			written.Add(e.Seq)
		}
		if len(page) > 0 {
			q.AfterSeq = page[len(page)-1].Seq
		}
	}
	if written.Count() != count || written.Sum() != promised.Sum() {
		return int(written.Count()), fmt.Errorf("audit: write bundle: %d entries written, %d promised", written.Count(), count)
	}
	n := written.Count()
	if err := enc.Encode(BundleLine{Type: "trailer", Count: &n, SeqsSHA256: written.Sum()}); err != nil {
		return int(n), fmt.Errorf("audit: write bundle: %w", err)
	}
	return int(n), nil
}

// bundleSeqs reads the seqs of the entries matching q below size, in
// order, into a digest.
func (s *store) bundleSeqs(ctx context.Context, q Query, size int64) (*SeqsDigest, error) {
	sql, args := searchWhere("SELECT seq FROM audit_entries", q)
	args = append(args, size)
	sql += fmt.Sprintf(" AND seq < $%d ORDER BY seq", len(args))
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("audit: bundle: %w", err)
	}
	d := NewSeqsDigest()
	var seq int64
	if _, err := pgx.ForEachRow(rows, []any{&seq}, func() error { d.Add(seq); return nil }); err != nil {
		return nil, fmt.Errorf("audit: bundle: %w", err)
	}
	return d, nil
}

// maxBundleLine bounds one line of a bundle we read.
const maxBundleLine = 16 << 20

// VerifyBundle checks a bundle offline. It refuses a bundle without a
// header first and a trailer last. It checks the checkpoint's signature (by
// any of verifiers, named by the log's origin), and for each entry that its
// leaf is in the checkpoint's tree at its seq, that the leaf says that seq,
// that the record shown is exactly the leaf's, that the entry matches the
// header's query, and that seqs only rise; and that the header's and the
// trailer's count and seq digest both equal those of the entries present.
// FirstBadSeq names the first entry that fails. A checkpoint naming
// another origin than the verifiers' name is an *OriginMismatch error.
func VerifyBundle(r io.Reader, verifiers ...note.Verifier) (*Report, error) {
	return VerifyBundleWitnessed(r, WitnessPolicy{}, verifiers...)
}

// VerifyBundleWitnessed is VerifyBundle that also requires the bundle's
// checkpoint to carry the cosignatures of policy's quorum (none when the
// policy names no witness).
func VerifyBundleWitnessed(r io.Reader, policy WitnessPolicy, verifiers ...note.Verifier) (*Report, error) {
	if len(verifiers) == 0 {
		return nil, errors.New("audit: bundle: no verifier key")
	}
	b := &bundleCheck{rep: &Report{FirstBadSeq: -1}, policy: policy, verifiers: verifiers, got: NewSeqsDigest(), last: -1}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxBundleLine)
	for line := 1; sc.Scan(); line++ {
		if err := b.line(line, sc.Bytes()); err != nil {
			return nil, err
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("audit: read bundle: %w", err)
	}
	return b.finish()
}

// bundleCheck is a bundle being verified, line by line.
type bundleCheck struct {
	rep       *Report
	policy    WitnessPolicy
	verifiers []note.Verifier

	size            int64
	root            tlog.Hash
	header, trailer *BundleLine
	query           BundleQuery
	got             *SeqsDigest
	last            int64
}

// line checks one line of the bundle. A problem of the line is added to
// the report; an error means the bundle cannot be verified at all (no
// header, a checkpoint that does not verify, an old export).
func (b *bundleCheck) line(n int, text []byte) error {
	var l BundleLine
	if err := json.Unmarshal(text, &l); err != nil {
		b.rep.bad(-1, "line %d: not a bundle line: %v", n, err)
		return nil
	}
	if b.trailer != nil {
		b.rep.bad(-1, "line %d: a line after the trailer", n)
		return nil
	}
	switch l.Type {
	case "header":
		return b.headerLine(n, l)
	case "entry", "trailer":
		if b.header == nil {
			return errors.New("audit: not a complete bundle: it does not begin with a header")
		}
		if l.Type == "entry" {
			b.entry(l)
			return nil
		}
		if l.Count == nil {
			b.rep.bad(-1, "line %d: a trailer without a count", n)
		}
		b.trailer = &l
	case "checkpoint":
		return errors.New("audit: not a complete bundle: it begins with a bare checkpoint (an old export, without header and trailer)")
	default:
		b.rep.bad(-1, "line %d: unknown type %q", n, l.Type)
	}
	return nil
}

// headerLine takes the bundle's header: its query, its promise of count
// and seq digest, and its checkpoint, which must verify (and carry the
// witness policy's cosignatures).
func (b *bundleCheck) headerLine(n int, l BundleLine) error {
	if n != 1 {
		b.rep.bad(-1, "line %d: a header that is not the first line", n)
		return nil
	}
	if l.Query == nil || l.Count == nil || l.SeqsSHA256 == "" {
		return errors.New("audit: bundle header lacks its query, count or seq digest")
	}
	origin := b.verifiers[0].Name()
	b.rep.Origin = origin
	if o, ok := noteOrigin(l.Checkpoint); ok && o != origin {
		return &OriginMismatch{Expected: origin, Found: []string{o}}
	}
	var err error
	if b.size, b.root, err = OpenCheckpoint([]byte(l.Checkpoint), origin, b.verifiers...); err != nil {
		return fmt.Errorf("audit: bundle checkpoint: %w", err)
	}
	b.header, b.query = &l, *l.Query
	b.rep.Checkpoints = 1
	b.rep.TreeSize, b.rep.Root, b.rep.CheckpointSize = b.size, b.root, b.size
	if len(b.policy.Witnesses) > 0 {
		CheckBundleWitnesses(b.rep, []byte(l.Checkpoint), b.policy)
	}
	return nil
}

// entry checks one entry: seqs rise, it is included in the checkpoint's
// tree, its leaf says its seq and holds its record, and it answers the
// header's query.
func (b *bundleCheck) entry(l BundleLine) {
	b.rep.Entries++
	if l.Seq <= b.last {
		b.rep.bad(l.Seq, "seq %d: after seq %d (seqs must rise)", l.Seq, b.last)
	}
	b.last = l.Seq
	b.got.Add(l.Seq)
	if err := tlog.CheckRecord(l.Inclusion, b.size, b.root, l.Seq, tlog.RecordHash(l.Leaf)); err != nil {
		b.rep.bad(l.Seq, "seq %d: not included in the checkpoint's tree: %v", l.Seq, err)
		return
	}
	f, rec, err := ParseLeaf(l.Leaf)
	if err != nil || f.Seq != l.Seq {
		b.rep.bad(l.Seq, "seq %d: leaf does not say seq %d", l.Seq, l.Seq)
		return
	}
	if !reflect.DeepEqual(rec, l.Record) {
		b.rep.bad(l.Seq, "seq %d: record differs from the signed leaf", l.Seq)
	}
	if why := b.query.outside(l.Seq, f); why != "" {
		b.rep.bad(l.Seq, "seq %d: outside the bundle's query: %s", l.Seq, why)
	}
}

// finish checks what the whole bundle promised: a header, a trailer, and
// the entries present being exactly those the header counted and digested.
func (b *bundleCheck) finish() (*Report, error) {
	if b.header == nil {
		return nil, errors.New("audit: not a complete bundle: no header")
	}
	if b.trailer == nil {
		b.rep.bad(-1, "the bundle has no trailer: it was cut short (%d of %d entries present)", b.got.Count(), *b.header.Count)
		return b.rep, nil
	}
	if *b.header.Count != b.got.Count() || b.header.SeqsSHA256 != b.got.Sum() {
		b.rep.bad(-1, "the header promises %d entries (%s); the bundle holds %d (%s): entries were removed or added",
			*b.header.Count, b.header.SeqsSHA256, b.got.Count(), b.got.Sum())
	}
	if t := b.trailer; t.Count != nil && (*t.Count != *b.header.Count || t.SeqsSHA256 != b.header.SeqsSHA256) {
		b.rep.bad(-1, "the trailer's count %d (%s) disagrees with the header's %d (%s)", *t.Count, t.SeqsSHA256, *b.header.Count, b.header.SeqsSHA256)
	}
	return b.rep, nil
}

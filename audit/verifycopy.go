package audit

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"golang.org/x/mod/sumdb/tlog"
)

// Verification reads the entries with a binary COPY, a page of copyPage
// entries at a time, cut into batches of verifyBatch entries that the
// hashers (one per core) parse, check and leaf-hash while the tree is
// built, in order, from the batches before. A batch's rows point into its
// own buffer, and batches are reused, so reading an entry allocates
// nothing.
const verifyBatch = 512

// copyPage is a variable for tests that cross pages.
var copyPage = 1 << 17

// verifyRow is one entry as stored (its fields point into its batch's
// buffer), and what a hasher made of it.
type verifyRow struct {
	seq                             int64
	leaf, hashes                    []byte
	kind, eventID, submitter, convo []byte
	occurred                        time.Time
	hasOccurred                     bool
	ingested                        time.Time

	// Set by a hasher: the leaf hash, and the row's first problem.
	leafHash tlog.Hash
	problem  rowProblem
	leafSeq  int64  // the leaf's seq, for problemSeq
	column   string // the column that differs, for problemColumn
	// hasID: the leaf names an event id; idKey is its key (idKeyOf).
	hasID bool
	idKey uint64
}

type rowProblem uint8

const (
	problemNone   rowProblem = iota
	problemJSON              // the leaf is not valid JSON
	problemSeq               // the leaf says another seq
	problemColumn            // an indexed column differs from the leaf
)

// entryBatch is up to verifyBatch consecutive entries and the bytes of
// their binary COPY tuples.
type entryBatch struct {
	buf  []byte
	offs [][9][2]int32 // each row's fields, as offsets into buf (-1 for NULL)
	rows []verifyRow
	err  error // a malformed tuple: the read ends with it
	done sync.WaitGroup
}

// copyEntriesSQL reads the entries above seq after in seq order, as
// verification needs them, at most copyPage of them.
func copyEntriesSQL(after int64) string {
	return "COPY (SELECT seq, leaf, hashes, kind, coalesce(event_id, ''), coalesce(submitter, ''), coalesce(conversation_id, ''), occurred_at, ingested_at FROM audit_entries WHERE seq > " +
		strconv.FormatInt(after, 10) + " ORDER BY seq LIMIT " + strconv.Itoa(copyPage) + ") TO STDOUT (FORMAT binary)"
}

// verifyPipeline reads, checks and hashes entries in parallel and hands
// them on in seq order.
type verifyPipeline struct {
	ordered chan *entryBatch // batches in seq order, each done once hashed
	work    chan *entryBatch
	free    chan *entryBatch
	readErr chan error
	wg      sync.WaitGroup
}

// startVerifyPipeline starts reading the entries above seq after.
func (s *store) startVerifyPipeline(ctx context.Context, after int64) *verifyPipeline {
	workers := max(1, min(runtime.GOMAXPROCS(0), 16))
	inFlight := 4 * workers
	p := &verifyPipeline{
		ordered: make(chan *entryBatch, inFlight),
		work:    make(chan *entryBatch, inFlight),
		free:    make(chan *entryBatch, inFlight+workers+2),
		readErr: make(chan error, 1),
	}
	for range workers {
		p.wg.Go(func() {
			var sc leafScanner
			for b := range p.work {
				for i := range b.rows {
					sc.check(&b.rows[i])
				}
				b.done.Done()
			}
		})
	}
	p.wg.Go(func() {
		defer close(p.work)
		defer close(p.ordered)
		p.readErr <- s.copyEntries(ctx, after, p)
	})
	return p
}

// stop waits for the pipeline's goroutines, after ctx was cancelled or
// the ordered batches were all received.
func (p *verifyPipeline) stop() {
	for range p.ordered {
	}
	p.wg.Wait()
}

// release returns a batch the tree builder is done with.
func (p *verifyPipeline) release(b *entryBatch) {
	select {
	case p.free <- b:
	default:
	}
}

func (p *verifyPipeline) batch() *entryBatch {
	select {
	case b := <-p.free:
		b.buf, b.offs, b.rows, b.err = b.buf[:0], b.offs[:0], b.rows[:0], nil
		return b
	default:
		return &entryBatch{buf: make([]byte, 0, verifyBatch*1024), offs: make([][9][2]int32, 0, verifyBatch), rows: make([]verifyRow, 0, verifyBatch)}
	}
}

// copyEntries reads the entries above seq after, a page at a time, into
// batches it sends to the hashers and, in order, to the tree builder,
// until the table ends or ctx is done.
func (s *store) copyEntries(ctx context.Context, after int64, p *verifyPipeline) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("audit: verify: read entries: %w", err)
	}
	defer conn.Release()
	w := &copyReader{ctx: ctx, p: p}
	for {
		w.reset()
		if _, err := conn.Conn().PgConn().CopyTo(ctx, w, copyEntriesSQL(after)); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if w.err != nil {
				err = w.err
			}
			return fmt.Errorf("audit: verify: read entries: %w", err)
		}
		if err := w.flush(true); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("audit: verify: read entries: %w", err)
		}
		if w.rows < copyPage {
			return nil
		}
		after = w.last
	}
}

// copyReader parses a binary COPY stream of entries (PostgreSQL's
// documented tuple format: a header, then per tuple a field count and
// each field's length and bytes, then -1) into batches.
type copyReader struct {
	ctx     context.Context
	p       *verifyPipeline
	cur     *entryBatch
	parsed  int // bytes of cur.buf parsed into rows
	header  bool
	trailer bool
	rows    int
	last    int64
	err     error
}

func (w *copyReader) reset() {
	w.header, w.trailer, w.rows = false, false, 0
}

var copySignature = []byte("PGCOPY\n\xff\r\n\x00")

func (w *copyReader) Write(data []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.cur == nil {
		w.cur, w.parsed = w.p.batch(), 0
	}
	w.cur.buf = append(w.cur.buf, data...)
	if err := w.parse(); err != nil {
		w.err = err
		return 0, err
	}
	return len(data), nil
}

var errCopyFormat = errors.New("malformed binary COPY data")

// parse turns the complete tuples in the current batch's buffer into rows,
// sending the batch on when it is full.
func (w *copyReader) parse() error {
	for {
		b := w.cur
		buf := b.buf[w.parsed:]
		if !w.header {
			if len(buf) < len(copySignature)+8 {
				return nil
			}
			if !bytes.Equal(buf[:len(copySignature)], copySignature) {
				return errCopyFormat
			}
			ext := int(binary.BigEndian.Uint32(buf[len(copySignature)+4:]))
			n := len(copySignature) + 8 + ext
			if ext < 0 || len(buf) < n {
				return nil
			}
			w.parsed += n
			w.header = true
			continue
		}
		if w.trailer || len(buf) < 2 {
			return nil
		}
		fields := int16(binary.BigEndian.Uint16(buf))
		if fields == -1 {
			w.trailer = true
			w.parsed += 2
			return nil
		}
		if fields != 9 {
			return errCopyFormat
		}
		var offs [9][2]int32
		o := 2
		for i := range offs {
			if len(buf) < o+4 {
				return nil
			}
			n := int32(binary.BigEndian.Uint32(buf[o:]))
			o += 4
			if n < 0 {
				offs[i] = [2]int32{-1, -1}
				continue
			}
			if len(buf) < o+int(n) {
				return nil
			}
			offs[i] = [2]int32{int32(w.parsed + o), int32(w.parsed + o + int(n))}
			o += int(n)
		}
		w.parsed += o
		b.offs = append(b.offs, offs)
		w.rows++
		if len(b.offs) == verifyBatch {
			if err := w.flush(false); err != nil {
				return err
			}
		}
	}
}

// flush makes rows of the tuples parsed and sends the batch on; the
// bytes of an incomplete tuple move to the next batch. At the end of a
// COPY (end), nothing may be left over.
func (w *copyReader) flush(end bool) error {
	b := w.cur
	if b == nil {
		return nil
	}
	rest := b.buf[w.parsed:]
	if end && (len(rest) > 0 || !w.trailer) {
		return errCopyFormat
	}
	if len(b.offs) == 0 {
		return nil
	}
	if err := b.makeRows(); err != nil {
		return err
	}
	w.last = b.rows[len(b.rows)-1].seq
	next := w.p.batch()
	next.buf = append(next.buf, rest...)
	w.cur, w.parsed = next, 0
	b.done.Add(1)
	select {
	case w.p.ordered <- b:
	case <-w.ctx.Done():
		return w.ctx.Err()
	}
	select {
	case w.p.work <- b:
	case <-w.ctx.Done():
		b.done.Done()
		return w.ctx.Err()
	}
	return nil
}

// pgEpoch is PostgreSQL's timestamp epoch, in Unix microseconds.
const pgEpoch = 946684800 * 1000000

// makeRows decodes the batch's tuples: seq (int8), leaf and hashes
// (bytea), kind, event id, submitter and conversation id (text),
// occurred_at (timestamptz, maybe NULL) and ingested_at (timestamptz).
func (b *entryBatch) makeRows() error {
	for _, o := range b.offs {
		f := func(i int) []byte {
			if o[i][0] < 0 {
				return nil
			}
			return b.buf[o[i][0]:o[i][1]:o[i][1]]
		}
		for _, i := range [...]int{0, 1, 2, 3, 4, 5, 6, 8} {
			if o[i][0] < 0 {
				return errCopyFormat
			}
		}
		if len(f(0)) != 8 || len(f(8)) != 8 || (o[7][0] >= 0 && len(f(7)) != 8) {
			return errCopyFormat
		}
		r := verifyRow{
			seq:  int64(binary.BigEndian.Uint64(f(0))),
			leaf: f(1), hashes: f(2), kind: f(3), eventID: f(4), submitter: f(5), convo: f(6),
			ingested: time.UnixMicro(int64(binary.BigEndian.Uint64(f(8))) + pgEpoch).UTC(),
		}
		if o[7][0] >= 0 {
			r.occurred, r.hasOccurred = time.UnixMicro(int64(binary.BigEndian.Uint64(f(7)))+pgEpoch).UTC(), true
		}
		b.rows = append(b.rows, r)
	}
	return nil
}

// leafScanner checks leaves against their rows, reusing its decoder and
// buffers from one leaf to the next.
type leafScanner struct {
	rd                                        bytes.Reader
	dec                                       jsontext.Decoder
	name                                      []byte
	ingested, kind, eventID, submitter, convo []byte
	occurred                                  []byte
	hasOccurred                               bool
	seq                                       int64
	timeBuf                                   [64]byte
	keyBuf                                    []byte
}

// check hashes r's leaf, parses its indexed members (checking that it is
// one valid JSON object) and compares them with
// the row, recording the first problem.
func (sc *leafScanner) check(r *verifyRow) {
	r.leafHash = tlog.RecordHash(r.leaf)
	r.problem, r.column, r.hasID = problemNone, "", false
	if err := sc.scan(r.leaf); err != nil {
		r.problem = problemJSON
		return
	}
	if len(sc.eventID) > 0 {
		r.hasID, r.idKey = true, idKeyOf(&sc.keyBuf, sc.submitter, sc.eventID)
	}
	if sc.seq != r.seq {
		r.problem, r.leafSeq = problemSeq, sc.seq
		return
	}
	if col := sc.columnsDiffer(r); col != "" {
		r.problem, r.column = problemColumn, col
	}
}

// columnsDiffer is columnsDiffer over the scanned leaf, without
// allocating when the leaf's timestamps are in the form the log writes.
func (sc *leafScanner) columnsDiffer(r *verifyRow) string {
	switch {
	case !bytes.Equal(sc.kind, r.kind):
		return "kind"
	case !bytes.Equal(sc.eventID, r.eventID):
		return "event_id"
	case !bytes.Equal(sc.submitter, r.submitter):
		return "submitter"
	case !bytes.Equal(sc.convo, r.convo):
		return "conversation_id"
	}
	// The ingested_at layout round-trips: its text is the column's
	// exactly when it parses to the column's instant.
	if !bytes.Equal(r.ingested.AppendFormat(sc.timeBuf[:0], ingestedAtLayout), sc.ingested) {
		if at, err := time.Parse(ingestedAtLayout, string(sc.ingested)); err != nil || !at.Equal(r.ingested) {
			return "ingested_at"
		}
	}
	switch {
	case sc.hasOccurred != r.hasOccurred:
		return "occurred_at"
	case sc.hasOccurred:
		if !bytes.Equal(r.occurred.AppendFormat(sc.timeBuf[:0], time.RFC3339Nano), sc.occurred) {
			if at, err := time.Parse(time.RFC3339Nano, string(sc.occurred)); err != nil || !at.Equal(r.occurred) {
				return "occurred_at"
			}
		}
	}
	return ""
}

// scan reads a leaf's indexed members into the
// scanner's buffers.
func (sc *leafScanner) scan(leaf []byte) error {
	sc.seq, sc.hasOccurred = 0, false
	sc.ingested, sc.kind, sc.eventID, sc.submitter, sc.convo, sc.occurred =
		sc.ingested[:0], sc.kind[:0], sc.eventID[:0], sc.submitter[:0], sc.convo[:0], sc.occurred[:0]
	sc.rd.Reset(leaf)
	sc.dec.Reset(&sc.rd)
	dec := &sc.dec
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return errors.New("not a JSON object")
	}
	for dec.PeekKind() != '}' {
		raw, err := dec.ReadValue()
		if err != nil {
			return err
		}
		if sc.name, err = unquote(sc.name[:0], raw); err != nil {
			return err
		}
		var dst *[]byte
		switch string(sc.name) {
		case "seq":
			tok, err := dec.ReadToken()
			if err == nil && tok.Kind() != '0' {
				err = errors.New("member seq is not a number")
			}
			if err == nil {
				sc.seq, err = tok.Int()
			}
			if err != nil {
				return err
			}
			continue
		case "ingested_at":
			dst = &sc.ingested
		case "kind":
			dst = &sc.kind
		case "event_id":
			dst = &sc.eventID
		case "submitter":
			dst = &sc.submitter
		case "conversation_id":
			dst = &sc.convo
		case "occurred_at":
			dst, sc.hasOccurred = &sc.occurred, true
		default:
			if err := dec.SkipValue(); err != nil {
				return err
			}
			continue
		}
		v, err := dec.ReadValue()
		if err != nil {
			return err
		}
		if v.Kind() != '"' {
			return errors.New("member is not a string")
		}
		if *dst, err = unquote((*dst)[:0], v); err != nil {
			return err
		}
	}
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return errors.New("data after the object")
	}
	return nil
}

// unquote appends the text of the JSON string v (valid, as the decoder
// read it) to dst.
func unquote(dst []byte, v jsontext.Value) ([]byte, error) {
	if len(v) >= 2 && bytes.IndexByte(v, '\\') < 0 {
		return append(dst, v[1:len(v)-1]...), nil
	}
	return jsontext.AppendUnquote(dst, v)
}

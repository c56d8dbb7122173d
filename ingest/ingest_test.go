package ingest

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/mediatorhq/mediator/audit"
	"github.com/mediatorhq/mediator/loadgen"
	"github.com/mediatorhq/mediator/redact"
)

// memLog is an Appender that numbers entries in memory and treats a
// repeated event id as a duplicate, as the real log does.
type memLog struct {
	seqs map[string]int64
	next int64
	fail error
}

func (m *memLog) Append(_ context.Context, es []audit.Entry) ([]audit.Appended, error) {
	if m.fail != nil {
		return nil, m.fail
	}
	if m.seqs == nil {
		m.seqs = map[string]int64{}
	}
	out := make([]audit.Appended, len(es))
	for i, e := range es {
		if seq, ok := m.seqs[e.EventID]; ok {
			out[i] = audit.Appended{Seq: seq, Duplicate: true}
			continue
		}
		m.seqs[e.EventID] = m.next
		out[i] = audit.Appended{Seq: m.next}
		m.next++
	}
	return out, nil
}

type tally struct{ n int }

func (t *tally) Count(*redact.Record) { t.n++ }

func batch(n int) []byte {
	var b bytes.Buffer
	loadgen.WriteBatch(&b, "t", 0, n)
	return b.Bytes()
}

// TestIngest: accepted events are appended and counted once committed; a
// resend is a duplicate and counted for nothing; a bad event is refused
// with its index while the others go in, unless the request is atomic; and
// a failed dependency acknowledges nothing.
func TestIngest(t *testing.T) {
	log, count := &memLog{}, &tally{}
	s := New(Config{Log: log, Profile: redact.DefaultProfile(), Tally: count})
	ctx := context.Background()
	body := batch(3)
	res, err := s.Ingest(ctx, "gw-test", body, JSON, false)
	if err != nil || res.Accepted != 3 || res.Duplicates != 0 || *res.FirstSeq != 0 || *res.LastSeq != 2 || count.n != 3 {
		t.Fatalf("first send: %+v %v (tally %d)", res, err, count.n)
	}
	res, err = s.Ingest(ctx, "gw-test", body, JSON, false)
	if err != nil || res.Accepted != 0 || res.Duplicates != 3 || count.n != 3 {
		t.Fatalf("resend: %+v %v (tally %d)", res, err, count.n)
	}
	mixed := bytes.Replace(batch(2), []byte(`"kind":"`), []byte(`"body":"secret","kind":"`), 1)
	mixed = bytes.ReplaceAll(mixed, []byte(`"event_id":"t-`), []byte(`"event_id":"m-`)) // new ids
	res, err = s.Ingest(ctx, "gw-test", mixed, JSON, false)
	if err != nil || res.Accepted != 1 || res.Rejected != 1 || res.Problems[0].Index != 0 || res.Problems[0].Code != CodeContentNotAccepted {
		t.Fatalf("mixed: %+v %v", res, err)
	}
	var refused *RefusedError
	if _, err := s.Ingest(ctx, "gw-test", mixed, JSON, true); !errors.As(err, &refused) || refused.Code != CodeContentNotAccepted {
		t.Fatalf("atomic mixed: %v", err)
	}
	if _, err := s.Ingest(ctx, "gw-test", []byte(`{"events":`), JSON, false); !errors.As(err, &refused) || refused.Code != CodeValidationFailed {
		t.Fatalf("malformed body: %v", err)
	}
	down := New(Config{Log: &memLog{fail: errors.New("db down")}, Profile: redact.DefaultProfile()})
	if _, err := down.Ingest(ctx, "gw-test", batch(1), JSON, false); !errors.Is(err, ErrLogUnavailable) {
		t.Fatalf("log down: %v", err)
	}
}

// BenchmarkIngest measures the mediator's own CPU per batch of 1,000
// realistic events: decoding, redaction and the answer, with the database
// replaced by an in-memory log.
func BenchmarkIngest(b *testing.B) {
	s := New(Config{Log: &discardLog{}, Profile: redact.DefaultProfile()})
	raw := batch(1000)
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := s.Ingest(context.Background(), "gw-bench", raw, JSON, false); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "events/s")
}

type discardLog struct{}

func (discardLog) Append(_ context.Context, es []audit.Entry) ([]audit.Appended, error) {
	out := make([]audit.Appended, len(es))
	for i := range out {
		out[i].Seq = int64(i)
	}
	return out, nil
}

package api

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/mediatorhq/mediator/audit"
	"github.com/mediatorhq/mediator/redact"
	"github.com/mediatorhq/mediator/test/load"
)

type discardLog struct{ Log }

func (discardLog) Append(_ context.Context, es []audit.Entry) ([]audit.Appended, error) {
	out := make([]audit.Appended, len(es))
	for i := range out {
		out[i].Seq = int64(i)
	}
	return out, nil
}

type fixedKey struct{}

func (fixedKey) Current(context.Context) (redact.PseudonymKey, error) {
	return redact.PseudonymKey{Version: 1, Key: bytes.Repeat([]byte{7}, 32)}, nil
}

// BenchmarkIngestHandler measures the mediator's own CPU per batch of 1,000
// realistic events: decoding, redaction and response, without the database.
func BenchmarkIngestHandler(b *testing.B) {
	s := &server{log: slog.New(slog.DiscardHandler), metrics: NewMetrics("bench"), auditLog: discardLog{},
		pseudonyms: fixedKey{}, profile: redact.DefaultProfile()}
	var body bytes.Buffer
	load.WriteBatch(&body, "bench", 0, 1000)
	raw := body.Bytes()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		req := httptest.NewRequest("POST", "/v1/events", bytes.NewReader(raw))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		s.ingestEvents(rec, req)
		if rec.Code != 200 {
			b.Fatalf("%d %s", rec.Code, rec.Body.String())
		}
		io.Copy(io.Discard, rec.Body)
	}
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "events/s")
}

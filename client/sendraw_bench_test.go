package client_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/mediatorhq/mediator/client"
	"github.com/mediatorhq/mediator/loadgen"
	"github.com/mediatorhq/mediator/pseudonym"
)

// BenchmarkSendRawEvents measures what the gateway's side (the client, or
// the agent, which calls it) spends on a body of 1,000 raw events with a
// warm cache: decoding, pseudonymising from the cache, encoding and the
// HTTP round trip to a server that answers at once.
func BenchmarkSendRawEvents(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"accepted":1000,"duplicates":0,"first_seq":0,"last_seq":999,"rejected":0,"problems":[]}`)
	}))
	defer srv.Close()
	c, err := client.New(srv.URL, "token", nil)
	if err != nil {
		b.Fatal(err)
	}
	key, err := pseudonym.GenerateKey()
	if err != nil {
		b.Fatal(err)
	}
	c.UsePseudonyms(pseudonym.NewClient(key.Public(), pseudonym.Local(pseudonym.NewEvaluator(key)), 0))
	var body bytes.Buffer
	loadgen.WriteRawBatch(&body, "bench", 0, 1000)
	ctx := context.Background()
	// Every identifier the generator uses, so that the loop reads the cache.
	for i := range 100 {
		body.Reset()
		loadgen.WriteRawBatch(&body, "warm", int64(i)*1000, 1000)
		if _, err := c.SendRawEvents(ctx, body.Bytes(), false, false); err != nil {
			b.Fatal(err)
		}
	}
	body.Reset()
	loadgen.WriteRawBatch(&body, "bench", 0, 1000)
	b.SetBytes(int64(body.Len()))
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.SendRawEvents(ctx, body.Bytes(), false, false); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "events/s")
}

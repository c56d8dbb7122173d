package e2e

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mediatorhq/mediator/loadgen"
)

// TestSoakStaysFlat ingests at a steady rate while sampling the server's
// goroutines and resident memory every second; after a warm-up both must
// stay flat. make test runs 20 s at 5,000 events/s; the long form is
//
//	MEDIATOR_SOAK_DURATION=10m MEDIATOR_SOAK_RATE=25000 go test -run TestSoakStaysFlat -v -timeout 30m ./test/e2e
//
// (results in docs/reliability.md).
func TestSoakStaysFlat(t *testing.T) {
	duration, rate := 20*time.Second, 5000.0
	if v := os.Getenv("MEDIATOR_SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("MEDIATOR_SOAK_DURATION: %v", err)
		}
		duration = d
	}
	if v := os.Getenv("MEDIATOR_SOAK_RATE"); v != "" {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil {
			t.Fatalf("MEDIATOR_SOAK_RATE: %v", err)
		}
		rate = r
	}
	in := startServe(t, serveOpts{})
	in.waitReady(t, 60*time.Second)
	gw, _ := in.issuer.Issue("gw-soak", []string{"ingest"}, time.Hour)

	type sample struct {
		at                time.Duration
		goroutines, rssMB float64
	}
	var (
		mu      sync.Mutex
		samples []sample
	)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t0 := time.Now()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			g, rss := scrapeGauges(in.metrics)
			mu.Lock()
			samples = append(samples, sample{time.Since(t0), g, rss / (1 << 20)})
			mu.Unlock()
		}
	}()
	rep, err := loadgen.Run(context.Background(), loadgen.Config{URL: in.base, IngestToken: gw, Batch: 500, Rate: rate,
		Duration: duration, Workers: 4, RunID: "soak"}, io.Discard)
	cancel()
	<-done
	if err != nil || rep.Errors > 0 {
		t.Fatalf("load: %v, %d errors", err, rep.Errors)
	}
	if rep.EventsPerSec < rate*0.9 {
		t.Fatalf("the soak ran at %.0f events/s, below the %.0f asked", rep.EventsPerSec, rate)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(samples) < 8 {
		t.Fatalf("only %d samples", len(samples))
	}
	// Warm-up is the first quarter; compare the second quarter's peak with
	// the last quarter's.
	q := len(samples) / 4
	peak := func(s []sample) (g, rss float64) {
		for _, x := range s {
			g, rss = max(g, x.goroutines), max(rss, x.rssMB)
		}
		return
	}
	warmG, warmRSS := peak(samples[q : 2*q])
	lateG, lateRSS := peak(samples[len(samples)-q:])
	t.Logf("soak: %.0f s at %.0f events/s (%d events, %d errors, batch p99 %s); goroutines %.0f → %.0f; RSS %.1f → %.1f MiB; %d samples",
		rep.Elapsed.Seconds(), rep.EventsPerSec, rep.Events, rep.Errors, rep.P99, warmG, lateG, warmRSS, lateRSS, len(samples))
	if lateG > warmG+10 {
		t.Errorf("goroutines grew from %.0f to %.0f", warmG, lateG)
	}
	if lateRSS > warmRSS*1.3+16 {
		t.Errorf("resident memory grew from %.1f to %.1f MiB", warmRSS, lateRSS)
	}
}

// scrapeGauges reads go_goroutines and process_resident_memory_bytes from
// a metrics URL.
func scrapeGauges(metrics string) (goroutines, rss float64) {
	resp, err := soakClient.Get(metrics)
	if err != nil {
		return 0, 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "go_goroutines "); ok {
			goroutines, _ = strconv.ParseFloat(v, 64)
		}
		if v, ok := strings.CutPrefix(line, "process_resident_memory_bytes "); ok {
			rss, _ = strconv.ParseFloat(v, 64)
		}
	}
	return goroutines, rss
}

// soakClient samples without the description check (a bare text scrape).
var soakClient = &http.Client{Timeout: 5 * time.Second}

package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mediatorhq/mediator/pseudonym"
)

// MaxBodyBytes is the largest ingest body the service takes.
const MaxBodyBytes = 8 << 20

// WriteMaximalBatch appends to b a valid ingest body as large as the
// service takes on every count: 10,000 events (the most a request may
// carry) with five recipients each (50,000, the per-request cap), every
// identifier a pseudonym (47 bytes) and downgrade reasons long enough to
// bring the body just under 8 MiB. Event ids are prefix-… and unique per prefix. It returns the
// number of events.
func WriteMaximalBatch(b *bytes.Buffer, prefix string) int {
	now := time.Now().UTC().Add(-time.Minute).Format(time.RFC3339)
	reason := strings.Repeat("peer unreachable over RCS ", 8)[:170]
	start := b.Len()
	b.WriteString(`{"events":[`)
	n := 0
	for ; n < 10000 && b.Len()-start < MaxBodyBytes-4096; n++ {
		if n > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(b, `{"event_id":"%s-%d","kind":"downgrade","conversation_id":"%s","message_hash":"sha256:%064x",`+
			`"sender":"%s","transport":"sms","status":"sent","occurred_at":"%s",`+
			`"downgrade":{"from":"rcs-e2ee","to":"sms","reason":"%s"},"recipients":[`,
			prefix, n, pseudonym.Synthetic(fmt.Sprintf("conv-%d", n%97)), n,
			pseudonym.Synthetic(fmt.Sprintf("user-%d", n)), now, reason)
		for r := range 5 {
			if r > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(b, `"%s"`, pseudonym.Synthetic(fmt.Sprintf("+1%010d", 3000000000+n*5+r)))
		}
		b.WriteString(`]}`)
	}
	b.WriteString(`]}`)
	return n
}

// MaximalConfig describes a run of maximal requests: many gateways sending
// the largest bodies the service takes, all at once.
type MaximalConfig struct {
	URL          string // the mediator
	IngestToken  string // bearer token with the ingest role
	MetricsToken string // optional: to sample the server's resident memory
	Workers      int    // concurrent gateways (default 32)
	Requests     int    // maximal requests per worker (default 2)
	RunID        string // prefix of event ids; random when empty
}

// MaximalReport is what a run of maximal requests measured.
type MaximalReport struct {
	// Statuses counts every answer, retries included.
	Statuses map[int]int
	// Requests and Acknowledged count the requests and events answered 200.
	Requests, Acknowledged int64
	// PeakRSS is the highest process_resident_memory_bytes sampled every
	// 100 ms (0 without a metrics token); RSSEnd is the last sample.
	PeakRSS, RSSEnd float64
	Elapsed         time.Duration
}

// String formats r as the final report.
func (r MaximalReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "maximal requests: %d acknowledged (%d events) in %.1fs; answers %v\n", r.Requests, r.Acknowledged, r.Elapsed.Seconds(), r.Statuses)
	if r.PeakRSS > 0 {
		fmt.Fprintf(&b, "server RSS: peak %.0f MiB (sampled every 100 ms), %.0f MiB at end\n", r.PeakRSS/(1<<20), r.RSSEnd/(1<<20))
	}
	return b.String()
}

// RunMaximal sends cfg.Requests maximal bodies from each of cfg.Workers
// workers at once, each retried after Retry-After on 429 and 503 (for up
// to a minute), sampling the server's memory meanwhile.
func RunMaximal(ctx context.Context, cfg MaximalConfig) (MaximalReport, error) {
	if cfg.URL == "" || cfg.IngestToken == "" {
		return MaximalReport{}, errors.New("loadgen: URL and ingest token are required")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 32
	}
	if cfg.Requests <= 0 {
		cfg.Requests = 2
	}
	if cfg.RunID == "" {
		cfg.RunID = "max-" + strconv.FormatUint(rand.Uint64(), 36)
	}
	hc := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Workers}}
	rep := MaximalReport{Statuses: map[int]int{}}
	var mu sync.Mutex
	var requests, events atomic.Int64

	sampleCtx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		if cfg.MetricsToken == "" {
			return
		}
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			rss := serverRSS(sampleCtx, hc, cfg.URL, cfg.MetricsToken)
			mu.Lock()
			rep.PeakRSS = max(rep.PeakRSS, rss)
			mu.Unlock()
			select {
			case <-sampleCtx.Done():
				return
			case <-tick.C:
			}
		}
	}()

	start := time.Now()
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for w := range cfg.Workers {
		wg.Go(func() {
			for r := range cfg.Requests {
				var body bytes.Buffer
				n := WriteMaximalBatch(&body, fmt.Sprintf("%s-w%d-r%d", cfg.RunID, w, r))
				deadline := time.Now().Add(time.Minute)
				for {
					code, retry, err := postBody(ctx, hc, cfg.URL+"/v1/events", cfg.IngestToken, body.Bytes())
					if err != nil {
						firstErr.CompareAndSwap(nil, err)
						return
					}
					mu.Lock()
					rep.Statuses[code]++
					mu.Unlock()
					if (code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable) && time.Now().Before(deadline) {
						select {
						case <-ctx.Done():
							return
						case <-time.After(retry):
						}
						continue
					}
					if code == http.StatusOK {
						requests.Add(1)
						events.Add(int64(n))
					}
					break
				}
			}
		})
	}
	wg.Wait()
	rep.Elapsed = time.Since(start)
	rep.RSSEnd = serverRSS(ctx, hc, cfg.URL, cfg.MetricsToken)
	stopSampling()
	<-sampled
	rep.Requests, rep.Acknowledged = requests.Load(), events.Load()
	if err, _ := firstErr.Load().(error); err != nil {
		return rep, err
	}
	return rep, nil
}

// postBody posts an ingest body and returns the status and how long
// Retry-After says to wait (1 s when it says nothing).
func postBody(ctx context.Context, hc *http.Client, url, token string, body []byte) (int, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, 0, fmt.Errorf("loadgen: post: %w", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	wait := time.Second
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		wait = time.Duration(s) * time.Second
	}
	return resp.StatusCode, wait, nil
}

// Package loadgen generates realistic traffic against a running mediator
// through its Go client, delivery metadata or key deposits, and reports
// throughput, latency, checkpoint lag and the server's memory. `mediator
// loadgen` is its command. Every run is bounded in events and time, and
// only ever targets the URL it is given (loopback in tests and docs).
package loadgen

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/transparency-dev/tessera/api/layout"

	"github.com/mediatorhq/mediator/client"
	"github.com/mediatorhq/mediator/job"
	"github.com/mediatorhq/mediator/mirror"
	"github.com/mediatorhq/mediator/pseudonym"
)

// Config describes one run.
type Config struct {
	URL          string        // the mediator, e.g. http://127.0.0.1:8080
	IngestToken  string        // bearer token with the ingest role
	AuditorToken string        // optional: auditor token, to measure checkpoint lag
	MetricsToken string        // optional: metrics token, to read the server's memory
	Batch        int           // events per request (default 1000)
	Rate         float64       // events per second; 0 = as fast as the server answers
	Duration     time.Duration // how long to send (default 10 s)
	MaxEvents    int           // stop after this many events; 0 = no limit besides Duration
	Workers      int           // concurrent requests (default 4)
	RunID        string        // prefix of event ids; random when empty
	// AgentURL, if set, is a gateway agent (`mediator agent`) the events
	// go to, with identifiers as a gateway has them (phone numbers,
	// conversation ids) and no token: the agent pseudonymises them and
	// forwards them to the mediator at URL, which the auditor's and
	// metrics' calls still reach. Otherwise events go to URL carrying
	// pseudonyms, as the client package sends them with a warm cache.
	AgentURL string
	// Cover makes event n take identifier n of each pool (modulo its
	// size) rather than one at random, so that the first PoolCover
	// events name every identifier the generator uses once: a warm-up
	// for an agent's cache that logs no more rows than it must.
	Cover bool
	// Proofs is how many inclusion proofs to time after the run, one at a
	// time, once the lag pollers have stopped (needs AuditorToken); 0
	// skips it.
	Proofs int
	// MirrorURL, if set, is a mirror's copy of the log (C2SP tlog-mirror,
	// <prefix>/<origin hash>, readable without a token) whose checkpoint
	// is polled to measure mirror lag.
	MirrorURL string
	// Tiles is how many full level-0 C2SP tiles to time after the run,
	// from /v1/audit/tlog/ (needs AuditorToken); 0 skips it.
	Tiles int
	// TileReaders, if positive, is how many readers fetch random full
	// level-0 tiles of the published tree, as fast as they are answered,
	// for the whole run (needs AuditorToken): what serving tiles costs
	// ingest. The timing of Tiles after the run uses as many readers.
	TileReaders int
	// TileRate, if positive, paces each of the TileReaders during the run
	// to this many tiles a second: a monitor or mirror that reads
	// politely, rather than as fast as it is answered.
	TileRate float64
	// Segment, if positive, is the size of the segments whose rates the
	// report lists: with a million, whether the rate over the last
	// million held against the first.
	Segment int64
}

// Report is what a run measured.
type Report struct {
	Events       int64
	Batches      int64
	Errors       int64
	Elapsed      time.Duration
	EventsPerSec float64
	P50, P99     time.Duration // batch latency, request sent to response read
	// CheckpointLag is the time from the last acknowledged batch to a signed
	// checkpoint covering it; zero when not measured.
	CheckpointLag time.Duration
	// PublishP50 and PublishP99 are, over every acknowledged batch, the
	// time from its acknowledgement until the published checkpoint (the
	// one the service serves: cosigned by the witness quorum when
	// witnesses are configured) covered it, polled every 25 ms; zero when
	// not measured.
	PublishP50, PublishP99 time.Duration
	PublishSamples         int
	// MirrorP50 and MirrorP99 are the same for the mirror's cosigned
	// checkpoint (Config.MirrorURL); zero when not measured.
	MirrorP50, MirrorP99 time.Duration
	MirrorSamples        int
	// RSSStart and RSSEnd are the server's resident memory, if /metrics said.
	RSSStart, RSSEnd float64
	LastSeq          int64
	// ProofTreeSize is the checkpoint size inclusion proofs were timed at;
	// ProofP50 and ProofP99 their latency, request to response read.
	ProofTreeSize      int64
	ProofP50, ProofP99 time.Duration
	// TileTreeSize is the checkpoint size full tiles were timed at;
	// TileP50 and TileP99 their latency, TileBytesPerSec what one reader
	// fetching them one after another received.
	TileTreeSize     int64
	TileP50, TileP99 time.Duration
	TileBytesPerSec  float64
	// ReaderTiles and ReaderBytesPerSec are what the TileReaders fetched
	// while events were sent.
	ReaderTiles       int64
	ReaderBytesPerSec float64
	// ReaderLimited is how many of their requests were answered 429.
	ReaderLimited int64
	// SegmentSize and SegmentRates are the rate, in events per second, of
	// each whole segment of acknowledged events, in order.
	SegmentSize  int64
	SegmentRates []float64
	tileReaders  int
	// AckGaps are the times, in order, during which no batch was
	// acknowledged for longer than a second (a database failover, say):
	// from one acknowledgement to the next.
	AckGaps []time.Duration
	// CPU is where the machine's cores went while events were sent, by
	// process name (Linux only); CoreSeconds is what they held.
	CPU         []CPUShare
	CoreSeconds float64
}

// String formats r as the final report.
func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "events: %d in %d batches, %d errors, %.1fs\n", r.Events, r.Batches, r.Errors, r.Elapsed.Seconds())
	fmt.Fprintf(&b, "throughput: %.0f events/s\n", r.EventsPerSec)
	fmt.Fprintf(&b, "batch latency: p50 %s, p99 %s\n", r.P50.Round(time.Microsecond*100), r.P99.Round(time.Microsecond*100))
	if r.CheckpointLag > 0 {
		fmt.Fprintf(&b, "checkpoint lag: %s\n", r.CheckpointLag.Round(time.Millisecond))
	}
	if r.PublishSamples > 0 {
		fmt.Fprintf(&b, "publication lag over %d batches: p50 %s, p99 %s\n", r.PublishSamples, r.PublishP50.Round(time.Millisecond), r.PublishP99.Round(time.Millisecond))
	}
	if r.MirrorSamples > 0 {
		fmt.Fprintf(&b, "mirror lag over %d batches: p50 %s, p99 %s\n", r.MirrorSamples, r.MirrorP50.Round(time.Millisecond), r.MirrorP99.Round(time.Millisecond))
	}
	if r.ProofTreeSize > 0 {
		fmt.Fprintf(&b, "inclusion proofs at tree size %d: p50 %s, p99 %s\n", r.ProofTreeSize, r.ProofP50.Round(10*time.Microsecond), r.ProofP99.Round(10*time.Microsecond))
	}
	if r.TileTreeSize > 0 {
		fmt.Fprintf(&b, "full level-0 tiles at tree size %d: p50 %s, p99 %s, %.1f MB/s to %d reader(s)\n", r.TileTreeSize, r.TileP50.Round(10*time.Microsecond), r.TileP99.Round(10*time.Microsecond), r.TileBytesPerSec/1e6, r.tileReaders)
	}
	if r.ReaderTiles > 0 {
		fmt.Fprintf(&b, "tile readers during the run: %d full tiles, %.1f MB/s, %d answers 429\n", r.ReaderTiles, r.ReaderBytesPerSec/1e6, r.ReaderLimited)
	}
	if n := len(r.SegmentRates); n > 0 {
		fmt.Fprintf(&b, "events/s by segment of %d:", r.SegmentSize)
		for _, v := range r.SegmentRates {
			fmt.Fprintf(&b, " %.0f", v)
		}
		fmt.Fprintf(&b, "\nlast segment against the first: %.0f / %.0f = %.2f\n", r.SegmentRates[n-1], r.SegmentRates[0], r.SegmentRates[n-1]/r.SegmentRates[0])
	}
	if len(r.CPU) > 0 {
		fmt.Fprintf(&b, "CPU while sending (%.0f core-seconds):", r.CoreSeconds)
		for i, c := range r.CPU {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, " %s %.1fs (%.0f%%)", c.Name, c.Seconds, 100*c.Seconds/r.CoreSeconds)
		}
		b.WriteByte('\n')
	}
	if len(r.AckGaps) > 0 {
		fmt.Fprintf(&b, "no acknowledgement for over 1s, %d times:", len(r.AckGaps))
		for _, g := range r.AckGaps {
			fmt.Fprintf(&b, " %s", g.Round(time.Millisecond))
		}
		b.WriteByte('\n')
	}
	if r.RSSStart > 0 {
		fmt.Fprintf(&b, "server RSS: %.0f MiB at start, %.0f MiB at end\n", r.RSSStart/(1<<20), r.RSSEnd/(1<<20))
	}
	return b.String()
}

// Run sends load until Duration or MaxEvents is reached, writing a
// progress line to progress every second.
func Run(ctx context.Context, cfg Config, progress io.Writer) (Report, error) {
	if cfg.URL == "" || (cfg.IngestToken == "" && cfg.AgentURL == "") {
		return Report{}, errors.New("loadgen: URL and ingest token are required")
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 1000
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 10 * time.Second
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.RunID == "" {
		cfg.RunID = "load-" + strconv.FormatUint(rand.Uint64(), 36)
	}
	hc := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Workers}}
	var ingest *client.Client
	var err error
	if cfg.AgentURL != "" {
		ingest, err = client.NewLocal(cfg.AgentURL, hc)
	} else {
		ingest, err = client.New(cfg.URL, cfg.IngestToken, hc)
	}
	if err != nil {
		return Report{}, err
	}
	var auditor *client.Client
	if cfg.AuditorToken != "" {
		if auditor, err = client.New(cfg.URL, cfg.AuditorToken, hc); err != nil {
			return Report{}, err
		}
	}
	var rep Report
	rep.RSSStart = serverRSS(ctx, hc, strings.TrimRight(cfg.URL, "/"), cfg.MetricsToken)

	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var (
		next      atomic.Int64 // next event number
		events    atomic.Int64
		batches   atomic.Int64
		errs      atomic.Int64
		lastSeq   atomic.Int64
		mu        sync.Mutex // guards latencies and lastAck
		latencies []time.Duration
		lastAck   time.Time
		gaps      []time.Duration
	)
	lastSeq.Store(-1)
	// A shared ticker paces batches when a rate is set.
	var pace <-chan time.Time
	if cfg.Rate > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) * float64(cfg.Batch) / cfg.Rate))
		defer t.Stop()
		pace = t.C
	}
	cpu := readCPU()
	start := time.Now()
	segs := newSegments(cfg.Segment, start)
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				el := time.Since(start).Seconds()
				fmt.Fprintf(progress, "\r%6.0fs  %9d events  %7.0f events/s  %d errors   ", el, events.Load(), float64(events.Load())/el, errs.Load())
			}
		}
	}()
	// The pollers stop once the lags are in (below), before proofs and
	// tiles are timed: those time the service, not the service beside
	// loadgen's own polling every 25 ms.
	lags, mirrorLags := &publishLags{}, &publishLags{}
	stopLags, stopMirrorLags := func() {}, func() {}
	if auditor != nil {
		stopLags = lags.poll(context.WithoutCancel(ctx), func(ctx context.Context) (int64, error) { return checkpointSize(ctx, auditor) })
		defer stopLags()
	}
	if cfg.MirrorURL != "" {
		stopMirrorLags = mirrorLags.poll(context.WithoutCancel(ctx), func(ctx context.Context) (int64, error) { return mirrorSize(ctx, cfg.MirrorURL) })
		defer stopMirrorLags()
	}
	var readers *tileReaders
	if auditor != nil && cfg.TileReaders > 0 {
		readers = startTileReaders(ctx, auditor, cfg.TileReaders, cfg.TileRate)
	}
	var wg sync.WaitGroup
	for range cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var body bytes.Buffer
			for ctx.Err() == nil {
				if pace != nil {
					select {
					case <-ctx.Done():
						return
					case <-pace:
					}
				}
				n := int64(cfg.Batch)
				first := next.Add(n) - n
				if cfg.MaxEvents > 0 && first >= int64(cfg.MaxEvents) {
					return
				}
				if cfg.MaxEvents > 0 && first+n > int64(cfg.MaxEvents) {
					n = int64(cfg.MaxEvents) - first
				}
				body.Reset()
				writeBatch(&body, cfg.RunID, first, int(n), cfg.AgentURL != "", cfg.Cover)
				t0 := time.Now()
				res, err := ingest.SendEvents(ctx, body.Bytes(), false, false)
				var seq int64 = -1
				if err == nil && res.LastSeq != nil {
					seq = *res.LastSeq
				}
				lat := time.Since(t0)
				if err != nil {
					if ctx.Err() == nil {
						errs.Add(1)
						// Down, or failing over: do not spin.
						select {
						case <-ctx.Done():
						case <-time.After(100 * time.Millisecond):
						}
					}
					continue
				}
				total := events.Add(n)
				segs.add(total-n, total, time.Now())
				batches.Add(1)
				for {
					cur := lastSeq.Load()
					if seq <= cur || lastSeq.CompareAndSwap(cur, seq) {
						break
					}
				}
				mu.Lock()
				latencies = append(latencies, lat)
				now := time.Now()
				if !lastAck.IsZero() && now.Sub(lastAck) > time.Second {
					gaps = append(gaps, now.Sub(lastAck))
				}
				lastAck = now
				mu.Unlock()
				if cfg.MirrorURL != "" && seq >= 0 {
					mirrorLags.acked(seq, now)
				}
				if auditor != nil && seq >= 0 {
					lags.acked(seq, now)
				}
			}
		}()
	}
	wg.Wait()
	close(done)
	fmt.Fprintln(progress)
	rep.Elapsed = time.Since(start)
	if readers != nil {
		rep.ReaderTiles, rep.ReaderBytesPerSec = readers.stop()
		rep.ReaderLimited = readers.limited.Load()
	}
	rep.CPU, rep.CoreSeconds = cpuSince(cpu)
	rep.SegmentSize, rep.SegmentRates = cfg.Segment, segs.rates()
	rep.Events, rep.Batches, rep.Errors = events.Load(), batches.Load(), errs.Load()
	rep.AckGaps = gaps
	rep.EventsPerSec = float64(rep.Events) / rep.Elapsed.Seconds()
	rep.LastSeq = lastSeq.Load()
	if len(latencies) > 0 {
		slices.Sort(latencies)
		rep.P50 = latencies[len(latencies)/2]
		rep.P99 = latencies[min(len(latencies)-1, len(latencies)*99/100)]
	}
	if auditor != nil && rep.LastSeq >= 0 {
		lag, err := checkpointLag(context.Background(), auditor, rep.LastSeq+1, lastAck)
		if err != nil {
			return rep, err
		}
		rep.CheckpointLag = lag
	}
	if auditor != nil {
		rep.PublishSamples, rep.PublishP50, rep.PublishP99 = lags.wait(30 * time.Second)
	}
	if cfg.MirrorURL != "" {
		rep.MirrorSamples, rep.MirrorP50, rep.MirrorP99 = mirrorLags.wait(30 * time.Second)
	}
	stopLags()
	stopMirrorLags()
	if auditor != nil && cfg.Proofs > 0 {
		if err := timeProofs(context.Background(), auditor, cfg.Proofs, &rep); err != nil {
			return rep, err
		}
	}
	if auditor != nil && cfg.Tiles > 0 {
		if err := timeTiles(context.Background(), auditor, cfg.Tiles, max(1, cfg.TileReaders), &rep); err != nil {
			return rep, err
		}
	}
	rep.RSSEnd = serverRSS(context.Background(), hc, strings.TrimRight(cfg.URL, "/"), cfg.MetricsToken)
	return rep, nil
}

// timeProofs fetches n inclusion proofs for random entries of the latest
// checkpoint's tree, one at a time, and records their latency.
func timeProofs(ctx context.Context, c *client.Client, n int, rep *Report) error {
	size, err := checkpointSize(ctx, c)
	if err != nil {
		return err
	}
	lat := make([]time.Duration, 0, n)
	for range n {
		t0 := time.Now()
		if _, err := c.InclusionProof(ctx, rand.Int64N(size), size); err != nil {
			return fmt.Errorf("loadgen: proof: %w", err)
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	rep.ProofTreeSize = size
	rep.ProofP50 = lat[len(lat)/2]
	rep.ProofP99 = lat[min(len(lat)-1, len(lat)*99/100)]
	return nil
}

// timeTiles fetches n random full level-0 tiles of the latest
// checkpoint's tree from /v1/audit/tlog/, readers at a time, and records
// their latency and the bytes per second received in all.
func timeTiles(ctx context.Context, c *client.Client, n, readers int, rep *Report) error {
	size, err := checkpointSize(ctx, c)
	if err != nil {
		return err
	}
	full := size / 256
	if full == 0 {
		return errors.New("loadgen: tiles: the log has no full tile yet")
	}
	var (
		mu       sync.Mutex
		lat      = make([]time.Duration, 0, n)
		received int
		next     atomic.Int64
		firstErr error
		wg       sync.WaitGroup
	)
	start := time.Now()
	for range readers {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				t0 := time.Now()
				b, err := fetchTile(ctx, c, full)
				var apiErr *client.Error
				for errors.As(err, &apiErr) && apiErr.Status == http.StatusTooManyRequests && ctx.Err() == nil {
					// The service limits tiles (--rate-tiles): wait as told,
					// and time the answer that came.
					time.Sleep(time.Second)
					t0 = time.Now()
					b, err = fetchTile(ctx, c, full)
				}
				mu.Lock()
				if err != nil {
					firstErr = cmp.Or(firstErr, err)
					mu.Unlock()
					return
				}
				lat = append(lat, time.Since(t0))
				received += len(b)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	rep.TileBytesPerSec = float64(received) / time.Since(start).Seconds()
	slices.Sort(lat)
	rep.TileTreeSize, rep.tileReaders = size, readers
	rep.TileP50 = lat[len(lat)/2]
	rep.TileP99 = lat[min(len(lat)-1, len(lat)*99/100)]
	return nil
}

// fetchTile fetches a random one of the first full full level-0 tiles
// and checks its length.
func fetchTile(ctx context.Context, c *client.Client, full int64) ([]byte, error) {
	b, err := c.Tile(ctx, layout.TilePath(0, uint64(rand.Int64N(full)), 0))
	if err != nil {
		return nil, fmt.Errorf("loadgen: tile: %w", err)
	}
	if len(b) != 256*32 {
		return nil, fmt.Errorf("loadgen: tile: %d bytes, want %d", len(b), 256*32)
	}
	return b, nil
}

// tileReaders fetch random full tiles of the published tree until
// stopped.
type tileReaders struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	start  time.Time
	tiles  atomic.Int64
	bytes  atomic.Int64
	// limited counts the answers 429 (the service's --rate-tiles).
	limited atomic.Int64
}

// startTileReaders starts n readers, each reading rate tiles a second
// (0: as fast as it is answered); each rereads the published size every
// 100 tiles, and waits while no full tile is published.
func startTileReaders(ctx context.Context, c *client.Client, n int, rate float64) *tileReaders {
	ctx, cancel := context.WithCancel(ctx)
	r := &tileReaders{cancel: cancel, start: time.Now()}
	for range n {
		r.wg.Go(func() {
			var pace <-chan time.Time
			if rate > 0 {
				t := time.NewTicker(time.Duration(float64(time.Second) / rate))
				defer t.Stop()
				pace = t.C
			}
			var full int64
			for i := 0; ctx.Err() == nil; i++ {
				if pace != nil {
					select {
					case <-ctx.Done():
						return
					case <-pace:
					}
				}
				if i%100 == 0 || full == 0 {
					if size, err := checkpointSize(ctx, c); err == nil {
						full = size / 256
					}
				}
				if full == 0 {
					time.Sleep(100 * time.Millisecond)
					continue
				}
				b, err := fetchTile(ctx, c, full)
				if err == nil {
					r.tiles.Add(1)
					r.bytes.Add(int64(len(b)))
					continue
				}
				var apiErr *client.Error
				if errors.As(err, &apiErr) && apiErr.Status == http.StatusTooManyRequests {
					r.limited.Add(1)
					select { // Retry-After is a second at least
					case <-ctx.Done():
					case <-time.After(time.Second):
					}
				}
			}
		})
	}
	return r
}

// stop stops the readers and returns how many tiles they fetched and at
// how many bytes per second.
func (r *tileReaders) stop() (int64, float64) {
	r.cancel()
	r.wg.Wait()
	return r.tiles.Load(), float64(r.bytes.Load()) / time.Since(r.start).Seconds()
}

// checkpointSize reads the tree size of the latest checkpoint (unverified:
// load measurement trusts the server it measures).
func checkpointSize(ctx context.Context, c *client.Client) (int64, error) {
	note, err := c.Checkpoint(ctx)
	if err != nil {
		return 0, fmt.Errorf("loadgen: checkpoint: %w", err)
	}
	lines := strings.SplitN(note, "\n", 3)
	if len(lines) < 3 {
		return 0, errors.New("loadgen: checkpoint: not a checkpoint note")
	}
	return strconv.ParseInt(lines[1], 10, 64)
}

// mirrorSize is the size of the checkpoint a mirror's copy serves.
func mirrorSize(ctx context.Context, copyURL string) (int64, error) {
	signed, err := mirror.Copy{URL: copyURL}.Checkpoint(ctx)
	if err != nil {
		return 0, err
	}
	lines := strings.SplitN(string(signed), "\n", 3)
	if len(lines) < 3 {
		return 0, errors.New("loadgen: mirror checkpoint: not a checkpoint note")
	}
	return strconv.ParseInt(lines[1], 10, 64)
}

var (
	kinds      = []string{"message", "message", "message", "receipt", "receipt", "key_change", "membership_change", "downgrade"}
	transports = []string{"rcs-e2ee", "rcs-e2ee", "app-e2ee", "app-e2ee", "rcs", "sms", "mms", "imessage"}
	statuses   = []string{"sent", "delivered", "delivered", "read", "failed"}
	platforms  = []string{"android", "ios", "web"}
	mccs       = []string{"310", "311", "234", "262", "208"}
)

// EventID is the id WriteBatch gives event n of run runID.
func EventID(runID string, n int64) string { return string(AppendEventID(nil, runID, n)) }

// AppendEventID appends EventID(runID, n) to b: the run id, "-e" and the
// number. The letter matters: digits at the end of a run id joined to the
// number across a "-" would read as a phone number, and every event would
// be refused.
func AppendEventID(b []byte, runID string, n int64) []byte {
	b = append(b, runID...)
	b = append(b, "-e"...)
	return strconv.AppendInt(b, n, 10)
}

// The identifiers of generated events: conversations, senders and
// recipients drawn from fixed pools, as a gateway's traffic repeats them,
// each with its synthetic pseudonym (pseudonym.Synthetic).
const (
	poolConversations = 5000
	poolSenders       = 10000
	poolRecipients    = 10000
)

// PoolCover is how many events with Config.Cover name every identifier
// of the pools at least once.
const PoolCover = max(poolConversations, poolSenders, poolRecipients)

type identifiers struct {
	raw, pseudonyms []string
}

var pools = sync.OnceValue(func() (p [3]identifiers) {
	pool := func(n int, name func(i int) string) identifiers {
		ids := identifiers{raw: make([]string, n), pseudonyms: make([]string, n)}
		for i := range n {
			ids.raw[i] = name(i)
			ids.pseudonyms[i] = pseudonym.Synthetic(ids.raw[i])
		}
		return ids
	}
	p[0] = pool(poolConversations, func(i int) string { return "conv-" + strconv.Itoa(i) })
	p[1] = pool(poolSenders, func(i int) string { return fmt.Sprintf("+1415555%04d", i) })
	p[2] = pool(poolRecipients, func(i int) string { return fmt.Sprintf("+4420790%05d", i) })
	return p
})

// WriteBatch appends {"events":[...]} with n realistic events numbered from
// first, their identifiers already pseudonyms. It builds JSON by hand, with
// appends rather than fmt, because the generator shares the machine with
// the server under test and must stay cheap.
func WriteBatch(b *bytes.Buffer, runID string, first int64, n int) {
	writeBatch(b, runID, first, n, false, false)
}

// WriteRawBatch is WriteBatch with identifiers as a gateway has them, for
// an agent.
func WriteRawBatch(b *bytes.Buffer, runID string, first int64, n int) {
	writeBatch(b, runID, first, n, true, false)
}

func writeBatch(b *bytes.Buffer, runID string, first int64, n int, raw, cover bool) {
	p := pools()
	var id int64
	pick := func(ids identifiers, r uint64) string {
		if cover {
			r = uint64(id)
		}
		i := r % uint64(len(ids.raw))
		if raw {
			return ids.raw[i]
		}
		return ids.pseudonyms[i]
	}
	now := time.Now().UTC().Add(-30 * time.Second).Format(time.RFC3339Nano)
	out := b.AvailableBuffer()
	out = append(out, `{"events":[`...)
	for i := range n {
		if i > 0 {
			out = append(out, ',')
		}
		id = first + int64(i)
		r := rand.Uint64()
		kind := kinds[r%uint64(len(kinds))]
		out = append(out, `{"event_id":"`...)
		out = AppendEventID(out, runID, id)
		out = append(out, `","kind":"`...)
		out = append(out, kind...)
		out = append(out, `","conversation_id":"`...)
		out = append(out, pick(p[0], r>>16)...)
		out = append(out, `","message_hash":"sha256:`...)
		for _, w := range [4]uint64{r, rand.Uint64(), rand.Uint64(), rand.Uint64()} {
			out = appendHex16(out, w)
		}
		out = append(out, `","sender":"`...)
		out = append(out, pick(p[1], r>>20)...)
		out = append(out, `","recipients":["`...)
		out = append(out, pick(p[2], r>>28)...)
		out = append(out, `"],"transport":"`...)
		out = append(out, transports[(r>>8)%uint64(len(transports))]...)
		out = append(out, `","status":"`...)
		out = append(out, statuses[(r>>36)%uint64(len(statuses))]...)
		out = append(out, `","occurred_at":"`...)
		out = append(out, now...)
		out = append(out, `","carrier":{"mcc":"`...)
		out = append(out, mccs[(r>>40)%uint64(len(mccs))]...)
		out = append(out, `","mnc":"`...)
		out = appendPadded(out, (r>>44)%100, 2)
		out = append(out, `"},"client":{"platform":"`...)
		out = append(out, platforms[(r>>50)%3]...)
		out = append(out, `","version":"5.`...)
		out = strconv.AppendUint(out, (r>>52)%20, 10)
		out = append(out, `"}`...)
		if kind == "downgrade" {
			out = append(out, `,"downgrade":{"from":"rcs-e2ee","to":"sms","reason":"peer not reachable over RCS"}`...)
		}
		out = append(out, '}')
	}
	out = append(out, "]}"...)
	b.Write(out)
}

func appendHex16(b []byte, v uint64) []byte {
	const digits = "0123456789abcdef"
	for shift := 60; shift >= 0; shift -= 4 {
		b = append(b, digits[(v>>uint(shift))&0xf])
	}
	return b
}

// appendPadded appends v in decimal, zero-padded to width digits.
func appendPadded(b []byte, v uint64, width int) []byte {
	var tmp [20]byte
	s := strconv.AppendUint(tmp[:0], v, 10)
	for range width - len(s) {
		b = append(b, '0')
	}
	return append(b, s...)
}

// checkpointLag polls the checkpoint until it covers size and returns how
// long after lastAck that happened.
func checkpointLag(ctx context.Context, c *client.Client, size int64, lastAck time.Time) (time.Duration, error) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if n, err := checkpointSize(ctx, c); err == nil && n >= size {
			return time.Since(lastAck), nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return 0, fmt.Errorf("loadgen: no checkpoint covering %d entries within 30s", size)
}

// serverRSS reads process_resident_memory_bytes from /metrics, or 0.
func serverRSS(ctx context.Context, client *http.Client, url, token string) float64 {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/metrics", nil)
	if err != nil {
		return 0
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "process_resident_memory_bytes "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// publishLags measures, for each acknowledged batch, how long until a
// checkpoint covers it: the one the service serves, or a mirror's.
type publishLags struct {
	mu      sync.Mutex
	pending []ackedBatch
	lags    []time.Duration
}

type ackedBatch struct {
	seq int64
	at  time.Time
}

func (p *publishLags) acked(seq int64, at time.Time) {
	p.mu.Lock()
	p.pending = append(p.pending, ackedBatch{seq, at})
	p.mu.Unlock()
}

// poll fetches the checkpoint every 25 ms and settles the batches it
// covers, until the returned stop is called; stop returns once the poller
// has, its last request included, and may be called again.
func (p *publishLags) poll(ctx context.Context, size func(context.Context) (int64, error)) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		job.Every(ctx, 25*time.Millisecond, func() { p.settle(ctx, size) })
	}()
	return func() {
		cancel()
		<-stopped
	}
}

// settle fetches the checkpoint once and settles the batches it covers.
func (p *publishLags) settle(ctx context.Context, size func(context.Context) (int64, error)) {
	n, err := size(ctx)
	if err != nil {
		return
	}
	now := time.Now()
	p.mu.Lock()
	kept := p.pending[:0]
	for _, b := range p.pending {
		if b.seq < n {
			p.lags = append(p.lags, now.Sub(b.at))
		} else {
			kept = append(kept, b)
		}
	}
	p.pending = kept
	p.mu.Unlock()
}

// wait waits up to within for every batch to be covered, and returns the
// number of batches measured and the median and 99th percentile lag.
func (p *publishLags) wait(within time.Duration) (int, time.Duration, time.Duration) {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		left := len(p.pending)
		p.mu.Unlock()
		if left == 0 {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, b := range p.pending {
		// Never covered: counted as the whole wait, so the figures do not
		// hide them.
		p.lags = append(p.lags, time.Since(b.at))
	}
	p.pending = nil
	if len(p.lags) == 0 {
		return 0, 0, 0
	}
	slices.Sort(p.lags)
	return len(p.lags), p.lags[len(p.lags)/2], p.lags[min(len(p.lags)-1, len(p.lags)*99/100)]
}

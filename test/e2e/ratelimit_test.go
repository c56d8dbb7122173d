package e2e

import (
	"bytes"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mediatorhq/mediator/loadgen"
)

// TestRateLimitsPerIdentity: one gateway floods ingest and is refused with
// 429 and Retry-After, while another gateway at its normal pace is never
// refused; an officer hammering the request endpoint is limited the same
// way.
func TestRateLimitsPerIdentity(t *testing.T) {
	in := startServe(t, serveOpts{extraEnv: []string{
		"MEDIATOR_RATE_INGEST=20", "MEDIATOR_RATE_INGEST_BURST=10",
		"MEDIATOR_RATE_ACCESS=1", "MEDIATOR_RATE_ACCESS_BURST=3",
		"MEDIATOR_RATE_DEPOSIT=1", "MEDIATOR_RATE_DEPOSIT_BURST=3",
		"MEDIATOR_RATE_TILES=1", "MEDIATOR_RATE_TILES_BURST=3",
		"MEDIATOR_RATE_TILES_SERVICE=1", "MEDIATOR_RATE_TILES_SERVICE_BURST=5",
	}})
	in.waitReady(t, 60*time.Second)
	flooder, _ := in.issuer.Issue("gw-flood", []string{"ingest"}, time.Hour)
	steady, _ := in.issuer.Issue("gw-steady", []string{"ingest"}, time.Hour)
	send := func(tok, run string, n int) (int, string) {
		var b bytes.Buffer
		loadgen.WriteBatch(&b, run, int64(n), 1)
		req, _ := http.NewRequest("POST", in.base+"/v1/events", &b)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return 0, ""
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Retry-After")
	}
	var limited, floodOK atomic.Int64
	var badRetry atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var seq atomic.Int64
	for range 6 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				code, retry := send(flooder, "flood", int(seq.Add(1)))
				switch code {
				case 429:
					limited.Add(1)
					if n, err := strconv.Atoi(retry); err != nil || n < 1 {
						badRetry.Store(retry)
					}
				case 200:
					floodOK.Add(1)
				}
			}
		})
	}
	// The steady gateway sends 10 requests a second, under its own limit.
	for i := range 20 {
		if code, _ := send(steady, "steady", i); code != 200 {
			t.Errorf("the steady gateway was refused (%d) while another flooded", code)
		}
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if limited.Load() == 0 {
		t.Fatal("the flood was never limited")
	}
	if v := badRetry.Load(); v != nil {
		t.Fatalf("429 with Retry-After %q", v)
	}
	// 2 s at 20/s plus the burst of 10: about 50 accepted, far fewer than sent.
	if ok := floodOK.Load(); ok > 80 {
		t.Fatalf("the flooder got %d requests through in 2 s at 20/s", ok)
	}

	officer, _ := in.issuer.Issue("olga", []string{"officer"}, time.Hour)
	var codes []int
	for range 6 {
		code, _ := post(t, in.base+"/v1/access-requests", "application/json", officer, []byte(`{}`))
		codes = append(codes, code)
	}
	if codes[0] == 429 || codes[len(codes)-1] != 429 {
		t.Fatalf("access writes in a burst: %v", codes)
	}
	// One depositor piling up deposits is limited the same way (issue 21:
	// 10,001 keys under one conversation in 32 s).
	gw, _ := in.issuer.Issue("gw-dep", []string{"depositor"}, time.Hour)
	codes = nil
	for range 6 {
		code, _ := post(t, in.base+"/v1/escrow/keys", "application/json", gw, []byte(`{}`))
		codes = append(codes, code)
	}
	if codes[0] == 429 || codes[len(codes)-1] != 429 {
		t.Fatalf("deposits in a burst: %v", codes)
	}
	// A tile reader taking more than its share is limited the same way,
	// tiles and entry bundles together (issue 25: what readers may take of
	// ingest).
	reader, _ := in.issuer.Issue("regulator-monitor", []string{"auditor"}, time.Hour)
	codes = nil
	for i := range 6 {
		path := "/v1/audit/tlog/tile/0/000"
		if i%2 == 1 {
			path = "/v1/audit/tlog/tile/entries/000"
		}
		code, _, hdr := call(t, "GET", in.base+path, reader)
		if code == 429 && hdr.Get("Retry-After") == "" {
			t.Fatal("a tile 429 without Retry-After")
		}
		codes = append(codes, code)
	}
	if codes[0] == 429 || codes[len(codes)-1] != 429 {
		t.Fatalf("tile reads in a burst: %v", codes)
	}
	// Readers together are limited too, however many identities they
	// hold: the first reader took 3 of the service's 5; a second one,
	// within its own burst of 3, gets 2 and is then refused.
	second, _ := in.issuer.Issue("regulator-second", []string{"auditor"}, time.Hour)
	codes = nil
	for range 3 {
		code, _, hdr := call(t, "GET", in.base+"/v1/audit/tlog/tile/0/000", second)
		if code == 429 && hdr.Get("Retry-After") == "" {
			t.Fatal("a service-wide tile 429 without Retry-After")
		}
		codes = append(codes, code)
	}
	if codes[0] == 429 || codes[1] == 429 || codes[2] != 429 {
		t.Fatalf("a second reader within its own burst, over the service's: %v", codes)
	}
	if m := rawGet(t, in.metrics); !bytes.Contains([]byte(m), []byte(`mediator_rate_limited_total{route="/v1/events"}`)) {
		t.Fatal("rate-limited requests are not counted")
	}
}

package loadgen

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mediatorhq/mediator/wire"
)

// TestPublishLagsStopQuietsThePoller: once stop returns, the poller sends
// nothing more, so what is timed after it (proofs, tiles) runs without
// loadgen's own checkpoint requests beside it; and the batches it saw
// covered are settled.
func TestPublishLagsStopQuietsThePoller(t *testing.T) {
	var p publishLags
	p.acked(9, time.Now())
	var calls atomic.Int64
	inFlight := make(chan struct{}, 1)
	stop := p.poll(context.Background(), func(ctx context.Context) (int64, error) {
		calls.Add(1)
		select {
		case inFlight <- struct{}{}:
		default:
		}
		return 10, nil
	})
	<-inFlight // the poller has sent at least one request
	stop()
	after := calls.Load()
	time.Sleep(100 * time.Millisecond) // four polling intervals
	if n := calls.Load(); n != after {
		t.Fatalf("the poller sent %d requests after stop returned", n-after)
	}
	stop() // a second stop (the deferred one) returns at once
	if n, _, _ := p.wait(0); n != 1 {
		t.Fatalf("wait measured %d batches, want the one the poller settled", n)
	}
}

// TestRunTimesProofsWithoutItsPoller: Run times its proofs with nothing of
// its own beside them. Against a small stand-in for the service (ingest,
// checkpoint and proofs, each proof answered in 30 ms, longer than the
// poller's 25 ms), no checkpoint request may arrive between the first
// proof request and the last answer, bar the one that reads the tree
// size before the proofs start.
func TestRunTimesProofsWithoutItsPoller(t *testing.T) {
	var (
		mu           sync.Mutex
		size         int64
		proofs       int
		proofsDone   bool
		duringProofs int // checkpoint requests after the first proof request
	)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/events", func(w http.ResponseWriter, r *http.Request) {
		var batch struct {
			Events []json.RawMessage `json:"events"`
		}
		if err := json.NewDecoder(r.Body).Decode(&batch); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		events := batch.Events
		mu.Lock()
		first := size
		size += int64(len(events))
		last := size - 1
		mu.Unlock()
		writeTestJSON(w, wire.IngestResponse{Accepted: len(events), FirstSeq: &first, LastSeq: &last})
	})
	mux.HandleFunc("GET /v1/audit/checkpoint", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n := size
		if proofs > 0 && !proofsDone {
			duringProofs++
		}
		mu.Unlock()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "test/log\n"+strconv.FormatInt(n, 10)+"\nAAAA\n\n— test sig\n")
	})
	mux.HandleFunc("GET /v1/audit/proof/inclusion", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		proofs++
		mu.Unlock()
		time.Sleep(30 * time.Millisecond)
		writeTestJSON(w, wire.InclusionProof{})
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	rep, err := Run(context.Background(), Config{
		URL: srv.URL, IngestToken: "ingest", AuditorToken: "auditor",
		MaxEvents: 40, Batch: 10, Workers: 2, Duration: 10 * time.Second, Proofs: 8,
	}, io.Discard)
	mu.Lock()
	proofsDone = true
	defer mu.Unlock()
	if err != nil || rep.Events != 40 || proofs != 8 {
		t.Fatalf("Run: %d events, %d proofs, %v; want 40 and 8", rep.Events, proofs, err)
	}
	if duringProofs != 0 {
		t.Fatalf("%d checkpoint requests arrived while proofs were timed", duringProofs)
	}
}

func writeTestJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

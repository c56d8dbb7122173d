package loadgen

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
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

package batch

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestConcurrentCallsShareBatches(t *testing.T) {
	var calls, maxSeen atomic.Int64
	release := make(chan struct{})
	q := &Queue[int, int]{Max: 10, Fn: func(_ context.Context, reqs []int) ([]int, error) {
		if calls.Add(1) == 1 {
			<-release // hold the first batch so the rest queue up
		}
		if n := int64(len(reqs)); n > maxSeen.Load() {
			maxSeen.Store(n)
		}
		out := make([]int, len(reqs))
		for i, r := range reqs {
			out[i] = r * 2
		}
		return out, nil
	}}
	var wg sync.WaitGroup
	results := make([]int, 25)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := q.Do(context.Background(), i)
			if err != nil {
				t.Error(err)
			}
			results[i] = r
		}()
		if i == 0 {
			for calls.Load() == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}
	// Let the other 24 queue behind the held batch.
	for {
		q.mu.Lock()
		n := len(q.pending)
		q.mu.Unlock()
		if n == 24 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	for i, r := range results {
		if r != 2*i {
			t.Fatalf("result %d = %d, want %d: results went to the wrong callers", i, r, 2*i)
		}
	}
	// 1 held + 24 queued in batches of at most 10: 4 batches.
	if got := calls.Load(); got != 4 {
		t.Fatalf("%d batches for 25 calls, want 4", got)
	}
	if maxSeen.Load() != 10 {
		t.Fatalf("largest batch %d, want Max = 10", maxSeen.Load())
	}
}

func TestLoneCallIsNotDelayed(t *testing.T) {
	q := &Queue[int, int]{MinInterval: time.Hour, Fn: func(_ context.Context, reqs []int) ([]int, error) {
		return reqs, nil
	}}
	t0 := time.Now()
	if r, err := q.Do(context.Background(), 7); err != nil || r != 7 {
		t.Fatalf("Do = %d, %v", r, err)
	}
	if d := time.Since(t0); d > time.Second {
		t.Fatalf("a lone call waited %v", d)
	}
}

func TestMinIntervalSpacesBatches(t *testing.T) {
	var starts []time.Time
	var mu sync.Mutex
	q := &Queue[int, int]{MinInterval: 30 * time.Millisecond, Fn: func(_ context.Context, reqs []int) ([]int, error) {
		mu.Lock()
		starts = append(starts, time.Now())
		mu.Unlock()
		return reqs, nil
	}}
	for i := range 3 {
		if _, err := q.Do(context.Background(), i); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i < len(starts); i++ {
		// Fn starts a little after the queue notes the batch's start, by
		// a varying scheduling delay; unspaced batches would be ~0 apart.
		if gap := starts[i].Sub(starts[i-1]); gap < 25*time.Millisecond {
			t.Fatalf("batches %d and %d started %v apart, want about 30ms", i-1, i, gap)
		}
	}
}

func TestBatchErrorFailsEveryCaller(t *testing.T) {
	boom := errors.New("boom")
	q := &Queue[int, int]{Fn: func(context.Context, []int) ([]int, error) { return nil, boom }}
	if _, err := q.Do(context.Background(), 1); !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	// The queue recovers: the next call is served by a new flusher.
	q.Fn = func(_ context.Context, reqs []int) ([]int, error) { return reqs, nil }
	if r, err := q.Do(context.Background(), 3); err != nil || r != 3 {
		t.Fatalf("after an error: %d %v", r, err)
	}
}

// TestOutcomeOutlivesTheCallersContext: a caller whose context ends while
// its batch runs still learns the outcome, so it never takes a performed
// request for a failed one.
func TestOutcomeOutlivesTheCallersContext(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	q := &Queue[int, int]{Fn: func(ctx context.Context, reqs []int) ([]int, error) {
		close(started)
		<-release
		if ctx.Err() != nil {
			return nil, ctx.Err() // the batch must not inherit the caller's cancellation
		}
		return reqs, nil
	}}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-started; cancel(); time.Sleep(20 * time.Millisecond); close(release) }()
	if r, err := q.Do(ctx, 5); err != nil || r != 5 {
		t.Fatalf("Do after the caller's context ended = %d, %v; want the batch's outcome", r, err)
	}
}

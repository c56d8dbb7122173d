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

// TestWeightBoundsABatch: requests are packed by weight, a request heavier
// than Max still goes (alone), and nothing is split or reordered.
func TestWeightBoundsABatch(t *testing.T) {
	var mu sync.Mutex
	var batches [][]int
	hold := make(chan struct{})
	first := true
	q := &Queue[int, int]{Max: 10, Weight: func(n int) int { return n }, Fn: func(_ context.Context, reqs []int) ([]int, error) {
		mu.Lock()
		wasFirst := first
		first = false
		batches = append(batches, append([]int(nil), reqs...))
		mu.Unlock()
		if wasFirst {
			<-hold
		}
		return reqs, nil
	}}
	head := q.Add(context.Background(), 1)
	for {
		mu.Lock()
		n := len(batches)
		mu.Unlock()
		if n == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	var fs []*Future[int, int]
	for _, w := range []int{4, 5, 3, 25, 2} {
		fs = append(fs, q.Add(context.Background(), w))
	}
	close(hold)
	if _, err := head.Wait(); err != nil {
		t.Fatal(err)
	}
	for i, f := range fs {
		if r, err := f.Wait(); err != nil || r != []int{4, 5, 3, 25, 2}[i] {
			t.Fatalf("future %d = %d, %v", i, r, err)
		}
	}
	want := [][]int{{1}, {4, 5}, {3}, {25}, {2}}
	if len(batches) != len(want) {
		t.Fatalf("batches %v, want %v", batches, want)
	}
	for i := range want {
		if len(batches[i]) != len(want[i]) || batches[i][0] != want[i][0] {
			t.Fatalf("batches %v, want %v", batches, want)
		}
	}
}

// TestCloseDrainsThenRefuses: Close waits for queued requests to be
// performed and answered, and requests added after it fail with ErrClosed
// without reaching Fn.
func TestCloseDrainsThenRefuses(t *testing.T) {
	release := make(chan struct{})
	var performed atomic.Int64
	q := &Queue[int, int]{Fn: func(_ context.Context, reqs []int) ([]int, error) {
		<-release
		performed.Add(int64(len(reqs)))
		return reqs, nil
	}}
	f := q.Add(context.Background(), 1)
	closed := make(chan error)
	go func() { closed <- q.Close(context.Background()) }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a batch was still running", err)
	case <-time.After(50 * time.Millisecond):
	}
	if _, err := q.Add(context.Background(), 2).Wait(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Add after Close: %v, want ErrClosed", err)
	}
	close(release)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if r, err := f.Wait(); err != nil || r != 1 {
		t.Fatalf("queued request = %d, %v", r, err)
	}
	if performed.Load() != 1 {
		t.Fatalf("performed %d requests, want only the one queued before Close", performed.Load())
	}
}

// AddAll's requests go together: an idle queue does not send the first
// alone.
func TestAddAllGoesTogether(t *testing.T) {
	var sizes []int
	var mu sync.Mutex
	q := &Queue[int, int]{Max: 4, Fn: func(_ context.Context, reqs []int) ([]int, error) {
		mu.Lock()
		sizes = append(sizes, len(reqs))
		mu.Unlock()
		return reqs, nil
	}}
	fs := q.AddAll(context.Background(), []int{1, 2, 3, 4, 5, 6})
	for i, f := range fs {
		if r, err := f.Wait(); err != nil || r != i+1 {
			t.Fatalf("request %d: %d %v", i, r, err)
		}
	}
	mu.Lock()
	got := append([]int(nil), sizes...)
	mu.Unlock()
	if len(got) != 2 || got[0] != 4 || got[1] != 2 {
		t.Fatalf("batch sizes %v, want [4 2]", got)
	}
	// Adding nothing leaves the queue working.
	if fs := q.AddAll(context.Background(), nil); len(fs) != 0 {
		t.Fatal("futures for nothing")
	}
	if r, err := q.Do(context.Background(), 9); err != nil || r != 9 {
		t.Fatalf("after adding nothing: %d %v", r, err)
	}
	if err := q.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := q.AddAll(context.Background(), []int{7})[0].Wait(); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

package job

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// TestStartOutlivesItsParentUntilStopped: canceling the context a job was
// started from does not stop it; its stop function does, and returns only
// once the job has returned.
func TestStartOutlivesItsParentUntilStopped(t *testing.T) {
	parent, cancel := context.WithCancel(context.Background())
	var running, returned atomic.Bool
	stop := Start(parent, func(ctx context.Context) {
		running.Store(true)
		<-ctx.Done()
		time.Sleep(20 * time.Millisecond) // a job finishing its round
		returned.Store(true)
	})
	cancel()
	time.Sleep(20 * time.Millisecond)
	if !running.Load() || returned.Load() {
		t.Fatalf("after the parent was canceled: running %t, returned %t; want running", running.Load(), returned.Load())
	}
	stop()
	if !returned.Load() {
		t.Fatal("stop returned before the job did")
	}
	stop() // a second call is harmless
}

// TestStackStopsNewestFirst: jobs stop in the reverse order of their
// start, each after the one before it returned.
func TestStackStopsNewestFirst(t *testing.T) {
	var s Stack
	var order []string
	for _, name := range []string{"pool", "log", "notifier"} {
		s.Push(name, func() { order = append(order, name) })
	}
	s.Stop(nil)
	if !slices.Equal(order, []string{"notifier", "log", "pool"}) {
		t.Fatalf("stopped in order %v, want newest first", order)
	}
	s.Stop(nil)
	if len(order) != 3 {
		t.Fatalf("a second Stop stopped again: %v", order)
	}
}

// TestStackLogsDurationInMilliseconds: each stop is logged with its time
// as duration_ms, the field every component logs durations under.
func TestStackLogsDurationInMilliseconds(t *testing.T) {
	var logs bytes.Buffer
	var s Stack
	s.Push("pool", func() { time.Sleep(5 * time.Millisecond) })
	s.Stop(slog.New(slog.NewJSONHandler(&logs, nil)))
	var line map[string]any
	if err := json.Unmarshal(logs.Bytes(), &line); err != nil {
		t.Fatalf("log line %q: %v", logs.String(), err)
	}
	if ms, ok := line["duration_ms"].(float64); line["msg"] != "stopped" || line["job"] != "pool" || !ok || ms < 5 {
		t.Fatalf("stop log line = %v, want duration_ms of at least 5", line)
	}
}

// TestEveryRunsUntilItsContextEnds: Every calls do once an interval, not
// at once, and returns when its context ends, calling do no more.
func TestEveryRunsUntilItsContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var calls atomic.Int64
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		Every(ctx, 10*time.Millisecond, func() {
			if calls.Add(1) == 3 {
				cancel()
			}
		})
	}()
	if n := calls.Load(); n != 0 {
		t.Fatalf("do was called %d times at once, want after the first interval", n)
	}
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("Every did not return after its context ended")
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("do was called %d times, want 3: none after the context ended", n)
	}
}

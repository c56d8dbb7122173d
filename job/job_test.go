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

// Package job runs the background work a process owns: Start runs a job
// until its stop function is called and returns that function, which
// waits until the job has returned; a Stack stops many in a known order.
//
// A job's context is canceled by its stop function only, never by the
// context it was started from: a service draining its requests after
// SIGTERM keeps the jobs those requests rely on until it stops them.
package job

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Start runs run in its own goroutine with a context that keeps ctx's
// values but not its cancellation, and returns the function that cancels
// that context and waits until run has returned. Stop may be called more
// than once.
func Start(ctx context.Context, run func(ctx context.Context)) (stop func()) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		run(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}

// Every calls do every interval, the first time one interval after it is
// called, until ctx ends; it returns then. A round that outlasts the
// interval delays the next rather than running beside it.
func Every(ctx context.Context, interval time.Duration, do func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		do()
	}
}

// Stack holds stop functions and stops them newest first: whatever was
// started later may depend on what was started earlier, never the
// reverse. The zero value is empty and ready to use.
type Stack struct {
	mu    sync.Mutex
	steps []step
}

type step struct {
	name string
	stop func()
}

// Push adds stop, named for the shutdown log, to the top of the stack.
func (s *Stack) Push(name string, stop func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.steps = append(s.steps, step{name, stop})
}

// Stop calls every stop function, newest first, each after the previous
// one returned, logging each ("stopped", with the job's name and how long
// it took to stop, as duration_ms). The stack is empty afterwards.
func (s *Stack) Stop(log *slog.Logger) {
	s.mu.Lock()
	steps := s.steps
	s.steps = nil
	s.mu.Unlock()
	for i := len(steps) - 1; i >= 0; i-- {
		t0 := time.Now()
		steps[i].stop()
		if log != nil {
			log.Info("stopped", "job", steps[i].name, "duration_ms", float64(time.Since(t0).Microseconds())/1000)
		}
	}
}

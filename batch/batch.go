// Package batch merges concurrent calls into batched calls: the pattern of
// group commit, for any dependency whose per-call cost dwarfs its per-item
// cost (a Vault Transit batch_input call, a PostgreSQL transaction).
//
// While one batch is in flight, calls that arrive queue up; they go together
// in the next batch. A lone call is sent at once, so batching adds no
// latency when there is nothing to merge with. At most one batch per Queue
// is in flight at a time, which also bounds the load a Queue puts on its
// dependency.
package batch

import (
	"context"
	"sync"
	"time"
)

// Func performs one batch. It returns one result per request, in order, or
// an error that fails the whole batch.
type Func[Req, Res any] func(ctx context.Context, reqs []Req) ([]Res, error)

// Queue merges concurrent Do calls into batches of at most Max requests. The
// zero value is not usable; set Fn.
type Queue[Req, Res any] struct {
	// Fn performs a batch. Its context is not any one caller's: a caller
	// that goes away must not cancel the others' work. It carries Timeout.
	Fn Func[Req, Res]
	// Max bounds a batch; 0 means 256.
	Max int
	// MinInterval is the least time between the starts of two batches.
	// Under load it trades a little latency for fewer, larger batches;
	// an idle queue still sends a lone call at once.
	MinInterval time.Duration
	// Timeout bounds one batch; 0 means 30 s.
	Timeout time.Duration

	mu        sync.Mutex
	pending   []*call[Req, Res]
	running   bool
	lastStart time.Time
}

type call[Req, Res any] struct {
	req  Req
	res  Res
	err  error
	done chan struct{}
}

const (
	defaultMax     = 256
	defaultTimeout = 30 * time.Second
)

// Do queues req, waits for the batch that carries it, and returns its
// result. Once queued, it waits for the outcome even if ctx ends: the batch
// may already be running, and a caller that gave up could not know whether
// its request was performed (a transaction committed, say). The wait is
// bounded by Timeout; ctx passes its values, not its cancellation, to Fn.
func (q *Queue[Req, Res]) Do(ctx context.Context, req Req) (Res, error) {
	c := &call[Req, Res]{req: req, done: make(chan struct{})}
	q.mu.Lock()
	q.pending = append(q.pending, c)
	lead := !q.running
	q.running = true
	q.mu.Unlock()
	if lead {
		// This caller starts the flusher; the flusher goroutine lives only
		// while there is queued work.
		go q.flush(context.WithoutCancel(ctx))
	}
	<-c.done
	return c.res, c.err
}

// flush sends batches until nothing is queued.
func (q *Queue[Req, Res]) flush(ctx context.Context) {
	max := q.Max
	if max <= 0 {
		max = defaultMax
	}
	timeout := q.Timeout
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	for {
		q.mu.Lock()
		wait := time.Until(q.lastStart.Add(q.MinInterval))
		q.mu.Unlock()
		if wait > 0 {
			time.Sleep(wait)
		}
		q.mu.Lock()
		n := min(len(q.pending), max)
		if n == 0 {
			q.running = false
			q.mu.Unlock()
			return
		}
		group := q.pending[:n:n]
		q.pending = append([]*call[Req, Res](nil), q.pending[n:]...)
		q.lastStart = time.Now()
		q.mu.Unlock()

		reqs := make([]Req, len(group))
		for i, c := range group {
			reqs[i] = c.req
		}
		bctx, cancel := context.WithTimeout(ctx, timeout)
		res, err := q.Fn(bctx, reqs)
		cancel()
		if err == nil && len(res) != len(group) {
			panic("batch: Fn returned a result count that does not match its requests")
		}
		for i, c := range group {
			if err != nil {
				c.err = err
			} else {
				c.res = res[i]
			}
			close(c.done)
		}
	}
}

// Package batch merges concurrent calls into batched calls: the pattern of
// group commit, for any dependency whose per-call cost dwarfs its per-item
// cost (a PostgreSQL transaction, a Vault Transit batch_input call, an HTTP
// call to a custodian). It is the one batching primitive of the mediator:
// the audit log's group commit, Transit wraps, escrow rows and share
// forwarding all use it.
//
// Add queues a request and returns a Future that resolves when the batch
// carrying it is done. While one batch is in flight, requests that arrive
// queue up and go together in the next. A lone request is sent at once, so
// batching adds no latency when there is nothing to merge with. At most one
// batch per Queue is in flight at a time, which also bounds the load a Queue
// puts on its dependency.
package batch

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Func performs one batch. It returns one result per request, in order, or
// an error that fails the whole batch.
type Func[Req, Res any] func(ctx context.Context, reqs []Req) ([]Res, error)

// Queue merges concurrent requests into batches of at most Max weight. The
// zero value is not usable; set Fn. A Queue must not be copied after first
// use.
type Queue[Req, Res any] struct {
	// Fn performs a batch. Its context is not any one caller's: a caller
	// that goes away must not cancel the others' work. It carries Timeout.
	Fn Func[Req, Res]
	// Max bounds a batch's total weight; 0 means 256. A request heavier
	// than Max goes in a batch of its own.
	Max int
	// Weight is a request's share of Max; nil counts every request as 1
	// (the audit log weighs a request by its entries).
	Weight func(Req) int
	// MinInterval is the least time between the starts of two batches.
	// Under load it trades a little latency for fewer, larger batches;
	// an idle queue still sends a lone request at once.
	MinInterval time.Duration
	// Timeout bounds one batch; 0 means 30 s.
	Timeout time.Duration

	mu        sync.Mutex
	pending   []*Future[Req, Res]
	running   bool          // a flusher goroutine is sending batches
	idle      chan struct{} // closed when the flusher stops, if Close waits for it
	closed    bool
	lastStart time.Time
}

// Future is a queued request's outcome.
type Future[Req, Res any] struct {
	req  Req
	res  Res
	err  error
	done chan struct{}
}

// Wait blocks until the batch carrying the request is done and returns the
// request's result. It waits even if the caller's context has ended: the
// batch may already be running, and a caller that gave up could not know
// whether its request was performed (a transaction committed, say). The
// wait is bounded by the Queue's Timeout.
func (f *Future[Req, Res]) Wait() (Res, error) {
	<-f.done
	return f.res, f.err
}

// Done is closed when the result is ready.
func (f *Future[Req, Res]) Done() <-chan struct{} { return f.done }

const (
	defaultMax     = 256
	defaultTimeout = 30 * time.Second
)

// ErrClosed is the outcome of a request added after Close.
var ErrClosed = errors.New("batch: queue closed")

// Add queues req and returns its Future. ctx passes its values, not its
// cancellation, to Fn.
func (q *Queue[Req, Res]) Add(ctx context.Context, req Req) *Future[Req, Res] {
	return q.AddAll(ctx, []Req{req})[0]
}

// AddAll queues reqs together, so that they go in the same batch as far as
// Max allows (Add one by one, the first may leave alone), and returns
// their Futures in order.
func (q *Queue[Req, Res]) AddAll(ctx context.Context, reqs []Req) []*Future[Req, Res] {
	fs := make([]*Future[Req, Res], len(reqs))
	for i, req := range reqs {
		fs[i] = &Future[Req, Res]{req: req, done: make(chan struct{})}
	}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		for _, f := range fs {
			f.err = ErrClosed
			close(f.done)
		}
		return fs
	}
	if len(fs) == 0 {
		q.mu.Unlock()
		return fs
	}
	q.pending = append(q.pending, fs...)
	lead := !q.running
	q.running = true
	q.mu.Unlock()
	if lead {
		// This caller starts the flusher; the flusher goroutine lives only
		// while there is queued work.
		go q.flush(context.WithoutCancel(ctx))
	}
	return fs
}

// Do is Add followed by Wait.
func (q *Queue[Req, Res]) Do(ctx context.Context, req Req) (Res, error) {
	return q.Add(ctx, req).Wait()
}

// Close refuses new requests (their futures resolve with ErrClosed) and
// waits until every request already queued has been performed and
// answered, or ctx ends. Close it only once nothing needs it: for the audit
// log, after the HTTP server has drained.
func (q *Queue[Req, Res]) Close(ctx context.Context) error {
	q.mu.Lock()
	q.closed = true
	if !q.running {
		q.mu.Unlock()
		return nil
	}
	if q.idle == nil {
		q.idle = make(chan struct{})
	}
	idle := q.idle
	q.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// flush sends batches until nothing is queued.
func (q *Queue[Req, Res]) flush(ctx context.Context) {
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
		n := q.take()
		if n == 0 {
			q.running = false
			if q.idle != nil {
				close(q.idle)
				q.idle = nil
			}
			q.mu.Unlock()
			return
		}
		group := q.pending[:n:n]
		q.pending = append([]*Future[Req, Res](nil), q.pending[n:]...)
		q.lastStart = time.Now()
		q.mu.Unlock()

		reqs := make([]Req, len(group))
		for i, f := range group {
			reqs[i] = f.req
		}
		bctx, cancel := context.WithTimeout(ctx, timeout)
		res, err := q.Fn(bctx, reqs)
		cancel()
		if err == nil && len(res) != len(group) {
			panic("batch: Fn returned a result count that does not match its requests")
		}
		for i, f := range group {
			if err != nil {
				f.err = err
			} else {
				f.res = res[i]
			}
			close(f.done)
		}
	}
}

// take returns how many pending requests, from the front, make the next
// batch: as many as fit in Max, and always at least one. q.mu is held.
func (q *Queue[Req, Res]) take() int {
	max := q.Max
	if max <= 0 {
		max = defaultMax
	}
	total := 0
	for i, f := range q.pending {
		w := 1
		if q.Weight != nil {
			w = q.Weight(f.req)
		}
		if i > 0 && total+w > max {
			return i
		}
		total += w
	}
	return len(q.pending)
}

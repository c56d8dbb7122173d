package audit

import (
	"context"
	"errors"
	"time"
)

// Batcher merges concurrent appends into shared transactions: group commit.
// While one transaction runs, the requests that arrive queue up and go
// together in the next, so the sequencer lock and the commit are paid once
// per group instead of once per request. Records are canonicalized by each
// caller, in parallel, before they queue. Each caller still gets its
// answer only after the transaction holding its entries has committed, and
// a failed transaction fails every request in it: nothing is acknowledged
// that is not durable.
type Batcher struct {
	store      *Store
	maxEntries int
	reqs       chan *appendReq
	stopped    chan struct{} // closed when Run returns
}

type appendReq struct {
	ctx      context.Context
	entries  []Entry
	prepared []preparedLeaf
	done     chan appendResult
}

type appendResult struct {
	appended []Appended
	err      error
}

// maxGroupEntries bounds one group transaction: large enough to amortize
// the commit, small enough that one group's latency stays well under a
// second.
const maxGroupEntries = 10000

// groupCommitTimeout bounds one group transaction: far above a healthy
// commit (tens of milliseconds), below the server's write timeout.
const groupCommitTimeout = 30 * time.Second

// ErrStopped is returned by Append after the batcher's Run has returned.
var ErrStopped = errors.New("audit: batcher stopped")

// NewBatcher returns a Batcher over store. Call Run to start it.
func NewBatcher(store *Store) *Batcher {
	return &Batcher{store: store, maxEntries: maxGroupEntries, reqs: make(chan *appendReq), stopped: make(chan struct{})}
}

// Append appends entries as Store.Append does, possibly in one transaction
// with other callers' entries.
func (b *Batcher) Append(ctx context.Context, entries []Entry) ([]Appended, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	prepared, err := prepare(entries)
	if err != nil {
		return nil, err
	}
	req := &appendReq{ctx: ctx, entries: entries, prepared: prepared, done: make(chan appendResult, 1)}
	select {
	case b.reqs <- req:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-b.stopped:
		return nil, ErrStopped
	}
	// Once queued, wait for the outcome even if ctx ends: the entries may
	// already be committing, and the answer must say so.
	res := <-req.done
	return res.appended, res.err
}

// Run serves appends until ctx ends. Stop it only after the HTTP server has
// drained, so in-flight requests are answered.
func (b *Batcher) Run(ctx context.Context) {
	defer close(b.stopped)
	var carry *appendReq
	for {
		first := carry
		carry = nil
		if first == nil {
			select {
			case <-ctx.Done():
				b.drainStopped()
				return
			case first = <-b.reqs:
			}
		}
		group := []*appendReq{first}
		n := len(first.entries)
	gather:
		for n < b.maxEntries {
			select {
			case r := <-b.reqs:
				if n+len(r.entries) > b.maxEntries {
					carry = r
					break gather
				}
				group = append(group, r)
				n += len(r.entries)
			default:
				break gather
			}
		}
		b.commit(ctx, group, n)
	}
}

func (b *Batcher) commit(ctx context.Context, group []*appendReq, n int) {
	entries := make([]Entry, 0, n)
	prepared := make([]preparedLeaf, 0, n)
	for _, r := range group {
		entries = append(entries, r.entries...)
		prepared = append(prepared, r.prepared...)
	}
	// The group's transaction is not tied to any one caller's context: a
	// caller that goes away must not roll back the others' entries. It has
	// a deadline of its own, so a hung database turns into errors (503s)
	// rather than requests that wait forever.
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), groupCommitTimeout)
	defer cancel()
	appended, err := b.store.appendPrepared(tctx, entries, prepared)
	off := 0
	for _, r := range group {
		if err != nil {
			r.done <- appendResult{err: err}
			continue
		}
		r.done <- appendResult{appended: appended[off : off+len(r.entries)]}
		off += len(r.entries)
	}
}

// drainStopped answers requests that raced with shutdown.
func (b *Batcher) drainStopped() {
	for {
		select {
		case r := <-b.reqs:
			r.done <- appendResult{err: ErrStopped}
		default:
			return
		}
	}
}

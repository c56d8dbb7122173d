package policy

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Reloader serves the policies of a directory and replaces them when the
// files change (Watch) or on demand (Reload, which the service calls on
// SIGHUP). A policy that fails to load never replaces a working one: the
// engine in service stays until a good one compiles. It is safe for
// concurrent use.
type Reloader struct {
	dir string
	log *slog.Logger
	// OnReload, if set, is called after every reload attempt with the
	// outcome (err nil: the new revision now serves).
	OnReload func(revision string, err error)

	mu  sync.Mutex // serialises reloads
	cur atomic.Pointer[Engine]
}

// NewReloader loads the policies of dir (the embedded ones when dir is
// empty). It fails if they do not load: the service must not start without
// a working policy.
func NewReloader(ctx context.Context, dir string, log *slog.Logger) (*Reloader, error) {
	e, err := Load(ctx, dir)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Reloader{dir: dir, log: log}
	r.cur.Store(e)
	return r, nil
}

// Engine returns the engine serving now.
func (r *Reloader) Engine() *Engine { return r.cur.Load() }

// Revision is the serving engine's revision.
func (r *Reloader) Revision() string { return r.Engine().Revision() }

// Authorize decides with the serving engine.
func (r *Reloader) Authorize(ctx context.Context, in AuthzInput) (bool, error) {
	return r.Engine().Authorize(ctx, in)
}

// DecideRelease decides with the serving engine.
func (r *Reloader) DecideRelease(ctx context.Context, in ReleaseInput) (Decision, error) {
	return r.Engine().DecideRelease(ctx, in)
}

// Reload loads the directory again. On success the new engine serves from
// the next call on and Reload reports whether the revision changed; on
// failure the serving engine is kept and the error returned. With the
// embedded policies there is nothing to reload.
func (r *Reloader) Reload(ctx context.Context) (changed bool, err error) {
	if r.dir == "" {
		return false, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	e, err := Load(ctx, r.dir)
	if err != nil {
		r.log.Error("policy reload failed; the previous policy keeps serving", "dir", r.dir,
			"serving_revision", r.Revision(), "err", err)
		if r.OnReload != nil {
			r.OnReload("", err)
		}
		return false, err
	}
	old := r.cur.Swap(e)
	changed = old.Revision() != e.Revision()
	if changed {
		r.log.Info("policy reloaded", "dir", r.dir, "revision", e.Revision(), "previous_revision", old.Revision())
	}
	if r.OnReload != nil {
		r.OnReload(e.Revision(), nil)
	}
	return changed, nil
}

// Watch reloads whenever the directory's policy files change, checking
// every interval, until ctx ends. It compares the files' revision, not
// their times, so an edit that restores the same text is no change; a
// broken edit is reported once per distinct text, and the previous policy
// keeps serving.
func (r *Reloader) Watch(ctx context.Context, interval time.Duration) {
	if r.dir == "" {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	seen := r.Revision()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		files, err := readFiles(os.DirFS(r.dir))
		if err != nil {
			continue // a directory being replaced; look again next tick
		}
		if rev := revision(files); rev != seen {
			seen = rev
			_, _ = r.Reload(ctx)
		}
	}
}

// ReloadMetrics registers mediator_policy_reloads_total{result} and
// mediator_policy_info{revision} on reg and returns the OnReload callback
// that keeps them.
func ReloadMetrics(reg prometheus.Registerer, serving string) func(revision string, err error) {
	reloads := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mediator_policy_reloads_total",
		Help: "Policy reload attempts by result: ok (now serving), refused (its data or probes would weaken dual control), failed (it did not load); the previous policy keeps serving unless ok.",
	}, []string{"result"})
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "mediator_policy_info",
		Help: "1 for the revision of the policy serving now.",
	}, []string{"revision"})
	reg.MustRegister(reloads, info)
	info.WithLabelValues(serving).Set(1)
	var mu sync.Mutex
	return func(revision string, err error) {
		if err != nil {
			var de *DataError
			var pe *ProbeError
			if errors.As(err, &de) || errors.As(err, &pe) {
				// A policy that would weaken dual control, refused.
				reloads.WithLabelValues("refused").Inc()
				return
			}
			reloads.WithLabelValues("failed").Inc()
			return
		}
		reloads.WithLabelValues("ok").Inc()
		mu.Lock()
		defer mu.Unlock()
		if revision != serving {
			info.DeleteLabelValues(serving)
			info.WithLabelValues(revision).Set(1)
			serving = revision
		}
	}
}

// ReleaseRule is the serving release policy's approval rule: how many
// distinct approvers and which roles between them (from its data.json).
func (r *Reloader) ReleaseRule() (minApprovals int, requiredRoles []string) {
	return r.cur.Load().ReleaseRule()
}

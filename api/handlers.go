package api

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"
)

// probeTimeout bounds each readiness probe so /readyz answers promptly even
// when a dependency hangs.
const probeTimeout = 2 * time.Second

func (s *server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// ErrNotConfigured, returned by a readiness probe, says its dependency is
// not configured at all (a missing flag) rather than not answering.
var ErrNotConfigured = errors.New("not configured")

// readyz probes every dependency in parallel. 200 when all answer; otherwise
// 503 naming the ones that do not, or are not configured, with Retry-After.
// The reasons go to the log, not the response.
func (s *server) readyz(w http.ResponseWriter, r *http.Request) {
	type result struct {
		name string
		err  error
	}
	results := make([]result, len(s.ready))
	var wg sync.WaitGroup
	for i, c := range s.ready {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(r.Context(), probeTimeout)
			defer cancel()
			results[i] = result{c.Name, c.Probe(ctx)}
		}()
	}
	wg.Wait()
	checks := make(map[string]string, len(results))
	var down, unconfigured []string
	var details []any
	for _, res := range results {
		switch {
		case res.err == nil:
			checks[res.name] = "ok"
			s.metrics.readiness.WithLabelValues(res.name).Set(1)
			continue
		case errors.Is(res.err, ErrNotConfigured):
			unconfigured = append(unconfigured, res.name)
			details = append(details, map[string]string{"dependency": res.name, "status": "not_configured"})
		default:
			down = append(down, res.name)
			details = append(details, map[string]string{"dependency": res.name, "status": "down"})
		}
		s.metrics.readiness.WithLabelValues(res.name).Set(0)
		s.log.Warn("readiness probe failed", "dependency", res.name, "err", res.err)
	}
	if len(details) > 0 {
		var msg []string
		if len(down) > 0 {
			msg = append(msg, strings.Join(down, ", ")+" unreachable")
		}
		if len(unconfigured) > 0 {
			msg = append(msg, strings.Join(unconfigured, ", ")+" not configured")
		}
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, codeNotReady, strings.Join(msg, "; "), details...)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "checks": checks})
}

// whoami returns the verified caller, so a client can check its token.
func (s *server) whoami(w http.ResponseWriter, r *http.Request) {
	p, ok := PrincipalFrom(r.Context())
	if !ok {
		// guard lets no unauthenticated call reach here; refuse rather
		// than answer for nobody if the policy is ever changed to.
		unauthenticated(w, "a bearer token is required")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"subject": p.Subject, "roles": p.Roles})
}

package api

import (
	"context"
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

// readyz probes every dependency in parallel. 200 when all answer; otherwise
// 503 naming the ones that do not, with Retry-After. The reasons go to the
// log, not the response.
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
	var down []string
	for _, res := range results {
		if res.err != nil {
			checks[res.name] = "down"
			down = append(down, res.name)
			s.metrics.readiness.WithLabelValues(res.name).Set(0)
			s.log.Warn("readiness probe failed", "dependency", res.name, "err", res.err)
		} else {
			checks[res.name] = "ok"
			s.metrics.readiness.WithLabelValues(res.name).Set(1)
		}
	}
	if len(down) > 0 {
		w.Header().Set("Retry-After", "5")
		details := make([]any, 0, len(down))
		for _, d := range down {
			details = append(details, map[string]string{"dependency": d, "status": "down"})
		}
		writeError(w, http.StatusServiceUnavailable, codeNotReady, strings.Join(down, ", ")+" unreachable", details...)
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

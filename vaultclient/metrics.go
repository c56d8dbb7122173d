package vaultclient

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics times every call to Vault by server and operation:
// mediator_vault_request_seconds{server,op} and
// mediator_vault_errors_total{server,op,reason}. The operation is the first
// two path segments after /v1/ (mediator-transit/encrypt, mediator-kv/data,
// sys/health, auth/approle): never a key name, an escrow id or a token.
type Metrics struct {
	latency *prometheus.HistogramVec
	errors  *prometheus.CounterVec
}

// NewMetrics registers the Vault metric families on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mediator_vault_request_seconds",
			Help:    "Vault call latency by server (host:port) and operation (mount and endpoint).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"server", "op"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mediator_vault_errors_total",
			Help: "Failed Vault calls by server, operation and reason (unreachable, or the HTTP status: 403, 429, 500, 503 …).",
		}, []string{"server", "op", "reason"}),
	}
	reg.MustRegister(m.latency, m.errors)
	return m
}

// vaultOp names a Vault API path by its first two segments after /v1/.
func vaultOp(path string) string {
	p := strings.TrimPrefix(path, "/v1/")
	parts := strings.SplitN(p, "/", 3)
	if len(parts) >= 2 {
		return parts[0] + "/" + parts[1]
	}
	return parts[0]
}

// instrumented wraps a transport with the metrics.
type instrumented struct {
	base http.RoundTripper
	m    *Metrics
}

func (t instrumented) RoundTrip(req *http.Request) (*http.Response, error) {
	server, op := req.URL.Host, vaultOp(req.URL.Path)
	t0 := time.Now()
	resp, err := t.base.RoundTrip(req)
	t.m.latency.WithLabelValues(server, op).Observe(time.Since(t0).Seconds())
	switch {
	case err != nil:
		t.m.errors.WithLabelValues(server, op, "unreachable").Inc()
	case resp.StatusCode >= 400 && resp.StatusCode != http.StatusNotFound:
		// 404 is an answer (a share that is not there), not a failure.
		t.m.errors.WithLabelValues(server, op, strconv.Itoa(resp.StatusCode)).Inc()
	}
	return resp, err
}

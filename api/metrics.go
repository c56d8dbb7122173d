package api

import (
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the HTTP-level metric families. Labels carry route patterns,
// methods, status codes and decisions only: never a path with ids in it, a
// subject, or a token.
type Metrics struct {
	Registry *prometheus.Registry

	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	inflight  prometheus.Gauge
	authz     *prometheus.CounterVec
	readiness *prometheus.GaugeVec

	rateLimited *prometheus.CounterVec

	ingestInFlight   prometheus.Gauge
	ingestOverloaded prometheus.Counter

	collectors []prometheus.Collector
}

// NewMetrics registers the mediator's HTTP metrics, the Go runtime and
// process collectors, and mediator_build_info on a new registry.
func NewMetrics(version string) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mediator_http_requests_total",
			Help: "HTTP requests by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mediator_http_request_duration_seconds",
			Help:    "HTTP request latency by route pattern and method.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "method"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mediator_http_requests_in_flight",
			Help: "HTTP requests being served now.",
		}),
		authz: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mediator_authz_decisions_total",
			Help: "Authorization outcomes: allow, deny (403), unauthenticated (401), error.",
		}, []string{"route", "result"}),
		readiness: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mediator_dependency_up",
			Help: "1 when the dependency answered the last readiness probe, else 0.",
		}, []string{"dependency"}),
	}
	m.rateLimited = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mediator_rate_limited_total",
		Help: "Requests refused with 429 because their identity exceeded its rate, by route pattern.",
	}, []string{"route"})
	m.ingestInFlight = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "mediator_ingest_inflight_bytes",
		Help: "Bytes of ingest request bodies admitted and not yet answered (bounded by --ingest-inflight-bytes).",
	})
	m.ingestOverloaded = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "mediator_ingest_overloaded_total",
		Help: "Ingest requests refused with 503 overloaded because the in-flight byte budget stayed full.",
	})
	goVersion, revision := "unknown", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				revision = s.Value
			}
		}
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "mediator_build_info",
		Help:        "Always 1; labels name the build.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": goVersion, "revision": revision},
	})
	build.Set(1)
	m.collectors = []prometheus.Collector{m.requests, m.duration, m.inflight, m.authz, m.readiness, build, m.rateLimited,
		m.ingestInFlight, m.ingestOverloaded,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})}
	reg.MustRegister(m.collectors...)
	return m
}

// Collectors returns the collectors NewMetrics registered, so a test can
// list every family the service exports (a registry cannot).
func (m *Metrics) Collectors() []prometheus.Collector { return m.collectors }

package api

import (
	"runtime/debug"
	"sync/atomic"
	"time"

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

	eventsAccepted  *prometheus.CounterVec
	eventsDuplicate prometheus.Counter
	eventsRejected  *prometheus.CounterVec
	downgrades      *prometheus.CounterVec
	appendLatency   prometheus.Histogram
	treeSize        prometheus.Gauge
	checkpointTime  prometheus.Gauge
	checkpointSize  prometheus.Gauge
	inconsistent    prometheus.Counter
	rateLimited     *prometheus.CounterVec
	maxTreeSize     atomic.Int64 // what treeSize shows

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
	m.eventsAccepted = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mediator_events_accepted_total",
		Help: "Events appended to the audit log, by kind, transport and status.",
	}, []string{"kind", "transport", "status"})
	m.eventsDuplicate = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "mediator_events_duplicate_total",
		Help: "Events resent with an event_id already in the log (not appended again).",
	})
	m.eventsRejected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mediator_events_rejected_total",
		Help: "Events refused, by the first problem's reason code.",
	}, []string{"reason"})
	m.downgrades = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mediator_downgrades_total",
		Help: "Accepted events that record a transport downgrade, by from and to transport.",
	}, []string{"from", "to"})
	m.appendLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "mediator_audit_append_batch_seconds",
		Help:    "Time to append one request's batch, lock to commit.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	})
	m.treeSize = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "mediator_audit_tree_size",
		Help: "Entries in the audit log, as last seen by this process.",
	})
	m.checkpointTime = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "mediator_audit_checkpoint_timestamp_seconds",
		Help: "Unix time of the latest checkpoint this process signed; checkpoint age is time() minus this.",
	})
	m.checkpointSize = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "mediator_audit_checkpoint_tree_size",
		Help: "Tree size of the latest checkpoint this process signed.",
	})
	m.inconsistent = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "mediator_audit_consistency_failures_total",
		Help: "Checkpoints refused because the stored tree no longer extends the latest signed one (history rewritten in the database).",
	})
	m.rateLimited = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mediator_rate_limited_total",
		Help: "Requests refused with 429 because their identity exceeded its rate, by route pattern.",
	}, []string{"route"})
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
	m.collectors = []prometheus.Collector{m.requests, m.duration, m.inflight, m.authz, m.readiness, build,
		m.eventsAccepted, m.eventsDuplicate, m.eventsRejected, m.downgrades, m.appendLatency,
		m.treeSize, m.checkpointTime, m.checkpointSize, m.inconsistent, m.rateLimited,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})}
	reg.MustRegister(m.collectors...)
	return m
}

// Collectors returns the collectors NewMetrics registered, so a test can
// list every family the service exports (a registry cannot).
func (m *Metrics) Collectors() []prometheus.Collector { return m.collectors }

// treeSizeSeen raises the tree size gauge to n; it never lowers it, so
// concurrent requests answering out of order cannot move it backwards.
func (m *Metrics) treeSizeSeen(n int64) {
	for {
		cur := m.maxTreeSize.Load()
		if n <= cur {
			return
		}
		if m.maxTreeSize.CompareAndSwap(cur, n) {
			m.treeSize.Set(float64(n))
			return
		}
	}
}

// CheckpointSigned records a new checkpoint (the checkpointer calls it).
func (m *Metrics) CheckpointSigned(size int64, at time.Time) {
	m.checkpointSize.Set(float64(size))
	m.checkpointTime.Set(float64(at.UnixNano()) / 1e9)
	m.treeSizeSeen(size)
}

// CheckpointInconsistent counts a checkpoint refused over a rewritten
// history (the checkpointer calls it).
func (m *Metrics) CheckpointInconsistent() { m.inconsistent.Inc() }

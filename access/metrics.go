package access

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mediatorhq/mediator/governance"
	"github.com/mediatorhq/mediator/invalid"
	"github.com/mediatorhq/mediator/policy"
)

// Metrics are the workflow's metric families. Labels carry states,
// outcomes and results only: never a request id, a subject or a case.
type Metrics struct {
	transitions     *prometheus.CounterVec
	approvals       *prometheus.CounterVec
	decisions       *prometheus.CounterVec
	decisionLatency prometheus.Histogram
	releaseLatency  prometheus.Histogram
}

// StatusCounter counts requests by their state now (PGStore).
type StatusCounter interface {
	CountByStatus(ctx context.Context) (map[Status]int, error)
}

// NewMetrics registers the workflow's metrics on reg. If counts is not nil,
// mediator_access_requests_by_status{status} reports how many requests are in each
// state when scraped.
func NewMetrics(reg prometheus.Registerer, counts StatusCounter) *Metrics {
	m := &Metrics{
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mediator_access_requests_total",
			Help: "Requests entering a state: pending (filed), released, denied (locked after repeated denials), expired, revoked.",
		}, []string{"status"}),
		approvals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mediator_access_approvals_total",
			Help: "Approval submissions by result: recorded, self_approval, bad_signature, unknown_approver, unsigned_request, duplicate, final, invalid, error.",
		}, []string{"result"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mediator_policy_decisions_total",
			Help: "Release decisions by result: allow, deny, error (no decision; the release failed closed).",
		}, []string{"result"}),
		decisionLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mediator_policy_decision_seconds",
			Help:    "Time to evaluate the release policy once.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1},
		}),
		releaseLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mediator_access_release_seconds",
			Help:    "Time to answer a release call: verify approvals, decide, rebuild and seal every key in scope, record.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
	}
	reg.MustRegister(m.transitions, m.approvals, m.decisions, m.decisionLatency, m.releaseLatency)
	if counts != nil {
		reg.MustRegister(statusCollector{counts: counts, desc: prometheus.NewDesc("mediator_access_requests_by_status",
			"Requests in each state now, read from the database at scrape time.", []string{"status"}, nil)})
	}
	return m
}

func (m *Metrics) transition(s Status) {
	if m != nil {
		m.transitions.WithLabelValues(string(s)).Inc()
	}
}

func (m *Metrics) approval(err error) {
	if m == nil {
		return
	}
	result := "recorded"
	switch {
	case err == nil:
	case errors.Is(err, ErrSelfApproval):
		result = "self_approval"
	case errors.Is(err, ErrBadSignature):
		result = "bad_signature"
	case errors.Is(err, governance.ErrUnknownApprover):
		result = "unknown_approver"
	case errors.Is(err, ErrBadOfficerSignature), errors.Is(err, ErrNotOfficer):
		result = "unsigned_request"
	case errors.Is(err, ErrDuplicateApproval):
		result = "duplicate"
	case errors.Is(err, ErrFinal):
		result = "final"
	case isInvalid(err), errors.Is(err, ErrNotFound):
		result = "invalid"
	default:
		result = "error"
	}
	m.approvals.WithLabelValues(result).Inc()
}

// isInvalid reports whether err is input that breaks a rule.
func isInvalid(err error) bool {
	_, ok := invalid.As(err)
	return ok
}

func (m *Metrics) decision(d policy.Decision, err error, took time.Duration) {
	if m == nil {
		return
	}
	result := "deny"
	switch {
	case err != nil:
		result = "error"
	case d.Allow:
		result = "allow"
	}
	m.decisions.WithLabelValues(result).Inc()
	if err == nil {
		m.decisionLatency.Observe(took.Seconds())
	}
}

func (m *Metrics) release(err error, took time.Duration) {
	if m != nil && err == nil {
		m.releaseLatency.Observe(took.Seconds())
	}
}

// statusCollector reads request counts by state at scrape time.
type statusCollector struct {
	counts StatusCounter
	desc   *prometheus.Desc
}

// scrapeTimeout bounds the count query so a slow database cannot stall a
// scrape.
const scrapeTimeout = 2 * time.Second

func (c statusCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c statusCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	counts, err := c.counts.CountByStatus(ctx)
	if err != nil {
		// Leave the family out rather than fail the whole scrape: the
		// database's own health shows in mediator_dependency_up.
		return
	}
	for _, s := range []Status{StatusPending, StatusReleased, StatusDenied, StatusExpired, StatusRevoked} {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts[s]), string(s))
	}
}

package escrow

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mediatorhq/mediator/invalid"
)

// Metrics are the escrow metric families. Labels carry outcomes and
// custodian names only.
type Metrics struct {
	deposits        *prometheus.CounterVec
	depositLatency  prometheus.Histogram
	custodianCalls  *prometheus.HistogramVec
	custodianErrors *prometheus.CounterVec
}

// NewMetrics registers the escrow metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		deposits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mediator_escrow_deposits_total",
			Help: "Key deposits by outcome: created, existing (same key again), conflict, invalid, unavailable, error.",
		}, []string{"outcome"}),
		depositLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mediator_escrow_deposit_seconds",
			Help:    "Time to escrow one key: every custodian stores its sealed share, the escrow is recorded.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		custodianCalls: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mediator_escrow_custodian_seconds",
			Help:    "Time for one custodian service to answer: store a deposit's share (op store), check a release and seal its shares (op release), destroy a share (op destroy).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"custodian", "op"}),
		custodianErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mediator_escrow_custodian_errors_total",
			Help: "Custodian failures by custodian and operation.",
		}, []string{"custodian", "op"}),
	}
	reg.MustRegister(m.deposits, m.depositLatency, m.custodianCalls, m.custodianErrors)
	return m
}

func (m *Metrics) deposit(err error, created bool, d time.Duration) {
	if m == nil {
		return
	}
	outcome := "created"
	switch {
	case err == nil && !created:
		outcome = "existing"
	case errors.Is(err, ErrConflict), errors.Is(err, ErrDestroyed), errors.Is(err, ErrSetMismatch):
		outcome = "conflict"
	case isInvalid(err):
		outcome = "invalid"
	case errors.Is(err, ErrUnavailable):
		outcome = "unavailable"
	case err != nil:
		outcome = "error"
	}
	m.deposits.WithLabelValues(outcome).Inc()
	if err == nil {
		m.depositLatency.Observe(d.Seconds())
	}
}

func (m *Metrics) custodian(name, op string, err error, d time.Duration) {
	if m == nil {
		return
	}
	m.custodianCalls.WithLabelValues(name, op).Observe(d.Seconds())
	if err != nil {
		m.custodianErrors.WithLabelValues(name, op).Inc()
	}
}

// isInvalid reports whether err is input that breaks a rule.
func isInvalid(err error) bool {
	_, ok := invalid.As(err)
	return ok
}

package escrow

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mediatorhq/mediator/invalid"
	"github.com/mediatorhq/mediator/reconcile"
)

// Metrics are the escrow metric families. Labels carry outcomes and
// custodian names only.
type Metrics struct {
	deposits        *prometheus.CounterVec
	depositLatency  prometheus.Histogram
	custodianCalls  *prometheus.HistogramVec
	custodianErrors *prometheus.CounterVec
	findings        *prometheus.GaugeVec
	reconcileRuns   *prometheus.CounterVec
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
	m.findings = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "mediator_escrow_reconcile_findings",
		Help: "Shares the last reconciliation found a custodian disagreeing with the escrows recorded, by custodian and kind: orphan (kept, no escrow), missing (aborted at the custodian, recorded here), mismatch (other sealed bytes).",
	}, []string{"custodian", "kind"})
	m.reconcileRuns = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mediator_escrow_reconcile_runs_total",
		Help: "Reconciliation runs, by outcome: complete, or partial (a custodian's inventory missing or unverified).",
	}, []string{"outcome"})
	reg.MustRegister(m.deposits, m.depositLatency, m.custodianCalls, m.custodianErrors, m.findings, m.reconcileRuns)
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

// reconciled sets the findings gauge from one run, a zero for every
// custodian and kind it found nothing of.
func (m *Metrics) reconciled(custodians []string, findings []reconcile.Finding, failed int) {
	if m == nil {
		return
	}
	n := map[[2]string]int{}
	for _, f := range findings {
		n[[2]string{f.Custodian, f.Kind}]++
	}
	for _, c := range custodians {
		for _, k := range []string{reconcile.KindOrphan, reconcile.KindMissing, reconcile.KindMismatch} {
			m.findings.WithLabelValues(c, k).Set(float64(n[[2]string{c, k}]))
		}
	}
	outcome := "complete"
	if failed > 0 {
		outcome = "partial"
	}
	m.reconcileRuns.WithLabelValues(outcome).Inc()
}

// isInvalid reports whether err is input that breaks a rule.
func isInvalid(err error) bool {
	_, ok := invalid.As(err)
	return ok
}

package access

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

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

	rosterVersionG  prometheus.Gauge
	rosterBrokenC   prometheus.Counter
	liveApprovers   *prometheus.GaugeVec
	quorumLive      prometheus.Gauge
	releaseRuleLive prometheus.Gauge
	rosterRuleLive  prometheus.Gauge
	proposalWaiting prometheus.Gauge
	custodiansMatch prometheus.Gauge
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
			Help: "Approval submissions by result: recorded, self_approval, bad_signature, unknown_approver, duplicate, final, invalid, error.",
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
		rosterVersionG: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mediator_roster_version",
			Help: "The version of the roster in force, verified from the pinned genesis; 0 before the genesis is adopted.",
		}),
		rosterBrokenC: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mediator_roster_chain_invalid_total",
			Help: "Reads of the stored roster chain that did not verify from the pinned genesis: someone edited the database.",
		}),
		liveApprovers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mediator_roster_live_approvers",
			Help: "Approvers of the roster in force who checked in within the liveness window, by role.",
		}, []string{"role"}),
		quorumLive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mediator_roster_quorum_live",
			Help: "1 when the approvers live within the window can still meet both the release rule and the roster rule.",
		}),
		releaseRuleLive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mediator_roster_release_rule_live",
			Help: "1 when live approvers can still meet the release policy's approval rule.",
		}),
		rosterRuleLive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mediator_roster_rule_live",
			Help: "1 when live approvers can still meet the roster's rule for adopting its next version.",
		}),
		proposalWaiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mediator_roster_proposal_waiting_seconds",
			Help: "How long the oldest roster proposal still waiting for signatures has waited; 0 when none waits.",
		}),
		custodiansMatch: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mediator_roster_custodians_match",
			Help: "1 when the custodian set the mediator forwards to (its --custodians file) is the roster's in force.",
		}),
	}
	reg.MustRegister(m.transitions, m.approvals, m.decisions, m.decisionLatency, m.releaseLatency,
		m.rosterVersionG, m.rosterBrokenC, m.liveApprovers, m.quorumLive, m.releaseRuleLive, m.rosterRuleLive, m.proposalWaiting,
		m.custodiansMatch)
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
	case errors.Is(err, ErrUnknownApprover):
		result = "unknown_approver"
	case errors.Is(err, ErrDuplicateApproval):
		result = "duplicate"
	case errors.Is(err, ErrFinal):
		result = "final"
	case errors.Is(err, ErrInvalid), errors.Is(err, ErrNotFound):
		result = "invalid"
	default:
		result = "error"
	}
	m.approvals.WithLabelValues(result).Inc()
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

func (m *Metrics) rosterVersion(v uint64) {
	if m != nil {
		m.rosterVersionG.Set(float64(v))
	}
}

func (m *Metrics) rosterBroken() {
	if m != nil {
		m.rosterBrokenC.Inc()
	}
}

func (m *Metrics) liveness(l Liveness) {
	if m == nil {
		return
	}
	m.liveApprovers.Reset()
	for role, n := range l.LivePerRole {
		m.liveApprovers.WithLabelValues(role).Set(float64(n))
	}
	m.quorumLive.Set(b2f(l.QuorumLive()))
	m.releaseRuleLive.Set(b2f(l.ReleaseLive))
	m.rosterRuleLive.Set(b2f(l.RosterLive))
	m.proposalWaiting.Set(l.OldestProposal.Seconds())
	if l.RosterVersion > 0 {
		m.custodiansMatch.Set(b2f(l.CustodiansMatch))
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
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

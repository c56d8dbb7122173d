package governance

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the roster's metric families. Labels carry roles and
// nothing else: never an approver's id.
type Metrics struct {
	rosterVersionG  prometheus.Gauge
	rosterBrokenC   prometheus.Counter
	liveApprovers   *prometheus.GaugeVec
	quorumLive      prometheus.Gauge
	releaseRuleLive prometheus.Gauge
	rosterRuleLive  prometheus.Gauge
	proposalWaiting prometheus.Gauge
	custodiansMatch prometheus.Gauge
}

// NewMetrics registers the roster's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
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
	reg.MustRegister(m.rosterVersionG, m.rosterBrokenC, m.liveApprovers, m.quorumLive, m.releaseRuleLive, m.rosterRuleLive,
		m.proposalWaiting, m.custodiansMatch)
	return m
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

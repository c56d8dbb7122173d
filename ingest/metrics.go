package ingest

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mediatorhq/mediator/redact"
)

// Metrics are the ingest metric families. Labels carry enumerated values
// only (kind, transport, status, reason codes), never an identifier. A nil
// *Metrics records nothing.
type Metrics struct {
	eventsAccepted  *prometheus.CounterVec
	eventsDuplicate prometheus.Counter
	eventsRejected  *prometheus.CounterVec
	downgrades      *prometheus.CounterVec
}

// NewMetrics registers the ingest metrics on reg; a nil reg records nothing.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	if reg == nil {
		return nil
	}
	m := &Metrics{
		eventsAccepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mediator_events_accepted_total",
			Help: "Events appended to the audit log, by kind, transport and status.",
		}, []string{"kind", "transport", "status"}),
		eventsDuplicate: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mediator_events_duplicate_total",
			Help: "Events resent with an event_id already in the log (not appended again).",
		}),
		eventsRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mediator_events_rejected_total",
			Help: "Events refused, by the first problem's reason code.",
		}, []string{"reason"}),
		downgrades: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mediator_downgrades_total",
			Help: "Accepted events that record a transport downgrade, by from and to transport.",
		}, []string{"from", "to"}),
	}
	reg.MustRegister(m.eventsAccepted, m.eventsDuplicate, m.eventsRejected, m.downgrades)
	return m
}

func (m *Metrics) accepted(rec *redact.Record) {
	if m == nil {
		return
	}
	m.eventsAccepted.WithLabelValues(rec.Kind, rec.Transport, rec.Status).Inc()
	if rec.Downgrade != nil {
		m.downgrades.WithLabelValues(rec.Downgrade.From, rec.Downgrade.To).Inc()
	}
}

func (m *Metrics) rejected(code string) {
	if m == nil {
		return
	}
	m.eventsRejected.WithLabelValues(code).Inc()
}

func (m *Metrics) duplicates(n int) {
	if m == nil || n == 0 {
		return
	}
	m.eventsDuplicate.Add(float64(n))
}

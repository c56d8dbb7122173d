package mirror

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the mirror's metric families. A nil *Metrics records
// nothing.
type Metrics struct {
	next    prometheus.Gauge
	size    prometheus.Gauge
	answers *prometheus.CounterVec
}

// NewMetrics registers the mirror's metrics on reg; a nil reg records
// nothing.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	if reg == nil {
		return nil
	}
	m := &Metrics{
		next: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mediator_mirror_next_entry",
			Help: "The first entry of the log the mirror does not hold yet.",
		}),
		size: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mediator_mirror_checkpoint_size",
			Help: "The size of the latest checkpoint the mirror cosigned: every entry below it is stored.",
		}),
		answers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mediator_mirror_add_entries_total",
			Help: "add-entries requests by HTTP status (200 cosigned, 202 partial, 409 conflict, 422 bad proof).",
		}, []string{"status"}),
	}
	reg.MustRegister(m.next, m.size, m.answers)
	return m
}

func (m *Metrics) stored(next int64) {
	if m != nil {
		m.next.Set(float64(next))
	}
}

func (m *Metrics) cosigned(size int64) {
	if m != nil {
		m.size.Set(float64(size))
	}
}

func (m *Metrics) answered(status int) {
	if m != nil {
		m.answers.WithLabelValues(strconv.Itoa(status)).Inc()
	}
}

package audit

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the log's metric families. A nil *Metrics records nothing.
type Metrics struct {
	appendLatency  prometheus.Histogram
	treeSize       prometheus.Gauge
	checkpointTime prometheus.Gauge
	checkpointSize prometheus.Gauge
	inconsistent   prometheus.Counter
	refused        *prometheus.CounterVec
	witnessAnswers *prometheus.CounterVec
	publishedSize  prometheus.Gauge
	publishedTime  prometheus.Gauge
	owner          prometheus.Gauge
	halt           prometheus.Gauge
	probes         *prometheus.CounterVec
	steps          [numAppendSteps]prometheus.Counter
	mu             sync.Mutex
	maxTreeSize    int64 // what treeSize shows; guarded by mu
}

// NewMetrics registers the log's metrics on reg; a nil reg records nothing.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	if reg == nil {
		return nil
	}
	m := &Metrics{
		appendLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mediator_audit_append_batch_seconds",
			Help:    "Time to append one caller's entries, queue to commit (group commit included).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		treeSize: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mediator_audit_tree_size",
			Help: "Entries in the audit log, as last seen by this process.",
		}),
		checkpointTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mediator_audit_checkpoint_timestamp_seconds",
			Help: "Unix time of the latest checkpoint this process signed; checkpoint age is time() minus this.",
		}),
		checkpointSize: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mediator_audit_checkpoint_tree_size",
			Help: "Tree size of the latest checkpoint this process signed.",
		}),
		inconsistent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mediator_audit_consistency_failures_total",
			Help: "Checkpoints refused because the stored tree no longer extends the latest signed one (history rewritten in the database).",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mediator_audit_checkpoint_refused_total",
			Help: "Stored checkpoint rows the checkpointer refused to build on, by reason: unsigned, ahead_of_tree, rolled_back, not_extending, conflict (someone wrote the checkpoint table).",
		}, []string{"reason"}),
	}
	m.witnessAnswers = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mediator_audit_witness_answers_total",
		Help: "Witnesses' answers to add-checkpoint, by witness and result: cosigned, conflict (a fork or rollback it refused), refused, unavailable, mirror_behind (a mirror still receiving entries).",
	}, []string{"witness", "result"})
	m.publishedSize = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "mediator_audit_published_tree_size",
		Help: "Tree size of the latest checkpoint the witness quorum cosigned (published), as this process saw it.",
	})
	m.publishedTime = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "mediator_audit_published_timestamp_seconds",
		Help: "When this process saw the latest checkpoint reach its witness quorum.",
	})
	m.owner = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "mediator_audit_sequencer_owner",
		Help: "1 while this process holds the checkpointer's lock: it signs checkpoints, asks the witnesses and stores tiles. Across the processes on one database, the sum should be 1.",
	})
	m.halt = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "mediator_audit_halted",
		Help: "1 while the log is halted because the database lost entries that were signed (a lost tail): nothing is appended or signed until an operator acts.",
	})
	m.probes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mediator_audit_duplicate_probes_total",
		Help: "Event ids the duplicate check looked up in the database, by generation: current (every id) and closed (an id a closed generation's filter could not rule out, or a generation whose filter is not stored yet).",
	}, []string{"generation"})
	steps := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mediator_audit_sequencer_seconds_total",
		Help: "Time this process's committed append transactions spent in each step, summed: begin (begin, sequencer lock, halt check, tree size), filters (the event-id filters kept up to date and asked), dedup (the duplicate check's reads of the ids they did not rule out), preload (the right edge's stored hashes), place (leaves and tree hashes), write (COPY), commit. Divide by the entries appended to see which step grows with the log.",
	}, []string{"step"})
	for i, name := range appendStepNames {
		m.steps[i] = steps.WithLabelValues(name)
	}
	reg.MustRegister(steps)
	reg.MustRegister(m.appendLatency, m.treeSize, m.checkpointTime, m.checkpointSize, m.inconsistent, m.refused,
		m.witnessAnswers, m.publishedSize, m.publishedTime, m.owner, m.halt, m.probes)
	return m
}

// duplicateProbes records the event ids one append looked up in the
// database: in the current generation, and in closed ones.
func (m *Metrics) duplicateProbes(current, closed int64) {
	if m == nil {
		return
	}
	m.probes.WithLabelValues("current").Add(float64(current))
	m.probes.WithLabelValues("closed").Add(float64(closed))
}

// sequencerSteps records how long each step of one committed append
// transaction took.
func (m *Metrics) sequencerSteps(spent [numAppendSteps]time.Duration) {
	if m == nil {
		return
	}
	for i, d := range spent {
		m.steps[i].Add(d.Seconds())
	}
}

// appended records one caller's append: its latency and the tree size its
// new entries prove.
func (m *Metrics) appended(out []Appended, d time.Duration) {
	if m == nil {
		return
	}
	m.appendLatency.Observe(d.Seconds())
	var size int64
	for _, a := range out {
		// A new entry at seq n means the tree has at least n+1 leaves; a
		// duplicate's seq says nothing about the tree now.
		if !a.Duplicate && !a.Refused {
			size = max(size, a.Seq+1)
		}
	}
	m.treeSizeSeen(size)
}

// treeSizeSeen raises the tree size gauge to n; it never lowers it, so
// concurrent appends answering out of order cannot move it backwards.
func (m *Metrics) treeSizeSeen(n int64) {
	// The comparison and the gauge's update happen under one lock: with a
	// compare-and-swap alone, a smaller size could be set after a larger.
	m.mu.Lock()
	defer m.mu.Unlock()
	if n > m.maxTreeSize {
		m.maxTreeSize = n
		m.treeSize.Set(float64(n))
	}
}

func (m *Metrics) checkpointSigned(c Checkpoint) {
	if m == nil {
		return
	}
	m.checkpointSize.Set(float64(c.Size))
	m.checkpointTime.Set(float64(c.CreatedAt.UnixNano()) / 1e9)
	m.treeSizeSeen(c.Size)
}

func (m *Metrics) witnessAnswer(witness, result string) {
	if m != nil {
		m.witnessAnswers.WithLabelValues(witness, result).Inc()
	}
}

func (m *Metrics) checkpointPublished(c Checkpoint) {
	if m != nil {
		m.publishedSize.Set(float64(c.Size))
		m.publishedTime.SetToCurrentTime()
	}
}

func (m *Metrics) checkpointRefused(reason string) {
	if m == nil {
		return
	}
	m.refused.WithLabelValues(reason).Inc()
}

func (m *Metrics) checkpointInconsistent() {
	if m == nil {
		return
	}
	m.inconsistent.Inc()
}

func (m *Metrics) leading(held bool) {
	if m != nil {
		m.owner.Set(b2f(held))
	}
}

func (m *Metrics) halted(h bool) {
	if m != nil {
		m.halt.Set(b2f(h))
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

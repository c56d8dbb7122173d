// Package pgmetrics measures the service's PostgreSQL calls: a pgx tracer
// that times every query, COPY and batch by the kind of statement and counts
// failures by SQLSTATE class, and a collector for the pool's connections.
// Labels carry statement kinds and error classes only, never SQL text or
// arguments.
package pgmetrics

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// Tracer is a pgx tracer (queries, COPY, batches) that records
// mediator_postgres_query_seconds{op} and mediator_postgres_errors_total{op,class}.
// Set it as a pool's ConnConfig.Tracer.
type Tracer struct {
	latency *prometheus.HistogramVec
	errors  *prometheus.CounterVec
}

// New registers the PostgreSQL metric families on reg.
func New(reg prometheus.Registerer) *Tracer {
	t := &Tracer{
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mediator_postgres_query_seconds",
			Help:    "PostgreSQL call latency by statement kind (select, insert, copy, batch, begin, commit, …).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"op"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mediator_postgres_errors_total",
			Help: "Failed PostgreSQL calls by statement kind and SQLSTATE class (23 integrity, 40 rollback, 57 operator intervention, …; connection: no answer).",
		}, []string{"op", "class"}),
	}
	reg.MustRegister(t.latency, t.errors)
	return t
}

type startKey struct{}

type started struct {
	at time.Time
	op string
}

// op is the statement's first keyword, lower-cased: its kind, never its text.
func op(sql string) string {
	sql = strings.TrimSpace(sql)
	end := strings.IndexAny(sql, " \t\n(")
	if end < 0 {
		end = len(sql)
	}
	switch w := strings.ToLower(sql[:end]); w {
	case "select", "insert", "update", "delete", "with", "begin", "commit", "rollback", "copy", "create", "alter", "drop", "grant", "set", "show":
		return w
	}
	return "other"
}

// class is the SQLSTATE class of err, or "connection" when the server did
// not answer with one.
func class(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && len(pgErr.Code) >= 2 {
		return pgErr.Code[:2]
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	return "connection"
}

func (t *Tracer) end(ctx context.Context, err error) {
	s, ok := ctx.Value(startKey{}).(started)
	if !ok {
		return
	}
	t.latency.WithLabelValues(s.op).Observe(time.Since(s.at).Seconds())
	if err != nil {
		t.errors.WithLabelValues(s.op, class(err)).Inc()
	}
}

// TraceQueryStart implements pgx.QueryTracer.
func (t *Tracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	return context.WithValue(ctx, startKey{}, started{at: time.Now(), op: op(data.SQL)})
}

// TraceQueryEnd implements pgx.QueryTracer.
func (t *Tracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	t.end(ctx, data.Err)
}

// TraceCopyFromStart implements pgx.CopyFromTracer.
func (t *Tracer) TraceCopyFromStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceCopyFromStartData) context.Context {
	return context.WithValue(ctx, startKey{}, started{at: time.Now(), op: "copy"})
}

// TraceCopyFromEnd implements pgx.CopyFromTracer.
func (t *Tracer) TraceCopyFromEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceCopyFromEndData) {
	t.end(ctx, data.Err)
}

// TraceBatchStart implements pgx.BatchTracer.
func (t *Tracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return context.WithValue(ctx, startKey{}, started{at: time.Now(), op: "batch"})
}

// TraceBatchQuery implements pgx.BatchTracer; a batch is timed as a whole.
func (t *Tracer) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

// TraceBatchEnd implements pgx.BatchTracer.
func (t *Tracer) TraceBatchEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchEndData) {
	t.end(ctx, data.Err)
}

// PoolCollector reports a pool's connections by state when scraped:
// mediator_postgres_pool_connections{state="acquired"|"idle"|"total"} and
// the cumulative waits for a connection.
type PoolCollector struct {
	pool  *pgxpool.Pool
	conns *prometheus.Desc
	waits *prometheus.Desc
	max   *prometheus.Desc
}

// NewPoolCollector returns the collector for pool; register it on a registry.
func NewPoolCollector(pool *pgxpool.Pool) *PoolCollector {
	return &PoolCollector{
		pool:  pool,
		conns: prometheus.NewDesc("mediator_postgres_pool_connections", "PostgreSQL pool connections by state.", []string{"state"}, nil),
		waits: prometheus.NewDesc("mediator_postgres_pool_empty_acquires_total", "Times a request had to wait for a pool connection.", nil, nil),
		max:   prometheus.NewDesc("mediator_postgres_pool_max_connections", "The pool's connection limit.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *PoolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.conns
	ch <- c.waits
	ch <- c.max
}

// Collect implements prometheus.Collector.
func (c *PoolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.pool.Stat()
	ch <- prometheus.MustNewConstMetric(c.conns, prometheus.GaugeValue, float64(s.AcquiredConns()), "acquired")
	ch <- prometheus.MustNewConstMetric(c.conns, prometheus.GaugeValue, float64(s.IdleConns()), "idle")
	ch <- prometheus.MustNewConstMetric(c.conns, prometheus.GaugeValue, float64(s.TotalConns()), "total")
	ch <- prometheus.MustNewConstMetric(c.waits, prometheus.CounterValue, float64(s.EmptyAcquireCount()))
	ch <- prometheus.MustNewConstMetric(c.max, prometheus.GaugeValue, float64(s.MaxConns()))
}

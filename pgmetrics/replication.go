package pgmetrics

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// ReplicationCollector reports, when scraped, what the server the pool
// writes to says of its replication: whether it is a primary, how many
// standbys stream from it by sync state, how far each is behind, and
// whether a commit waits for a standby (the durability of an
// acknowledged event). Standbys are labelled by their application_name
// (pg_auto_failover's pgautofailover_standby_N), never by address.
//
// The lag columns of pg_stat_replication are visible only to a role with
// pg_monitor (or pg_read_all_stats); without it the lag is not reported.
type ReplicationCollector struct {
	pool      *pgxpool.Pool
	up        *prometheus.Desc
	primary   *prometheus.Desc
	standbys  *prometheus.Desc
	lag       *prometheus.Desc
	syncNames *prometheus.Desc
}

// NewReplicationCollector returns the collector for pool; register it on
// a registry.
func NewReplicationCollector(pool *pgxpool.Pool) *ReplicationCollector {
	return &ReplicationCollector{
		pool: pool,
		up: prometheus.NewDesc("mediator_postgres_replication_scrape_ok",
			"1 if the last scrape could read the database's replication state.", nil, nil),
		primary: prometheus.NewDesc("mediator_postgres_primary",
			"1 if the server the service writes to is a primary (not in recovery).", nil, nil),
		standbys: prometheus.NewDesc("mediator_postgres_standbys",
			"Standbys streaming from the primary, by sync_state (sync, quorum, potential, async).", []string{"sync_state"}, nil),
		lag: prometheus.NewDesc("mediator_postgres_replication_lag_bytes",
			"WAL the standby has not replayed yet, in bytes, by standby application_name.", []string{"standby"}, nil),
		syncNames: prometheus.NewDesc("mediator_postgres_synchronous_commit_waits",
			"1 if a commit waits for a standby: synchronous_standby_names is set and synchronous_commit is on or stronger. 0 means an acknowledged event may be on one machine only.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *ReplicationCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.primary, c.standbys, c.lag, c.syncNames} {
		ch <- d
	}
}

// sqlReplicationState reads the server's role and its commit durability.
const sqlReplicationState = `SELECT NOT pg_is_in_recovery(),
	current_setting('synchronous_standby_names') <> '' AND current_setting('synchronous_commit') IN ('on', 'remote_write', 'remote_apply')`

// sqlStandbys lists the standbys streaming from a primary.
const sqlStandbys = `SELECT application_name, sync_state, pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float8
	FROM pg_stat_replication WHERE state = 'streaming'`

// Collect implements prometheus.Collector. A scrape waits at most two
// seconds for the database.
func (c *ReplicationCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ok := c.collect(ctx, ch) == nil
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, b2f(ok))
}

func (c *ReplicationCollector) collect(ctx context.Context, ch chan<- prometheus.Metric) error {
	var primary, waits bool
	if err := c.pool.QueryRow(ctx, sqlReplicationState).Scan(&primary, &waits); err != nil {
		return err
	}
	ch <- prometheus.MustNewConstMetric(c.primary, prometheus.GaugeValue, b2f(primary))
	if !primary {
		return nil
	}
	ch <- prometheus.MustNewConstMetric(c.syncNames, prometheus.GaugeValue, b2f(waits))
	rows, err := c.pool.Query(ctx, sqlStandbys)
	if err != nil {
		return err
	}
	type standby struct {
		name, state string
		lag         *float64
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (standby, error) {
		var s standby
		return s, r.Scan(&s.name, &s.state, &s.lag)
	})
	if err != nil {
		return err
	}
	counts := map[string]int{"sync": 0, "quorum": 0, "potential": 0, "async": 0}
	for _, s := range list {
		counts[s.state]++
		if s.lag != nil {
			ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, *s.lag, s.name)
		}
	}
	for state, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.standbys, prometheus.GaugeValue, float64(n), state)
	}
	return nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Package stats is the SOC's view of delivery metadata without identifiers:
// counts of message events by transport and status, end-to-end-encryption
// coverage and downgrades, grouped by carrier country code (MCC), client
// platform or transport, over a time window.
//
// It counts redacted records after their append committed and keeps only
// the dimensions above, a minute bucket and a count: never a pseudonym, a
// conversation id or an event id. Answers publish nothing below a
// configured k: groups and cells under k are left out, every count published
// (group totals included) is rounded down to a multiple of k, ratios are
// computed from the rounded counts, and windows are fixed sizes aligned to
// UTC boundaries, of which only complete ones are reported. So no number,
// and no difference of numbers from any reports, isolates fewer than k
// events.
package stats

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediatorhq/mediator/invalid"
	"github.com/mediatorhq/mediator/redact"
)

// e2eeTransports are the transports that carry end-to-end-encrypted
// content; coverage is their share of message events.
func isE2EE(transport string) bool { return transport == "rcs-e2ee" || transport == "app-e2ee" }

// key is one cell of the tally.
type key struct {
	minute                               int64 // Unix seconds of the minute
	kind, mcc, platform, transport, stat string
	from, to                             string // a downgrade's transports
}

// Tally counts committed records in memory and writes the counts to
// PostgreSQL every flush interval, so the ingest path pays one map update
// per event. A crash loses at most one interval's counts from this view,
// never anything from the audit log, which stays the record. It is safe for
// concurrent use.
type Tally struct {
	pool *pgxpool.Pool
	log  *slog.Logger

	mu     sync.Mutex
	counts map[key]int64
}

// NewTally returns a tally that writes to pool.
func NewTally(pool *pgxpool.Pool, log *slog.Logger) *Tally {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Tally{pool: pool, log: log, counts: map[key]int64{}}
}

// Count adds a committed record. Only messages and downgrades are counted.
func (t *Tally) Count(r *redact.Record) {
	if r.Kind != "message" && r.Kind != "downgrade" {
		return
	}
	k := key{minute: r.Occurred.Truncate(time.Minute).Unix(), kind: r.Kind, transport: r.Transport, stat: r.Status}
	if r.Carrier != nil {
		k.mcc = r.Carrier.MCC
	}
	if r.Client != nil {
		k.platform = r.Client.Platform
	}
	if r.Downgrade != nil {
		k.from, k.to = r.Downgrade.From, r.Downgrade.To
	}
	t.mu.Lock()
	t.counts[k]++
	t.mu.Unlock()
}

// Flush writes the counts gathered since the last flush in one COPY. If
// the write fails the counts are kept for the next flush.
func (t *Tally) Flush(ctx context.Context) error {
	t.mu.Lock()
	pending := t.counts
	t.counts = map[key]int64{}
	t.mu.Unlock()
	if len(pending) == 0 {
		return nil
	}
	rows := make([][]any, 0, len(pending))
	for k, n := range pending {
		rows = append(rows, []any{time.Unix(k.minute, 0).UTC(), k.kind, k.mcc, k.platform, k.transport, k.stat, k.from, k.to, n})
	}
	_, err := t.pool.CopyFrom(ctx, pgx.Identifier{"transport_counts"},
		[]string{"minute", "kind", "mcc", "platform", "transport", "status", "downgrade_from", "downgrade_to", "events"},
		pgx.CopyFromRows(rows))
	if err != nil {
		t.mu.Lock()
		for k, n := range pending {
			t.counts[k] += n
		}
		t.mu.Unlock()
		return fmt.Errorf("stats: flush: %w", err)
	}
	return nil
}

// flushTimeout bounds one flush, so a hung database delays the next one
// rather than stopping the loop.
const flushTimeout = 10 * time.Second

// Run flushes every interval until ctx ends, then once more (with a
// context of its own), so counts gathered before a clean shutdown are kept.
func (t *Tally) Run(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flushTimeout)
			if err := t.Flush(fctx); err != nil {
				t.log.Error("stats: final flush failed; counts since the last flush are lost from the SOC view (not from the log)", "err", err)
			}
			cancel()
			return
		case <-tick.C:
			fctx, cancel := context.WithTimeout(ctx, flushTimeout)
			if err := t.Flush(fctx); err != nil {
				t.log.Warn("stats: flush failed; will retry", "err", err)
			}
			cancel()
		}
	}
}

// Dimensions a report may group by.
func groupColumn(groupBy string) (string, bool) {
	switch groupBy {
	case "mcc", "platform", "transport":
		return groupBy, true
	}
	return "", false
}

// Query asks for a report.
type Query struct {
	// Window is the window's size, one of Windows. The report covers the
	// last complete window of that size: [end-Window, end) where end is the
	// request's time truncated to a multiple of Window (UTC).
	Window time.Duration
	// GroupBy is mcc, platform or transport.
	GroupBy string
	// MinGroup is k: groups and cells with fewer events are not reported.
	MinGroup int
}

// Windows are the window sizes a query may ask for. Fixed sizes aligned to
// their own multiples mean two reports cover either the same window or
// windows that do not partly overlap, so they cannot be subtracted to
// isolate a minute.
var Windows = []time.Duration{15 * time.Minute, time.Hour, 6 * time.Hour, 24 * time.Hour, 7 * 24 * time.Hour}

// MinK is the smallest k allowed: below it suppression means nothing.
const MinK = 2

// Report is the answer: groups of at least k events, each with its cells
// of at least k.
type Report struct {
	Window   string    `json:"window"`
	From     time.Time `json:"from"`
	To       time.Time `json:"to"`
	GroupBy  string    `json:"group_by"`
	MinGroup int       `json:"min_group_size"`
	// RoundedTo is k: every count in the report is a multiple of it.
	RoundedTo int     `json:"rounded_to"`
	Groups    []Group `json:"groups"`
	// SuppressedGroups is how many groups had fewer than k events.
	SuppressedGroups int `json:"suppressed_groups"`
}

// Group is one value of the grouping dimension ("" when the events did not
// say, such as no carrier).
type Group struct {
	Key string `json:"key"`
	// Messages and Downgrades are the group's message and downgrade
	// events; the group is reported only if together they reach k.
	Messages   int64 `json:"messages"`
	Downgrades int64 `json:"downgrades"`
	// Counts are message events by transport and status (cells ≥ k).
	Counts []Cell `json:"counts"`
	// E2EECoverage is the share of message events on rcs-e2ee or
	// app-e2ee; null without messages.
	E2EECoverage *float64 `json:"e2ee_coverage"`
	// DowngradeRatio is downgrade events per message event; null without
	// messages.
	DowngradeRatio *float64 `json:"downgrade_ratio"`
	// DowngradePairs are downgrade events by from → to (pairs ≥ k).
	DowngradePairs []Pair `json:"downgrade_pairs"`
	// SuppressedCells is how many cells and pairs had fewer than k events.
	SuppressedCells int `json:"suppressed_cells"`
}

// Cell is a count of message events on one transport with one status.
type Cell struct {
	Transport string `json:"transport"`
	Status    string `json:"status"`
	Events    int64  `json:"events"`
}

// Pair is a count of downgrades from one transport to another.
type Pair struct {
	From   string `json:"from"`
	To     string `json:"to"`
	Events int64  `json:"events"`
}

// Store reads the counts.
type Store struct{ pool *pgxpool.Pool }

// NewStore returns the counts in pool.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Transport answers q for the window ending now.
func (s *Store) Transport(ctx context.Context, q Query, now time.Time) (Report, error) {
	col, ok := groupColumn(q.GroupBy)
	if !ok {
		return Report{}, invalid.Input("group_by", "must be mcc, platform or transport")
	}
	if !slices.Contains(Windows, q.Window) {
		return Report{}, invalid.Input("window", "must be one of 15m, 1h, 6h, 24h or 168h")
	}
	if q.MinGroup < MinK {
		return Report{}, invalid.Input("k", fmt.Sprintf("must be at least %d", MinK))
	}
	// time.Truncate works from the zero time, a UTC midnight and a Monday:
	// windows of hours and days start on UTC hours and days, weeks on Monday.
	end := now.UTC().Truncate(q.Window)
	rep := Report{Window: windowName(q.Window), From: end.Add(-q.Window), To: end, GroupBy: q.GroupBy,
		MinGroup: q.MinGroup, RoundedTo: q.MinGroup, Groups: []Group{}}
	// col comes from the fixed map above, never from the request.
	rows, err := s.pool.Query(ctx, `SELECT `+col+`, kind, transport, status, downgrade_from, downgrade_to, sum(events)
		FROM transport_counts WHERE minute >= $1 AND minute < $2
		GROUP BY 1, 2, 3, 4, 5, 6`, rep.From, rep.To)
	if err != nil {
		return Report{}, fmt.Errorf("stats: query: %w", err)
	}
	defer rows.Close()
	type agg struct {
		g     Group
		cells map[[2]string]int64
		pairs map[[2]string]int64
		e2ee  int64
	}
	groups := map[string]*agg{}
	for rows.Next() {
		var gk, kind, transport, status, from, to string
		var n int64
		if err := rows.Scan(&gk, &kind, &transport, &status, &from, &to, &n); err != nil {
			return Report{}, fmt.Errorf("stats: query: %w", err)
		}
		a := groups[gk]
		if a == nil {
			a = &agg{g: Group{Key: gk}, cells: map[[2]string]int64{}, pairs: map[[2]string]int64{}}
			groups[gk] = a
		}
		switch kind {
		case "message":
			a.g.Messages += n
			a.cells[[2]string{transport, status}] += n
			if isE2EE(transport) {
				a.e2ee += n
			}
		case "downgrade":
			a.g.Downgrades += n
			a.pairs[[2]string{from, to}] += n
		}
	}
	if err := rows.Err(); err != nil {
		return Report{}, fmt.Errorf("stats: query: %w", err)
	}
	k := int64(q.MinGroup)
	// round publishes n as the largest multiple of k not above it.
	round := func(n int64) int64 { return n - n%k }
	for _, a := range groups {
		if a.g.Messages+a.g.Downgrades < k {
			rep.SuppressedGroups++
			continue
		}
		g := Group{Key: a.g.Key, Messages: round(a.g.Messages), Downgrades: round(a.g.Downgrades), Counts: []Cell{}, DowngradePairs: []Pair{}}
		for c, n := range a.cells {
			if n < k {
				g.SuppressedCells++
				continue
			}
			g.Counts = append(g.Counts, Cell{Transport: c[0], Status: c[1], Events: round(n)})
		}
		for p, n := range a.pairs {
			if n < k {
				g.SuppressedCells++
				continue
			}
			g.DowngradePairs = append(g.DowngradePairs, Pair{From: p[0], To: p[1], Events: round(n)})
		}
		// Ratios of rounded counts tell no more than the counts do.
		if g.Messages > 0 {
			cov := ratio(round(a.e2ee), g.Messages)
			dr := ratio(g.Downgrades, g.Messages)
			g.E2EECoverage, g.DowngradeRatio = &cov, &dr
		}
		sort.Slice(g.Counts, func(i, j int) bool {
			if g.Counts[i].Transport != g.Counts[j].Transport {
				return g.Counts[i].Transport < g.Counts[j].Transport
			}
			return g.Counts[i].Status < g.Counts[j].Status
		})
		sort.Slice(g.DowngradePairs, func(i, j int) bool {
			if g.DowngradePairs[i].From != g.DowngradePairs[j].From {
				return g.DowngradePairs[i].From < g.DowngradePairs[j].From
			}
			return g.DowngradePairs[i].To < g.DowngradePairs[j].To
		})
		rep.Groups = append(rep.Groups, g)
	}
	sort.Slice(rep.Groups, func(i, j int) bool { return rep.Groups[i].Key < rep.Groups[j].Key })
	return rep, nil
}

// ratio is a/b to four decimal places.
func ratio(a, b int64) float64 { return math.Round(float64(a)/float64(b)*1e4) / 1e4 }

// windowName is how a report names its window: "15m", "1h", "24h", "168h".
func windowName(d time.Duration) string {
	if d%time.Hour == 0 {
		return fmt.Sprintf("%dh", d/time.Hour)
	}
	return fmt.Sprintf("%dm", d/time.Minute)
}

// StartTally returns a tally writing to pool every interval, and the
// function that stops it after a final flush. The tally runs until that
// function is called, not until ctx ends, so requests still being answered
// during a shutdown are counted; call it once they are.
func StartTally(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger, interval time.Duration) (*Tally, func()) {
	t := NewTally(pool, log)
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() { t.Run(runCtx, interval); close(done) }()
	return t, func() { stop(); <-done }
}

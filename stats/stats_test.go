package stats

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mediatorhq/mediator/invalid"
	"github.com/mediatorhq/mediator/redact"
	"github.com/mediatorhq/mediator/test/harness"
	"github.com/mediatorhq/mediator/test/testdb"
)

var env *harness.Env

func TestMain(m *testing.M) { harness.MainPostgres(m, &env) }

func record(i int, kind, transport, status, mcc, platform string, at time.Time) *redact.Record {
	r := &redact.Record{EventID: fmt.Sprintf("ev-%d", i), Kind: kind, ConversationID: fmt.Sprintf("conv-secret-%d", i),
		Sender: "hmac-sha256:" + strings.Repeat("ab", 32), Recipients: []string{"hmac-sha256:" + strings.Repeat("cd", 32)},
		Transport: transport, Status: status, Occurred: at, Carrier: &redact.RecordCarrier{MCC: mcc}, Client: &redact.Client{Platform: platform}}
	if kind == "downgrade" {
		r.Downgrade = &redact.Downgrade{From: "rcs-e2ee", To: "sms"}
	}
	return r
}

func TestReportSuppressesSmallGroupsAndCells(t *testing.T) {
	ctx := context.Background()
	pool := testdb.Pool(t, env)
	tally := NewTally(pool, nil)
	// The last complete hour is [end-1h, end); the report is asked for
	// during the next one.
	end := time.Now().UTC().Truncate(time.Hour)
	now := end.Add(17 * time.Minute)
	i := 0
	add := func(n int, kind, transport, status, mcc, platform string, at time.Time) {
		for range n {
			i++
			tally.Count(record(i, kind, transport, status, mcc, platform, at))
		}
	}
	// MCC 310: 30 messages (24 E2EE), 12 downgrades rcs-e2ee → sms.
	add(20, "message", "rcs-e2ee", "delivered", "310", "android", end.Add(-60*time.Minute))
	add(4, "message", "app-e2ee", "read", "310", "ios", end.Add(-5*time.Minute))
	add(6, "message", "sms", "sent", "310", "android", end.Add(-5*time.Minute))
	add(12, "downgrade", "sms", "sent", "310", "android", end.Add(-time.Minute))
	// MCC 262: 9 events in all: below k = 10.
	add(9, "message", "rcs", "delivered", "262", "web", end.Add(-2*time.Minute))
	// Outside the window (before it, and in the hour not yet complete),
	// and kinds that are not counted.
	add(50, "message", "rcs", "delivered", "208", "web", end.Add(-3*time.Hour))
	add(50, "message", "rcs", "delivered", "208", "web", end)
	add(50, "receipt", "rcs", "read", "234", "web", end.Add(-time.Minute))
	if err := tally.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	store := NewStore(pool)
	rep, err := store.Transport(ctx, Query{Window: time.Hour, GroupBy: "mcc", MinGroup: 10}, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Groups) != 1 || rep.SuppressedGroups != 1 {
		t.Fatalf("groups: %+v", rep)
	}
	g := rep.Groups[0]
	// Rounded down to multiples of k: 30 messages, 12 → 10 downgrades,
	// 24 → 20 of them E2EE.
	if g.Key != "310" || g.Messages != 30 || g.Downgrades != 10 || *g.E2EECoverage != 0.6667 || *g.DowngradeRatio != 0.3333 {
		t.Fatalf("group 310: %+v", g)
	}
	if !rep.From.Equal(end.Add(-time.Hour)) || !rep.To.Equal(end) || rep.Window != "1h" || rep.RoundedTo != 10 {
		t.Fatalf("window: %+v", rep)
	}
	// Cells: rcs-e2ee/delivered (20) is shown; app-e2ee/read (4) and
	// sms/sent (6) are not; the downgrade pair (12 → 10) is.
	if len(g.Counts) != 1 || g.Counts[0].Events != 20 || g.SuppressedCells != 2 || len(g.DowngradePairs) != 1 || g.DowngradePairs[0].Events != 10 {
		t.Fatalf("cells: %+v", g)
	}
	// Every reported number is ≥ k, and nothing identifies anyone.
	b, _ := json.Marshal(rep)
	for _, forbidden := range []string{"hmac-sha256", "conv-secret", "ev-"} {
		if strings.Contains(string(b), forbidden) {
			t.Fatalf("report carries %q: %s", forbidden, b)
		}
	}
	for _, q := range []Query{{Window: time.Hour, GroupBy: "platform", MinGroup: 10}, {Window: time.Hour, GroupBy: "transport", MinGroup: 10}} {
		rep, err := store.Transport(ctx, q, now)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range rep.Groups {
			if g.Messages+g.Downgrades < 10 {
				t.Fatalf("%s: group %q below k: %+v", q.GroupBy, g.Key, g)
			}
			for _, c := range g.Counts {
				if c.Events < 10 {
					t.Fatalf("%s: cell below k: %+v", q.GroupBy, c)
				}
			}
		}
	}
	// A smaller k shows the small group.
	if rep, _ := store.Transport(ctx, Query{Window: time.Hour, GroupBy: "mcc", MinGroup: 5}, now); len(rep.Groups) != 2 {
		t.Fatalf("k = 5: %+v", rep.Groups)
	}
	// The counts table has no identifier column at all.
	var cols string
	if err := pool.QueryRow(ctx, `SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns WHERE table_name = 'transport_counts'`).Scan(&cols); err != nil {
		t.Fatal(err)
	}
	if cols != "minute,kind,mcc,platform,transport,status,downgrade_from,downgrade_to,events,written_at" {
		t.Fatalf("columns: %s", cols)
	}
}

func TestQueryValidation(t *testing.T) {
	store := NewStore(nil)
	for _, q := range []Query{
		{Window: time.Hour, GroupBy: "conversation_id", MinGroup: 10},
		{Window: time.Hour, GroupBy: "mcc; DROP TABLE audit_entries", MinGroup: 10},
		{Window: time.Second, GroupBy: "mcc", MinGroup: 10},
		{Window: 61 * time.Minute, GroupBy: "mcc", MinGroup: 10},
		{Window: 59 * time.Minute, GroupBy: "mcc", MinGroup: 10},
		{Window: 90 * 24 * time.Hour, GroupBy: "mcc", MinGroup: 10},
		{Window: time.Hour, GroupBy: "mcc", MinGroup: 1},
	} {
		if _, err := store.Transport(context.Background(), q, time.Now()); !isInvalid(err) {
			t.Errorf("%+v: %v", q, err)
		}
	}
}

func TestFailedFlushKeepsCounts(t *testing.T) {
	pool := testdb.Pool(t, env)
	tally := NewTally(pool, nil)
	tally.Count(record(1, "message", "sms", "sent", "310", "web", time.Now()))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := tally.Flush(ctx); err == nil {
		t.Fatal("a flush with a cancelled context succeeded")
	}
	if err := tally.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	var n int64
	if err := pool.QueryRow(context.Background(), "SELECT coalesce(sum(events), 0) FROM transport_counts").Scan(&n); err != nil || n != 1 {
		t.Fatalf("events after a failed then a good flush: %d %v", n, err)
	}
}

// TestNothingBelowKByDifferencing plays the SOC analyst who subtracts: a
// group total minus the cells shown, and reports asked a minute apart or
// with windows a minute longer. Neither isolates the three events of a
// suppressed cell.
func TestNothingBelowKByDifferencing(t *testing.T) {
	ctx := context.Background()
	pool := testdb.Pool(t, env)
	tally := NewTally(pool, nil)
	end := time.Now().UTC().Truncate(time.Hour)
	i := 0
	add := func(n int, transport, status string, at time.Time) {
		for range n {
			i++
			tally.Count(record(i, "message", transport, status, "310", "android", at))
		}
	}
	// 15 on RCS and, the cell to protect, 3 by SMS.
	add(15, "rcs", "delivered", end.Add(-30*time.Minute))
	add(3, "sms", "sent", end.Add(-20*time.Minute))
	if err := tally.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	store := NewStore(pool)
	q := Query{Window: time.Hour, GroupBy: "mcc", MinGroup: 10}
	before, err := store.Transport(ctx, q, end.Add(time.Minute))
	if err != nil || len(before.Groups) != 1 {
		t.Fatalf("report: %+v %v", before, err)
	}
	g := before.Groups[0]
	var shown int64
	for _, c := range g.Counts {
		shown += c.Events
	}
	if diff := g.Messages - shown; diff == 3 || g.SuppressedCells != 1 {
		t.Fatalf("the total minus the cells shown is the suppressed cell: %+v", g)
	}
	b, _ := json.Marshal(before)
	for _, n := range numbers(t, b) {
		if n != float64(int64(n)) || int64(n)%10 != 0 {
			if n < 1 && n > 0 { // a ratio: of rounded counts
				if m := n * float64(g.Messages); m-float64(int64(m+0.5)) > 0.01 || int64(m+0.5)%10 != 0 {
					t.Errorf("ratio %v of %d messages is not a ratio of multiples of k", n, g.Messages)
				}
				continue
			}
			t.Errorf("published number %v is not a multiple of k: %s", n, b)
		}
	}

	// One more SMS in the hour under way, and the next minute: the report
	// does not move, so the minute cannot be isolated.
	add(1, "sms", "sent", end.Add(time.Minute))
	if err := tally.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	after, err := store.Transport(ctx, q, end.Add(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if a, _ := json.Marshal(after); string(a) != string(b) {
		t.Fatalf("the report moved within its window:\n%s\n%s", b, a)
	}
	// The next report covers the next hour, adjacent and not overlapping.
	next, err := store.Transport(ctx, q, end.Add(time.Hour))
	if err != nil || !next.From.Equal(before.To) {
		t.Fatalf("the next window: %+v %v", next, err)
	}
}

// numbers returns every number in a JSON document.
func numbers(t *testing.T, doc []byte) []float64 {
	t.Helper()
	var v any
	if err := json.Unmarshal(doc, &v); err != nil {
		t.Fatal(err)
	}
	var out []float64
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case float64:
			out = append(out, v)
		case []any:
			for _, e := range v {
				walk(e)
			}
		case map[string]any:
			for k, e := range v {
				if k != "suppressed_cells" && k != "suppressed_groups" { // counts of cells, not of events
					walk(e)
				}
			}
		}
	}
	walk(v)
	return out
}

func isInvalid(err error) bool {
	_, ok := invalid.As(err)
	return ok
}

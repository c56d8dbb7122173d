package stats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

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
	now := time.Now().UTC()
	i := 0
	add := func(n int, kind, transport, status, mcc, platform string, at time.Time) {
		for range n {
			i++
			tally.Count(record(i, kind, transport, status, mcc, platform, at))
		}
	}
	// MCC 310: 30 messages (24 E2EE), 12 downgrades rcs-e2ee → sms.
	add(20, "message", "rcs-e2ee", "delivered", "310", "android", now.Add(-10*time.Minute))
	add(4, "message", "app-e2ee", "read", "310", "ios", now.Add(-5*time.Minute))
	add(6, "message", "sms", "sent", "310", "android", now.Add(-5*time.Minute))
	add(12, "downgrade", "sms", "sent", "310", "android", now.Add(-3*time.Minute))
	// MCC 262: 9 events in all: below k = 10.
	add(9, "message", "rcs", "delivered", "262", "web", now.Add(-2*time.Minute))
	// Outside the window, and kinds that are not counted.
	add(50, "message", "rcs", "delivered", "208", "web", now.Add(-3*time.Hour))
	add(50, "receipt", "rcs", "read", "234", "web", now.Add(-time.Minute))
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
	if g.Key != "310" || g.Messages != 30 || g.Downgrades != 12 || *g.E2EECoverage != 0.8 || *g.DowngradeRatio != 0.4 {
		t.Fatalf("group 310: %+v", g)
	}
	// Cells: rcs-e2ee/delivered (20) is shown; app-e2ee/read (4) and
	// sms/sent (6) are not; the downgrade pair (12) is.
	if len(g.Counts) != 1 || g.Counts[0].Events != 20 || g.SuppressedCells != 2 || len(g.DowngradePairs) != 1 || g.DowngradePairs[0].Events != 12 {
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
		{Window: 90 * 24 * time.Hour, GroupBy: "mcc", MinGroup: 10},
		{Window: time.Hour, GroupBy: "mcc", MinGroup: 1},
	} {
		if _, err := store.Transport(context.Background(), q, time.Now()); !errors.Is(err, ErrInvalid) {
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

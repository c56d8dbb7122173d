package pgmetrics

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mediatorhq/mediator/dev/servers"
)

// TestReplicationCollectorSeesTheStandby: on a private primary with a
// streaming standby, the collector reports a primary, one asynchronous
// standby and commits that do not wait; once the primary names the
// standby in synchronous_standby_names, a synchronous standby and commits
// that wait for it.
func TestReplicationCollectorSeesTheStandby(t *testing.T) {
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	primary, err := servers.StartPostgres(ctx, log, servers.PostgresOptions{NoLocal: true, IgnoreEnv: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(primary.Stop)
	standby, err := servers.StartStandby(ctx, log, primary)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(standby.Stop)
	pool, err := pgxpool.New(ctx, primary.AdminURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewReplicationCollector(pool))
	expect := func(want string) {
		t.Helper()
		var got error
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			got = testutil.GatherAndCompare(reg, strings.NewReader(want),
				"mediator_postgres_primary", "mediator_postgres_standbys", "mediator_postgres_synchronous_commit_waits", "mediator_postgres_replication_scrape_ok")
			if n, err := testutil.GatherAndCount(reg, "mediator_postgres_replication_lag_bytes"); got == nil && (err != nil || n != 1) {
				got = fmt.Errorf("lag series: %d %v", n, err)
			}
			if got == nil {
				break
			}
		}
		if got != nil {
			t.Fatal(got)
		}
	}
	const header = `
# HELP mediator_postgres_primary 1 if the server the service writes to is a primary (not in recovery).
# TYPE mediator_postgres_primary gauge
mediator_postgres_primary 1
# HELP mediator_postgres_replication_scrape_ok 1 if the last scrape could read the database's replication state.
# TYPE mediator_postgres_replication_scrape_ok gauge
mediator_postgres_replication_scrape_ok 1
# HELP mediator_postgres_standbys Standbys streaming from the primary, by sync_state (sync, quorum, potential, async).
# TYPE mediator_postgres_standbys gauge
# HELP mediator_postgres_synchronous_commit_waits 1 if a commit waits for a standby: synchronous_standby_names is set and synchronous_commit is on or stronger. 0 means an acknowledged event may be on one machine only.
# TYPE mediator_postgres_synchronous_commit_waits gauge
`
	expect(header + `mediator_postgres_standbys{sync_state="async"} 1
mediator_postgres_standbys{sync_state="potential"} 0
mediator_postgres_standbys{sync_state="quorum"} 0
mediator_postgres_standbys{sync_state="sync"} 0
mediator_postgres_synchronous_commit_waits 0
`)
	if _, err := pool.Exec(ctx, "ALTER SYSTEM SET synchronous_standby_names = 'standby'"); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
		t.Fatal(err)
	}
	pool.Reset() // sessions read the reloaded setting
	expect(header + `mediator_postgres_standbys{sync_state="async"} 0
mediator_postgres_standbys{sync_state="potential"} 0
mediator_postgres_standbys{sync_state="quorum"} 0
mediator_postgres_standbys{sync_state="sync"} 1
mediator_postgres_synchronous_commit_waits 1
`)
}

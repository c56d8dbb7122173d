package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/note"

	"github.com/mediatorhq/mediator/dev"
	"github.com/mediatorhq/mediator/dev/servers"
	"github.com/mediatorhq/mediator/loadgen"
	"github.com/mediatorhq/mediator/redact"
	"github.com/mediatorhq/mediator/test/harness"
	"github.com/mediatorhq/mediator/witness"
)

// TestFailoverLosesNothing runs the supported high-availability topology
// (docs/operations.md): a pg_auto_failover monitor, a primary and its
// synchronous standby, and two `mediator serve` processes on a multi-host
// URL (and the standby's for reads), with a witness required for
// publication. Under load through both:
//   - the primary's postmaster is SIGKILLed: its keeper restarts it, and
//     ingest resumes;
//   - the primary's node is killed (keeper, postmaster and backends at
//     once); the standby is promoted; ingest answers 503 with Retry-After
//     meanwhile and resumes;
//   - the mediator that runs the checkpointer is killed; the other takes
//     it over within seconds;
//
// and then every event either mediator acknowledged is in the log, the
// witness has cosigned a checkpoint covering all of them, and
// `mediator audit verify` passes.
func TestFailoverLosesNothing(t *testing.T) {
	ctx := context.Background()
	f, err := servers.StartFormation(ctx, env.Log)
	if err != nil {
		t.Fatalf("the pg_auto_failover formation: %v", err)
	}
	t.Cleanup(f.Stop)
	if err := f.CreateDatabase(ctx, "mediator_failover"); err != nil {
		t.Fatal(err)
	}
	dsn := f.URL("mediator_failover", "read-write")

	dir := t.TempDir()
	skey, vkey, _ := note.GenerateKey(rand.Reader, "mediator/audit")
	keyFile := filepath.Join(dir, "checkpoint.key")
	mustWrite(t, keyFile, skey)
	logVerifier, _ := note.NewVerifier(vkey)
	seed := make([]byte, 32)
	rand.Read(seed)
	const witnessName = "witness.e2e.example/failover"
	wsigner, wvkey, _ := witness.NewSigner(witnessName, seed)
	wstore := harness.NewWitnessStore()
	wsrv := httptest.NewServer(witness.New(wsigner, wstore, witness.Log{Origin: "mediator/audit", Verifiers: []note.Verifier{logVerifier}}).Handler())
	t.Cleanup(wsrv.Close)
	policy := filepath.Join(dir, "witnesses.policy")
	mustWrite(t, policy, fmt.Sprintf("log %s\nwitness %s %s %s\nquorum %s\n", vkey, witnessName, wvkey, wsrv.URL, witnessName))

	// Both read the log from the standby when there is one.
	logEnv := []string{"MEDIATOR_CHECKPOINT_KEY_FILE=" + keyFile, "MEDIATOR_WITNESSES=" + policy,
		"MEDIATOR_DATABASE_READ_URL=" + f.URL("mediator_failover", "prefer-standby")}
	a := startServe(t, serveOpts{dsn: dsn, extraEnv: logEnv})
	b := startServe(t, serveOpts{dsn: dsn, extraEnv: append(logEnv, "MEDIATOR_JWT_JWKS="+dev.JWKSPath(a.state))})
	instances := []*instance{a, b}
	for _, in := range instances {
		in.waitReady(t, 60*time.Second)
	}
	gw, _ := a.issuer.Issue("gw-failover", []string{"ingest"}, time.Hour)
	aud, _ := a.issuer.Issue("aud-failover", []string{"auditor"}, time.Hour)

	// Load: two workers per mediator, each resending a batch until it is
	// acknowledged (200), as a gateway does. A 503 must carry
	// Retry-After.
	ld := &failoverLoad{token: gw, acked: map[string]bool{}}
	stopLoad := make(chan struct{})
	var wg sync.WaitGroup
	for i, in := range instances {
		for w := range 2 {
			wg.Go(func() { ld.run(t, in, fmt.Sprintf("fo-%d-%d", i, w), stopLoad) })
		}
	}
	defer func() {
		select {
		case <-stopLoad:
		default:
			close(stopLoad)
		}
		wg.Wait()
	}()
	ld.waitAcks(t, 2000, 30*time.Second)

	step(t, "the primary's postmaster crashes; its keeper restarts it and ingest resumes", func(t *testing.T) {
		primary, err := f.WaitSettled(ctx, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		before := ld.count()
		if err := primary.KillPostgres(); err != nil {
			t.Fatal(err)
		}
		ld.waitAcks(t, before+2000, 60*time.Second)
		// On a loaded machine the monitor may fail over before the
		// keeper has restarted the postmaster (seen here: node1
		// demoted, catching up, after 60 s); the old primary then
		// rejoins as a standby, by pg_rewind or a base backup, as in
		// the next chapter, and gets as long.
		if _, err := f.WaitSettled(ctx, 3*time.Minute); err != nil {
			t.Fatalf("%v\n%s", err, primary.Log())
		}
	})

	step(t, "the primary's node is lost; the standby is promoted and ingest resumes", func(t *testing.T) {
		primary, err := f.WaitSettled(ctx, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		// The topology is synchronous: a commit waits for the standby.
		if v := gaugeValue(t, a.metrics, "mediator_postgres_synchronous_commit_waits"); v != 1 {
			t.Fatalf("mediator_postgres_synchronous_commit_waits is %v before the failover, want 1", v)
		}
		before := ld.count()
		killed := time.Now()
		primary.Kill()
		next, err := f.WaitSettled(ctx, 60*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if next == primary {
			t.Fatal("no failover")
		}
		ld.waitAcks(t, before+2000, 60*time.Second)
		gap := ld.gapAround(killed)
		t.Logf("failover %s -> %s: no acknowledgement for %s; %d answers were 503 with Retry-After", primary.Name, next.Name, gap, ld.unavailable())
		// The lost node comes back as the new primary's standby. When
		// pg_auto_failover cannot rewind it (its keeper sometimes starts
		// the postmaster first, and pg_rewind finds it running), it takes
		// a base backup instead, which waits for a spread checkpoint on
		// the new primary: 43 s seen here on a loaded machine, so the
		// rejoin gets three minutes.
		if err := primary.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := f.WaitSettled(ctx, 3*time.Minute); err != nil {
			t.Fatalf("%v\n%s", err, primary.Log())
		}
	})

	step(t, "the mediator running the checkpointer dies; the other takes over", func(t *testing.T) {
		owner := -1
		for deadline := time.Now().Add(15 * time.Second); owner < 0; time.Sleep(100 * time.Millisecond) {
			for i, in := range instances {
				if gaugeValue(t, in.metrics, "mediator_audit_sequencer_owner") == 1 {
					owner = i
				}
			}
			if owner < 0 && time.Now().After(deadline) {
				t.Fatal("no mediator holds the checkpointer")
			}
		}
		other := instances[1-owner]
		_ = instances[owner].proc.cmd.Process.Signal(syscall.SIGKILL)
		<-instances[owner].proc.exited
		killed := time.Now()
		for gaugeValue(t, other.metrics, "mediator_audit_sequencer_owner") != 1 {
			if time.Since(killed) > 15*time.Second {
				t.Fatal("the surviving mediator did not take over the checkpointer within 15s")
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("the checkpointer moved to the other mediator in %s", time.Since(killed).Round(time.Millisecond))
		before := ld.count()
		ld.waitAcks(t, before+1000, 30*time.Second)
	})
	close(stopLoad)
	wg.Wait()

	step(t, "every acknowledged event is in the log, published, cosigned and verified", func(t *testing.T) {
		survivor := a
		if !alive(a.proc) {
			survivor = b
		}
		db, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close(ctx)
		var ids []string
		for _, id := range ld.ids() {
			ids = append(ids, redact.EventIDDigest("gw-failover", id))
		}
		var found, rows, size int64
		if err := db.QueryRow(ctx, "SELECT count(DISTINCT event_id), count(*) FROM audit_entries WHERE event_id = ANY($1)", ids).Scan(&found, &rows); err != nil {
			t.Fatal(err)
		}
		if found != int64(len(ids)) || rows != found {
			t.Fatalf("%d acknowledged events; %d of them in the log, in %d rows", len(ids), found, rows)
		}
		if err := db.QueryRow(ctx, "SELECT count(*) FROM audit_entries").Scan(&size); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			_, text := getText(t, survivor.base+"/v1/audit/checkpoint", aud)
			c, _, _ := wstore.Latest(ctx, "mediator/audit")
			if strings.HasPrefix(text, fmt.Sprintf("mediator/audit\n%d\n", size)) && c.Size == size {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no checkpoint of all %d entries published and cosigned; the witness holds %d; served:\n%s", size, c.Size, text)
			}
		}
		// A proof of the whole tree, read from the standby.
		code, body, _ := call(t, "GET", fmt.Sprintf("%s/v1/audit/proof/inclusion?seq=0&tree_size=%d", survivor.base, size), aud)
		if code != 200 {
			t.Fatalf("an inclusion proof from the standby: %d %v", code, body)
		}
		out, stderr, err := runCmd(t, []string{"DATABASE_URL=" + dsn, "MEDIATOR_WITNESSES=" + policy}, "audit", "verify", "--key", vkey, "--output", "json")
		var r struct {
			OK               bool  `json:"ok"`
			TreeSize         int64 `json:"tree_size"`
			WitnessesChecked bool  `json:"witnesses_checked"`
		}
		if err != nil || json.Unmarshal([]byte(out), &r) != nil || !r.OK || r.TreeSize != size || !r.WitnessesChecked {
			t.Fatalf("audit verify: %v\n%s\n%s", err, out, stderr)
		}
		t.Logf("%d events acknowledged, %d entries in the log, all published", len(ids), size)
	})
}

// failoverLoad is ingest through several mediators that records what was
// acknowledged, and when.
type failoverLoad struct {
	token string

	mu         sync.Mutex
	acked      map[string]bool
	ackTimes   []time.Time
	answers503 int
}

// run sends batches of 100 to in until stop, each resent until it is
// acknowledged; it ends when in dies.
func (l *failoverLoad) run(t *testing.T, in *instance, runID string, stop chan struct{}) {
	var body bytes.Buffer
	for n := int64(0); ; n += 100 {
		body.Reset()
		loadgen.WriteBatch(&body, runID, n, 100)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if !alive(in.proc) {
				return
			}
			req, _ := http.NewRequest("POST", in.base+"/v1/events", bytes.NewReader(body.Bytes()))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+l.token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				time.Sleep(50 * time.Millisecond) // the mediator is being killed
				continue
			}
			answer, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				l.ack(runID, n, 100)
				break
			}
			if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
				t.Errorf("ingest through %s: %d %s", in.base, resp.StatusCode, answer)
				return
			}
			l.mu.Lock()
			l.answers503++
			l.mu.Unlock()
			time.Sleep(100 * time.Millisecond)
		}
	}
}

func (l *failoverLoad) ack(runID string, first int64, n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range int64(n) {
		l.acked[string(loadgen.AppendEventID(nil, runID, first+i))] = true
	}
	l.ackTimes = append(l.ackTimes, time.Now())
}

func (l *failoverLoad) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

func (l *failoverLoad) unavailable() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.answers503
}

func (l *failoverLoad) ids() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, 0, len(l.acked))
	for id := range l.acked {
		out = append(out, id)
	}
	return out
}

// gapAround is the unavailable window around t: the longest time
// between two acknowledgements from a second before t on (an answer in
// flight at t may still arrive just after it).
func (l *failoverLoad) gapAround(t time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	times := append([]time.Time(nil), l.ackTimes...)
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	var gap time.Duration
	for i := 1; i < len(times); i++ {
		if times[i].After(t.Add(-time.Second)) {
			gap = max(gap, times[i].Sub(times[i-1]))
		}
	}
	return gap.Round(time.Millisecond)
}

func (l *failoverLoad) waitAcks(t *testing.T, want int, within time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(within); l.count() < want; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("only %d events acknowledged, want %d within %s", l.count(), want, within)
		}
	}
}

func alive(p *process) bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// gaugeValue reads an unlabelled metric's value from a /metrics URL; -1 if
// absent or unreachable.
func gaugeValue(t *testing.T, url, name string) float64 {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(url)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err == nil {
				return f
			}
		}
	}
	return -1
}

package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/client"
	"github.com/mediatorhq/mediator/dev"
	"github.com/mediatorhq/mediator/dev/servers"
	"github.com/mediatorhq/mediator/loadgen"
	"github.com/mediatorhq/mediator/redact"
)

// ackingClient ingests batches with unique event ids and remembers every
// id the service acknowledged. A batch that fails is sent again, unchanged,
// until it is acknowledged or the client stops, as a gateway with a retry
// queue would. It records every status it saw.
type ackingClient struct {
	base, token, runID string
	submitter          string // the token's subject: the log keeps event ids bound to it
	batch              int

	mu       sync.Mutex
	acked    map[string]bool
	statuses map[int]int
	bad      []string // answers that break the contract: 500s, 503s without Retry-After, internals
	http     *http.Client
}

func newAckingClient(base, token, submitter, run string, batch int) *ackingClient {
	return &ackingClient{base: base, token: token, submitter: submitter, runID: run, batch: batch, acked: map[string]bool{}, statuses: map[int]int{},
		http: &http.Client{Timeout: 40 * time.Second}}
}

// internals are words an error answer must never contain.
var internals = []string{"pgx", "SQLSTATE", "goroutine", "panic", "runtime.", "dial tcp", "connection refused", "vault:"}

// run sends batches from worker w until ctx ends.
func (c *ackingClient) run(ctx context.Context, w int) {
	var body bytes.Buffer
	for n := 0; ctx.Err() == nil; n++ {
		first := int64((w*1_000_000 + n) * c.batch)
		body.Reset()
		loadgen.WriteBatch(&body, c.runID, first, c.batch)
		payload := bytes.Clone(body.Bytes())
		for ctx.Err() == nil {
			if c.send(ctx, payload, first) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// send posts one batch; true when it was acknowledged.
func (c *ackingClient) send(ctx context.Context, payload []byte, first int64) bool {
	req, _ := http.NewRequestWithContext(ctx, "POST", c.base+"/v1/events", bytes.NewReader(payload))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.token)
	// Not http.DefaultClient: answers during an outage are checked here,
	// and the description check would count a connection reset as an error.
	resp, err := c.http.Do(req)
	if err != nil {
		return false // the service is down or went down mid-request: resend
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.statuses[resp.StatusCode]++
	switch {
	case resp.StatusCode == 200:
		var r struct{ Accepted, Duplicates int }
		if json.Unmarshal(b, &r) != nil || r.Accepted+r.Duplicates != c.batch {
			c.bad = append(c.bad, fmt.Sprintf("200 that does not account for the batch: %.200s", b))
			return true
		}
		for i := range c.batch {
			c.acked[loadgen.EventID(c.runID, first+int64(i))] = true
		}
		return true
	case resp.StatusCode == 503:
		if resp.Header.Get("Retry-After") == "" || !strings.Contains(string(b), "dependency_unavailable") {
			c.bad = append(c.bad, fmt.Sprintf("503 without Retry-After or code: %.200s", b))
		}
	default:
		c.bad = append(c.bad, fmt.Sprintf("%d: %.300s", resp.StatusCode, b))
	}
	for _, word := range internals {
		if strings.Contains(string(b), word) {
			c.bad = append(c.bad, fmt.Sprintf("%d answer shows internals (%q): %.300s", resp.StatusCode, word, b))
		}
	}
	return false
}

// checkLog asserts that every acknowledged event is in the log exactly
// once, that seq has no gap, and that audit verify passes.
func (c *ackingClient) checkLog(t *testing.T, dsn string, vaultEnv []string) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.bad) > 0 {
		t.Fatalf("%d answers broke the contract; first: %s", len(c.bad), c.bad[0])
	}
	if len(c.acked) == 0 {
		t.Fatal("nothing was acknowledged")
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	ids := make([]string, 0, len(c.acked))
	for id := range c.acked {
		ids = append(ids, redact.EventIDDigest(c.submitter, id))
	}
	var found, rows, maxSeq int64
	if err := conn.QueryRow(ctx, "SELECT count(DISTINCT event_id), count(*) FROM audit_entries WHERE event_id = ANY($1)", ids).Scan(&found, &rows); err != nil {
		t.Fatal(err)
	}
	if found != int64(len(ids)) || rows != found {
		t.Fatalf("%d events acknowledged; %d found in the log in %d rows", len(ids), found, rows)
	}
	if err := conn.QueryRow(ctx, "SELECT count(*), coalesce(max(seq), -1) FROM audit_entries").Scan(&rows, &maxSeq); err != nil {
		t.Fatal(err)
	}
	if rows != maxSeq+1 {
		t.Fatalf("seq has gaps: %d rows, max seq %d", rows, maxSeq)
	}
	out, stderr, err := runCmd(t, append([]string{"DATABASE_URL=" + dsn, "MEDIATOR_LOG_ORIGIN=mediator/audit"}, vaultEnv...), "audit", "verify")
	if err != nil || !strings.Contains(out, "ok: ") {
		t.Fatalf("audit verify: %v\n%s\n%s", err, out, stderr)
	}
	t.Logf("%d events acknowledged, all in the log once; %d entries, gapless; statuses %v", len(ids), rows, c.statuses)
}

// TestCrashRestartLosesNothingAcknowledged: a gateway ingests without
// pause while the mediator is killed with SIGKILL three times and started
// again; every event it saw acknowledged is in the log exactly once, seq
// has no gaps, and the log verifies. The long form kills it more often:
//
//	MEDIATOR_CRASH_KILLS=25 go test -run TestCrashRestart -v ./test/e2e
func TestCrashRestartLosesNothingAcknowledged(t *testing.T) {
	kills := 3
	if v := os.Getenv("MEDIATOR_CRASH_KILLS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("MEDIATOR_CRASH_KILLS=%q", v)
		}
		kills = n
	}
	in := startServe(t, serveOpts{})
	in.waitReady(t, 60*time.Second)
	tok, _ := in.issuer.Issue("gw-crash", []string{"ingest"}, time.Hour)
	c := newAckingClient(in.base, tok, "gw-crash", "crash", 100)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Go(func() { c.run(ctx, w) })
	}
	for range kills {
		time.Sleep(time.Duration(400+rand.IntN(800)) * time.Millisecond)
		if err := in.proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-in.proc.exited
		time.Sleep(200 * time.Millisecond)
		in.restart(t)
	}
	time.Sleep(700 * time.Millisecond)
	cancel()
	wg.Wait()
	aud, _ := in.issuer.Issue("aud", []string{"auditor"}, time.Hour)
	var size int64
	conn, _ := pgx.Connect(context.Background(), in.dsn)
	conn.QueryRow(context.Background(), "SELECT count(*) FROM audit_entries").Scan(&size)
	conn.Close(context.Background())
	signedCheckpoint(t, in, aud, size)
	c.checkLog(t, in.dsn, []string{"VAULT_ADDR=" + env.Vault.Addr, "VAULT_TOKEN=" + env.Vault.Token})
}

// TestDatabaseFaultsUnderLoad: PostgreSQL is restarted, and later every
// connection of the mediator is cut, while a gateway ingests. Meanwhile the
// mediator answers 503 with Retry-After (never 500 or internals), recovers
// by itself, and loses nothing it acknowledged.
func TestDatabaseFaultsUnderLoad(t *testing.T) {
	ctx := context.Background()
	pg, err := servers.StartPostgres(ctx, nil, servers.PostgresOptions{NoLocal: true, IgnoreEnv: true})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Stop()
	in := startServe(t, serveOpts{pg: pg})
	in.waitReady(t, 60*time.Second)
	tok, _ := in.issuer.Issue("gw-db", []string{"ingest"}, time.Hour)
	c := newAckingClient(in.base, tok, "gw-db", "dbfault", 100)
	lctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() { c.run(lctx, w) })
	}
	acked := func() int { c.mu.Lock(); defer c.mu.Unlock(); return len(c.acked) }
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 30s (statuses %v)", what, c.statuses)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor("first acknowledgements", func() bool { return acked() > 0 })
	if err := pg.Restart(ctx, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	before := acked()
	waitFor("recovery after the restart", func() bool { return acked() > before })

	// Cut every connection the mediator holds.
	admin, err := pgx.Connect(ctx, pg.AdminURL)
	if err != nil {
		t.Fatal(err)
	}
	dbName := in.dsn[strings.LastIndex(in.dsn, "/")+1:]
	dbName, _, _ = strings.Cut(dbName, "?")
	var cut int
	if err := admin.QueryRow(ctx, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", dbName).Scan(&cut); err != nil || cut == 0 {
		t.Fatalf("cut connections: %d %v", cut, err)
	}
	admin.Close(ctx)
	before = acked()
	waitFor("recovery after the cut", func() bool { return acked() > before+200 })
	cancel()
	wg.Wait()
	c.mu.Lock()
	unavailable := c.statuses[503]
	c.mu.Unlock()
	if unavailable == 0 {
		t.Fatalf("no 503 was answered while PostgreSQL was down (statuses %v)", c.statuses)
	}
	c.checkLog(t, in.dsn, []string{"VAULT_ADDR=" + env.Vault.Addr, "VAULT_TOKEN=" + env.Vault.Token})
}

// TestVaultSealedThenBack: with Vault sealed under a running mediator,
// deposits answer 503 and leave nothing behind, a release allowed by the
// policy fails closed and the request stays pending, and ingest goes on
// throughout: it needs no key of Vault's, since identifiers arrive as
// pseudonyms. Once Vault is unsealed, everything recovers by itself.
func TestVaultSealedThenBack(t *testing.T) {
	ctx := context.Background()
	v, err := servers.StartVault(ctx, nil, servers.VaultOptions{IgnoreEnv: true})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Stop()
	_, trusted := e2eApprovers()
	cs := startCustodians(t, v, dev.CustodianOptions{Approvers: trusted})
	in := startServe(t, serveOpts{vault: v, custodians: cs})
	in.waitReady(t, 60*time.Second)
	tok := func(sub string, roles ...string) string { s, _ := in.issuer.Issue(sub, roles, time.Hour); return s }
	gw, dep, admin := tok("gw", "ingest"), tok("gw", "depositor"), tok("ada", "admin")
	olga, lena, sam := tok("olga", "officer"), tok("lena", "approver"), tok("sam", "approver")
	depositor, _ := newClient(in.base, dep, http.DefaultClient)

	// A request that the policy will allow, its key escrowed.
	deposit := func(keyID string) error {
		_, err := depositor.Deposit(ctx, cs.digest, conv("conv-v"), keyID, []byte("0123456789abcdef0123456789abcdef"))
		return err
	}
	if err := deposit("k1"); err != nil {
		t.Fatalf("deposit: %v", err)
	}
	id := readyRequest(t, in, admin, olga, map[string]string{"lena": lena, "sam": sam}, conv("conv-v"))

	ingest := func(i int) (int, http.Header) {
		var b bytes.Buffer
		loadgen.WriteBatch(&b, fmt.Sprintf("vault-%d", i), 0, 10)
		req, _ := http.NewRequest("POST", in.base+"/v1/events", &b)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+gw)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.Header
	}
	if code, _ := ingest(0); code != 200 {
		t.Fatalf("ingest before the seal: %d", code)
	}
	rowsBefore := countRows(t, in.dsn, "escrow_keys")

	if err := v.Seal(ctx); err != nil {
		t.Fatal(err)
	}
	// Ingest goes on: it holds no key.
	if code, _ := ingest(1); code != 200 {
		t.Fatalf("ingest right after the seal: %d", code)
	}
	if err := deposit("k2"); !client.IsCode(err, "dependency_unavailable") || countRows(t, in.dsn, "escrow_keys") != rowsBefore {
		t.Fatalf("deposit with Vault sealed: %v", err)
	}
	code, b := post(t, in.base+"/v1/access-requests/"+id+"/release", "application/json", olga, []byte(`{}`))
	if code != 503 || b["keys"] != nil || errorCode(b) != "custodians_unavailable" {
		t.Fatalf("release with Vault sealed: %d %v", code, b)
	}
	if _, shown, _ := call(t, "GET", in.base+"/v1/access-requests/"+id, olga); shown["status"] != "pending" {
		t.Fatalf("the request left pending although nothing was released: %v", shown["status"])
	}
	// Ingest never depended on Vault's keys, however long it stays sealed.
	time.Sleep(time.Second)
	if code, _ := ingest(2); code != 200 {
		t.Fatalf("ingest a while into the seal: %d", code)
	}

	if err := v.Unseal(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if code, _ := ingest(3); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("ingest did not recover after the unseal")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := deposit("k2"); err != nil {
		t.Fatalf("deposit after the unseal: %v", err)
	}
	// Both keys of the conversation fall in the request's window, but
	// only k1 existed when it was approved: k2 is not its to release, and
	// does not stand in its way.
	code, b = post(t, in.base+"/v1/access-requests/"+id+"/release", "application/json", olga, []byte(`{}`))
	keys, _ := b["keys"].([]any)
	if code != 200 || len(keys) != 1 || keys[0].(map[string]any)["key_id"] != "k1" {
		t.Fatalf("release after the unseal: %d %v", code, b)
	}
	// Nothing half-written: each custodian's store holds the shares of
	// exactly the two escrows with rows.
	kv := adminVault(t, v)
	for _, c := range cs.cs {
		dump := dumpKV(t, kv, c.Config.KV.Mount, c.Config.KV.Prefix+"/deposits/")
		if n := strings.Count(dump, `"escrow_id":`); n != countRows(t, in.dsn, "escrow_keys") {
			t.Fatalf("%s holds %d shares, the mediator %d escrows:\n%s", c.Name, n, countRows(t, in.dsn, "escrow_keys"), dump)
		}
	}
}

func countRows(t *testing.T, dsn, table string) int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{table}.Sanitize()).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// readyRequest files a request by olga for convo (registering lena and
// sam) and has both approve: the default policy allows its release. It
// returns the request id.
func readyRequest(t *testing.T, in *instance, admin, olga string, approvers map[string]string, convo string) string {
	t.Helper()
	r := readyRequestUnapproved(t, in, admin, olga, convo)
	for who, tok := range approvers {
		sig := ed25519.Sign(r.keys[who], approval.Message(r.id, r.digest, "approve", who))
		b, _ := json.Marshal(map[string]any{"decision": "approve", "signature": sig})
		if code, body := post(t, in.base+"/v1/access-requests/"+r.id+"/approvals", "application/json", tok, b); code != 201 {
			t.Fatalf("approval by %s: %d %v", who, code, body)
		}
	}
	return r.id
}

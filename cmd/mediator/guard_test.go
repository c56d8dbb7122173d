package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediatorhq/mediator/api"
	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/audit"
	"github.com/mediatorhq/mediator/escrow"
	"github.com/mediatorhq/mediator/pgmetrics"
	"github.com/mediatorhq/mediator/pseudonym"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/shares"
	"github.com/mediatorhq/mediator/test/harness"
	"github.com/mediatorhq/mediator/test/testdb"
	"github.com/mediatorhq/mediator/wire"
)

// pgEnv is the real PostgreSQL the operator verbs' tests run against.
var pgEnv *harness.Env

func TestMain(m *testing.M) { harness.MainPostgres(m, &pgEnv) }

// operatorWorld is a migrated database holding escrows, two custodians
// (one fake custodian service) that count the destructions asked of them,
// and the environment an operator verb runs with.
type operatorWorld struct {
	t    *testing.T
	pool *pgxpool.Pool
	rows *escrow.PGRows
	env  map[string]string

	mu        sync.Mutex
	destroyed int // shares the custodians were asked to destroy
}

func newOperatorWorld(t *testing.T) *operatorWorld {
	t.Helper()
	w := &operatorWorld{t: t, pool: testdb.Pool(t, pgEnv)}
	w.rows = escrow.NewPGRows(w.pool, audit.NewTxAppender())
	srv := httptest.NewServer(http.HandlerFunc(w.custodian))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("mediator-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := escrow.CustodianFile{Threshold: 2}
	for i := range 2 {
		h, s := custodianKeys(t)
		file.Custodians = append(file.Custodians, escrow.CustodianEntry{Name: fmt.Sprintf("custodian-%d", i+1), URL: srv.URL,
			TokenFile: tokenFile, HPKEKey: h, SigningKey: s})
	}
	b, _ := json.Marshal(file)
	custodians := filepath.Join(dir, "custodians.json")
	if err := os.WriteFile(custodians, b, 0o600); err != nil {
		t.Fatal(err)
	}
	w.env = map[string]string{"DATABASE_URL": w.pool.Config().ConnString(), "MEDIATOR_CUSTODIANS": custodians, "USER": "counsel"}
	return w
}

// custodian answers as a custodian that destroys every share it is asked
// to and records every hold it is told of.
func (w *operatorWorld) custodian(rw http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/v1/holds":
		var h wire.Hold
		json.NewDecoder(r.Body).Decode(&h)
		answerJSON(rw, 200, h)
	case "/v1/shares/destroy":
		var refs wire.ShareRefs
		json.NewDecoder(r.Body).Decode(&refs)
		var ans wire.RefAnswer
		for _, ref := range refs.Shares {
			ans.Results = append(ans.Results, wire.RefResult{EscrowID: ref.EscrowID, Outcome: "destroyed"})
		}
		w.mu.Lock()
		w.destroyed += len(refs.Shares)
		w.mu.Unlock()
		answerJSON(rw, 200, ans)
	default:
		w.t.Errorf("a custodian was asked %s %s", r.Method, r.URL.Path)
		http.NotFound(rw, r)
	}
}

// deposit records an escrow of conversation name with both custodians'
// receipts, as a deposit leaves it.
func (w *operatorWorld) deposit(name, keyID string) {
	w.t.Helper()
	rec := escrow.Escrow{EscrowID: uuid.NewString(), ConversationID: pseudonym.Synthetic(name), KeyID: keyID, Threshold: 2,
		Custodians: []string{"custodian-1", "custodian-2"}, KeyCommitment: "sha256:" + strings.Repeat("ab", 32), Depositor: "gateway-1",
		CustodianSet: "sha256:" + strings.Repeat("cd", 32)}
	for i, c := range rec.Custodians {
		rec.Shares = append(rec.Shares, shares.SignedReceipt{Receipt: shares.Receipt{Kind: shares.ReceiptDeposit, Custodian: c,
			EscrowID: rec.EscrowID, Index: i + 1, Locator: "deposits/" + uuid.NewString(), SealedSHA256: shares.SealedHash([]byte(c + keyID))}})
	}
	if _, err := w.rows.Insert(context.Background(), rec); err != nil {
		w.t.Fatal(err)
	}
}

// count is the number of rows of table.
func (w *operatorWorld) count(table string) int {
	w.t.Helper()
	var n int
	if err := w.pool.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		w.t.Fatal(err)
	}
	return n
}

// asked is how many shares the custodians were asked to destroy.
func (w *operatorWorld) asked() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.destroyed
}

// run runs args in-process with the world's environment; with terminal
// set, answer is what the person types.
func (w *operatorWorld) run(terminal bool, answer string, args ...string) (stdout, stderr string, err error) {
	var out, errOut bytes.Buffer
	c := &call{stdout: &out, stderr: &errOut, getenv: func(k string) string { return w.env[k] }, stdin: strings.NewReader(answer), terminal: terminal}
	err = c.dispatch(context.Background(), commands(), args)
	return out.String(), errOut.String(), err
}

// TestEscrowDestroyAsksFirst: escrow destroy --before 2099-01-01 (the
// measured mistake) first shows what is due, read from the database:
// how many keys of how many conversations, deposited when, how many a
// legal hold keeps, and the cutoff in the future taken as now. Without a
// terminal and without --yes, or answered no, it refuses (non-zero) and
// no custodian is asked and no row changes; --dry-run shows and exits 0,
// changing nothing, even with --yes; --yes destroys what was shown.
func TestEscrowDestroyAsksFirst(t *testing.T) {
	w := newOperatorWorld(t)
	w.deposit("conv-a", "epoch-1")
	w.deposit("conv-a", "epoch-2")
	w.deposit("conv-held", "epoch-1")
	if err := w.rows.PlaceHold(context.Background(), uuid.NewString(), pseudonym.Synthetic("conv-held"), "preservation order 17", "counsel"); err != nil {
		t.Fatal(err)
	}
	untouched := func(what string) {
		t.Helper()
		if n := w.asked(); n != 0 {
			t.Fatalf("%s: the custodians were asked to destroy %d shares", what, n)
		}
		if n := w.count("escrow_destructions"); n != 0 {
			t.Fatalf("%s: %d escrows are marked destroyed", what, n)
		}
		if n := w.count("escrow_keys"); n != 3 {
			t.Fatalf("%s: %d escrow rows, want 3", what, n)
		}
	}
	wantPlan := func(what, out string) {
		t.Helper()
		for _, want := range []string{
			"WARNING: --before 2099-01-01T00:00:00Z is in the future",
			"due        2 escrowed keys of 1 conversation, deposited ",
			"held back  1 escrowed key of 1 conversation under a legal hold: kept",
			"custodians custodian-1, custodian-2: each destroys its share",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: the plan lacks %q:\n%s", what, want, out)
			}
		}
	}

	stdout, stderr, err := w.run(false, "y\n", "escrow", "destroy", "--before", "2099-01-01")
	if !errors.Is(err, errNotConfirmed) || exitStatus(err) == 0 || !strings.Contains(err.Error(), "pass --yes") || stdout != "" {
		t.Errorf("no terminal, no --yes: exit %d, %v, stdout %q", exitStatus(err), err, stdout)
	}
	wantPlan("no terminal", stderr)
	untouched("no terminal, no --yes")

	_, stderr, err = w.run(true, "n\n", "escrow", "destroy", "--before", "2099-01-01")
	if !errors.Is(err, errNotConfirmed) || !strings.Contains(stderr, "destroy 2 escrowed keys at every custodian? This cannot be undone. [y/N]") {
		t.Errorf("answered no: %v\n%s", err, stderr)
	}
	untouched("answered no")

	for _, args := range [][]string{{"--dry-run"}, {"--dry-run", "--yes"}} {
		stdout, stderr, err = w.run(false, "", append([]string{"escrow", "destroy", "--before", "2099-01-01"}, args...)...)
		if err != nil || !strings.Contains(stderr, "dry run: nothing was changed") {
			t.Errorf("%v: %v\n%s", args, err, stderr)
		}
		wantPlan(fmt.Sprint(args), stdout)
		untouched(fmt.Sprint(args))
	}

	stdout, stderr, err = w.run(false, "", "escrow", "destroy", "--before", "2099-01-01", "--yes")
	if err != nil || !strings.Contains(stdout, "destroyed 2, kept under legal hold 1, failed 0") {
		t.Fatalf("--yes: %v\n%s\n%s", err, stdout, stderr)
	}
	if w.asked() != 4 || w.count("escrow_destructions") != 2 {
		t.Errorf("--yes: %d shares asked, %d escrows marked destroyed; want 4 and 2", w.asked(), w.count("escrow_destructions"))
	}
	stdout, _, err = w.run(false, "", "escrow", "destroy", "--before", "2099-01-01")
	if err != nil || !strings.Contains(stdout, "nothing to destroy") {
		t.Errorf("nothing left due: %v %q", err, stdout)
	}
}

// TestEscrowReleaseHoldAsksFirst: release-hold shows the hold (id,
// conversation, reason, who placed it and when) before it records a
// release; without a terminal and without --yes it refuses and records
// nothing, --dry-run records nothing, --yes records the release once,
// and a released hold is refused before anything is asked.
func TestEscrowReleaseHoldAsksFirst(t *testing.T) {
	w := newOperatorWorld(t)
	ctx := context.Background()
	hold, convo := uuid.NewString(), pseudonym.Synthetic("conv-held")
	if err := w.rows.PlaceHold(ctx, hold, convo, "preservation order 17", "counsel"); err != nil {
		t.Fatal(err)
	}
	wantHold := func(what, out string) {
		t.Helper()
		for _, want := range []string{"legal hold " + hold, "conversation " + convo, "reason       preservation order 17", "placed       by counsel at 20"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: the output lacks %q:\n%s", what, want, out)
			}
		}
	}
	_, stderr, err := w.run(false, "", "escrow", "release-hold", "--id", hold)
	if !errors.Is(err, errNotConfirmed) || exitStatus(err) == 0 {
		t.Errorf("no terminal, no --yes: exit %d, %v", exitStatus(err), err)
	}
	wantHold("no terminal", stderr)
	if n := w.count("legal_hold_releases"); n != 0 {
		t.Fatalf("a refused release-hold recorded %d releases", n)
	}
	stdout, _, err := w.run(false, "", "escrow", "release-hold", "--id", hold, "--dry-run")
	if err != nil {
		t.Errorf("--dry-run: %v", err)
	}
	wantHold("--dry-run", stdout)
	if n := w.count("legal_hold_releases"); n != 0 {
		t.Fatalf("--dry-run recorded %d releases", n)
	}
	stdout, _, err = w.run(false, "", "escrow", "release-hold", "--id", hold, "--yes")
	if err != nil || !strings.Contains(stdout, "legal hold "+hold+" released at the mediator only") || w.count("legal_hold_releases") != 1 {
		t.Fatalf("--yes: %v %q, %d releases", err, stdout, w.count("legal_hold_releases"))
	}
	_, _, err = w.run(false, "", "escrow", "release-hold", "--id", hold, "--yes")
	if err == nil || !strings.Contains(err.Error(), "released at the mediator already, by counsel") {
		t.Errorf("a released hold: %v", err)
	}
}

// TestRosterProposeAsksFirst: roster propose works the draft out here as
// the next version of the verified chain and shows its digest and what it
// changes before it files anything; without a terminal and without
// --yes, or answered no, nothing is filed; --dry-run files nothing; --yes
// files it and prints the digest.
func TestRosterProposeAsksFirst(t *testing.T) {
	f := newFakeMediator(t, func(c []string) []string { return c })
	var mu sync.Mutex
	proposed := 0
	var founding atomic.Bool // no version adopted yet: GET /v1/roster answers 404
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if founding.Load() && r.URL.Path == "/v1/roster" {
			answerError(rw, 404, "not_found")
			return
		}
		if r.Method == "POST" && r.URL.Path == "/v1/roster/proposals" {
			mu.Lock()
			proposed++
			mu.Unlock()
			answerJSON(rw, 201, f.proposal())
			return
		}
		f.serve(rw, r)
	}))
	t.Cleanup(srv.Close)
	f.url = srv.URL
	draft, _ := json.Marshal(wire.RosterDraft{Approvers: f.next.Approvers, Custodians: f.next.Custodians, Threshold: f.next.Threshold, Rule: f.next.Rule})
	file := filepath.Join(t.TempDir(), "next.json")
	if err := os.WriteFile(file, draft, 0o644); err != nil {
		t.Fatal(err)
	}
	filed := func() int { mu.Lock(); defer mu.Unlock(); return proposed }

	_, stderr, err := f.run(false, "", "roster", "propose", "--file", file)
	if !errors.Is(err, errNotConfirmed) || exitStatus(err) == 0 || filed() != 0 {
		t.Fatalf("no terminal, no --yes: %v, %d filed", err, filed())
	}
	for _, want := range []string{"roster version 2, proposal " + f.digest, "follows    version 1 (" + f.gDigest + "), verified from your genesis"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("the plan lacks %q:\n%s", want, stderr)
		}
	}
	f.wantCustodianChanges(t, stderr)
	if _, stderr, err = f.run(true, "no\n", "roster", "propose", "--file", file); !errors.Is(err, errNotConfirmed) || filed() != 0 ||
		!strings.Contains(stderr, "propose roster version 2 ("+f.digest+")? [y/N]") {
		t.Fatalf("answered no: %v, %d filed\n%s", err, filed(), stderr)
	}
	stdout, _, err := f.run(false, "", "roster", "propose", "--file", file, "--dry-run")
	if err != nil || filed() != 0 || !strings.Contains(stdout, "proposal "+f.digest) {
		t.Fatalf("--dry-run: %v, %d filed\n%s", err, filed(), stdout)
	}
	stdout, stderr, err = f.run(false, "", "roster", "propose", "--file", file, "--yes")
	if err != nil || filed() != 1 || stdout != f.digest+"\n" || strings.Contains(stderr, "WARNING") {
		t.Fatalf("--yes: %v, %d filed, %q\n%s", err, filed(), stdout, stderr)
	}

	// Before any version is adopted the draft is the genesis: its digest
	// must be the one pinned.
	founding.Store(true)
	genesis, _ := json.Marshal(wire.RosterDraft{Approvers: f.genesis.Approvers, Custodians: f.genesis.Custodians, Threshold: f.genesis.Threshold,
		Rule: f.genesis.Rule})
	if err := os.WriteFile(file, genesis, 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, _, err = f.run(false, "", "roster", "propose", "--file", file, "--dry-run")
	if err != nil || !strings.Contains(stdout, "roster version 1, proposal "+f.gDigest) || !strings.Contains(stdout, "change     genesis: the first version") {
		t.Errorf("the genesis, --dry-run: %v\n%s", err, stdout)
	}
	if err := os.WriteFile(file, draft, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err = f.run(false, "", "roster", "propose", "--file", file, "--yes"); err == nil || !strings.Contains(err.Error(), "not the genesis you pin") || filed() != 1 {
		t.Errorf("another first version than the pinned genesis: %v, %d filed", err, filed())
	}
}

// TestHoldDeliverAsksBeforeALift: hold-deliver shows the statement, its
// signers and the custodians it goes to; it asks before a lift (which
// lets custodians destroy), not before a placement (which only
// protects), and --dry-run delivers neither.
func TestHoldDeliverAsksBeforeALift(t *testing.T) {
	versions := []roster.Roster{{Version: 1, Custodians: []roster.Custodian{{Name: "custodian-1", URL: "https://c1.example"}, {Name: "custodian-2", URL: "https://c2.example"}}}}
	hold := uuid.NewString()
	for _, tc := range []struct {
		action         string
		dryRun, yes    bool
		deliver, asked bool
	}{
		{approval.HoldLift, false, false, false, true},
		{approval.HoldLift, false, true, true, false},
		{approval.HoldLift, true, true, false, false},
		{approval.HoldPlace, false, false, true, false},
		{approval.HoldPlace, true, false, false, false},
	} {
		var out, errOut bytes.Buffer
		c := &call{stdout: &out, stderr: &errOut}
		g := guard{yes: &tc.yes, dryRun: &tc.dryRun}
		h := wire.SignedHold{HoldID: hold, ConversationID: "conv-a", Action: tc.action,
			Signatures: []wire.HoldSignature{{SignerID: "lena"}, {SignerID: "sam"}}}
		ok, err := confirmHoldDelivery(c, g, versions, h)
		if ok != tc.deliver || errors.Is(err, errNotConfirmed) != tc.asked {
			t.Errorf("%s dry-run %v yes %v: deliver %v, %v", tc.action, tc.dryRun, tc.yes, ok, err)
		}
		shown := out.String() + errOut.String()
		for _, want := range []string{"the " + tc.action + " of legal hold " + hold + " on conversation conv-a, signed by lena, sam", "to custodians custodian-1, custodian-2"} {
			if !strings.Contains(shown, want) {
				t.Errorf("%s: the output lacks %q:\n%s", tc.action, want, shown)
			}
		}
	}
}

// TestPoolTurnsJITOff: the service's pool runs with JIT and parallel
// plans off, so a probe the planner costs high for want of statistics is
// neither compiled first nor handed to worker processes, and plans every
// run of a statement for the table as it is (no generic plan cached while
// the table was small), unless the URL asks otherwise.
func TestPoolTurnsJITOff(t *testing.T) {
	ctx := context.Background()
	dsn := pgEnv.NewDatabase(t)
	sep := map[bool]string{true: "&", false: "?"}[strings.Contains(dsn, "?")]
	for _, c := range []struct{ dsn, jit, workers, plans string }{
		{dsn, "off", "0", "force_custom_plan"},
		{dsn + sep + "jit=on&max_parallel_workers_per_gather=2&plan_cache_mode=auto", "on", "2", "auto"},
	} {
		pool, err := openPool(ctx, c.dsn, pgmetrics.New(api.NewMetrics("test").Registry))
		if err != nil {
			t.Fatal(err)
		}
		var jit, workers, plans string
		if err := pool.QueryRow(ctx, "SELECT current_setting('jit'), current_setting('max_parallel_workers_per_gather'), current_setting('plan_cache_mode')").Scan(&jit, &workers, &plans); err != nil {
			t.Fatal(err)
		}
		pool.Close()
		if jit != c.jit || workers != c.workers || plans != c.plans {
			t.Errorf("jit = %s, max_parallel_workers_per_gather = %s, plan_cache_mode = %s through the service's pool, want %s, %s and %s", jit, workers, plans, c.jit, c.workers, c.plans)
		}
	}
}

package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/mediatorhq/mediator/client"
	"github.com/mediatorhq/mediator/dev"
	"github.com/mediatorhq/mediator/shares"
	"github.com/mediatorhq/mediator/wire"
)

// TestDepositsCannotBeReplayedOrUndone plays the mediator's host against
// five custodian processes on the real Vault, with what it has: every
// deposit body it forwarded, the mediator's custodian token, its
// database, and the power to kill its process. It replays a body under a
// new escrow id, under the same one, and after destruction: 0 of 5
// custodians store it. It aborts a deposit whose depositor holds every
// receipt: 5 of 5 refuse, and `mediator escrow check` finds the share at
// each. Killed between the custodians' commits and its own, it leaves an
// orphan, which `mediator escrow reconcile` reports at every custodian.
// An approver's hold, delivered directly and never through the mediator,
// keeps a key's shares past the custodians' minimum retention under the
// mediator's destroy order.
func TestDepositsCannotBeReplayedOrUndone(t *testing.T) {
	ctx := context.Background()
	keys, trusted := e2eApprovers()
	cs := startCustodians(t, nil, dev.CustodianOptions{Approvers: trusted, MinRetention: 2 * time.Second})
	in := startServe(t, serveOpts{custodians: cs})
	in.waitReady(t, 60*time.Second)
	ensureRoster(t, in, keys)
	genesis, _ := in.genesis.Digest()
	tok := func(sub string, roles ...string) string { s, _ := in.issuer.Issue(sub, roles, time.Hour); return s }
	dep := tok("gw", "depositor")
	gw, _ := newClient(in.base, dep, http.DefaultClient)
	remotes, err := mustParse(t, cs.file).Remotes() // the mediator's token: the host has it
	if err != nil {
		t.Fatal(err)
	}
	set, err := gw.CustodianSet(ctx, cs.digest)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := shares.NewSplitter(set)
	if err != nil {
		t.Fatal(err)
	}
	key := []byte("0123456789abcdef0123456789abcdef")

	// body is a v2 deposit of key as the gateway's client builds it: what
	// the host sees.
	body := func(keyID string) wire.DepositRequest {
		b := shares.Binding{EscrowID: uuid.NewString(), DepositedAt: shares.FormatTime(time.Now())}
		commitment, sealed, err := sp.SplitBound(conv("conv-d"), keyID, b, key)
		if err != nil {
			t.Fatal(err)
		}
		req := wire.DepositRequest{ConversationID: conv("conv-d"), KeyID: keyID, Commitment: commitment, CustodianSet: cs.digest,
			Threshold: set.Threshold, EscrowID: b.EscrowID, DepositedAt: b.DepositedAt}
		for _, s := range sealed {
			req.Shares = append(req.Shares, wire.DepositShare{Custodian: s.Custodian, Index: s.Index, Sealed: s.Sealed})
		}
		return req
	}
	// replay posts req's shares to every custodian with the mediator's
	// token, as the mediator forwards them, and returns how many stored
	// one and the item codes of the others.
	replay := func(req wire.DepositRequest, escrowID string) (int, []string) {
		stored, codes := 0, []string{}
		for i, r := range remotes {
			res, err := r.Store(ctx, wire.ShareToStore{EscrowID: escrowID, ConversationID: req.ConversationID, KeyID: req.KeyID,
				Index: i + 1, Commitment: req.Commitment, Sealed: req.Shares[i].Sealed, Depositor: "gw", DepositedAt: req.DepositedAt})
			switch {
			case err != nil:
				t.Fatalf("replay at %s: %v", r.Name, err)
			case res.Stored != nil:
				stored++
			default:
				codes = append(codes, res.Error.Code)
			}
		}
		return stored, codes
	}
	allAre := func(codes []string, want string) bool {
		for _, c := range codes {
			if c != want {
				return false
			}
		}
		return len(codes) == 5
	}

	var (
		first wire.DepositRequest
		ans   wire.DepositResponse
		refs  []wire.ShareRef
	)
	step(t, "the gateway deposits and holds every custodian's receipt", func(t *testing.T) {
		first = body("k1")
		raw, _ := json.Marshal(first)
		code, m := post(t, in.base+"/v1/escrow/keys", "application/json", dep, raw)
		if code != 201 {
			t.Fatalf("deposit: %d %v", code, m)
		}
		b, _ := json.Marshal(m)
		if err := json.Unmarshal(b, &ans); err != nil {
			t.Fatal(err)
		}
		if ans.EscrowID != first.EscrowID {
			t.Fatalf("escrow %s, not the %s the shares were sealed for", ans.EscrowID, first.EscrowID)
		}
		if err := client.CheckDepositReceipts(set, ans, conv("conv-d"), "k1", first.Commitment, nil); err != nil {
			t.Fatal(err)
		}
		for _, r := range ans.Receipts {
			refs = append(refs, wire.ShareRef{EscrowID: ans.EscrowID, Locator: r.Receipt.Locator})
		}
	})

	step(t, "the host replays the body under a new escrow id: 0 of 5 store it", func(t *testing.T) {
		if n, codes := replay(first, uuid.NewString()); n != 0 || !allAre(codes, "share_invalid") {
			t.Fatalf("under a new escrow id: %d stored, codes %v", n, codes)
		}
		if n, codes := replay(first, first.EscrowID); n != 0 || !allAre(codes, "replayed") {
			t.Fatalf("under its own escrow id: %d stored, codes %v", n, codes)
		}
		// Through the API, as another depositor, under a new escrow id.
		again := first
		again.EscrowID = uuid.NewString()
		raw, _ := json.Marshal(again)
		if code, m := post(t, in.base+"/v1/escrow/keys", "application/json", tok("mallory", "depositor"), raw); code != 422 {
			t.Fatalf("the body replayed through the API: %d %v", code, m)
		}
	})

	step(t, "the host aborts a deposit whose depositor saw every receipt: refused, the share stays", func(t *testing.T) {
		for i, r := range remotes {
			res, err := r.Abort(ctx, []wire.ShareRef{refs[i]})
			if err != nil || res[0].Outcome != "committed" {
				t.Fatalf("abort at %s: %+v %v", r.Name, res, err)
			}
		}
		env := []string{"MEDIATOR_URL=" + in.base, "MEDIATOR_TOKEN=" + dep, "MEDIATOR_ROSTER_GENESIS=" + genesis}
		stdout, stderr, err := runCmd(t, env, "escrow", "check", "--conversation", conv("conv-d"), "--key-id", "k1")
		if err != nil || !strings.Contains(stdout, "5 of 5 custodians keep a share of "+conv("conv-d")+"/k1") || strings.Count(stdout, " kept ") != 5 {
			t.Fatalf("escrow check: %v\n%s\n%s", err, stdout, stderr)
		}
	})

	step(t, "destroyed at retention end, the body is never stored again", func(t *testing.T) {
		time.Sleep(2500 * time.Millisecond) // past the custodians' 2 s minimum retention
		for i, r := range remotes {
			res, err := r.Destroy(ctx, []wire.ShareRef{refs[i]})
			if err != nil || res[0].Outcome != "destroyed" {
				t.Fatalf("destroy at %s: %+v %v", r.Name, res, err)
			}
		}
		if n, codes := replay(first, first.EscrowID); n != 0 || !allAre(codes, "replayed") {
			t.Fatalf("the destroyed body replayed: %d stored, codes %v", n, codes)
		}
		fresh := body("k1")
		if n, codes := replay(fresh, fresh.EscrowID); n != 0 || !allAre(codes, "destroyed") {
			t.Fatalf("the destroyed key sealed afresh: %d stored, codes %v", n, codes)
		}
		env := []string{"MEDIATOR_URL=" + in.base, "MEDIATOR_TOKEN=" + dep, "MEDIATOR_ROSTER_GENESIS=" + genesis}
		stdout, _, err := runCmd(t, env, "escrow", "check", "--conversation", conv("conv-d"), "--key-id", "k1")
		if err == nil || strings.Count(stdout, " destroyed ") != 5 || !strings.Contains(stdout, "0 of 5 custodians keep") {
			t.Fatalf("escrow check after destruction: %v\n%s", err, stdout)
		}
	})

	step(t, "an approver places a hold directly while the mediator withholds it: the shares outlive a destroy order", func(t *testing.T) {
		held, err := gw.Deposit(ctx, cs.digest, conv("conv-held"), "k1", key)
		if err != nil {
			t.Fatal(err)
		}
		hold := uuid.NewString()
		dir := t.TempDir()
		keyFile := filepath.Join(dir, "lena.key")
		kb, _ := json.Marshal(map[string]any{"type": "mediator-approver-key-v1", "private_key": keys["lena"].Seed()})
		if err := os.WriteFile(keyFile, kb, 0o600); err != nil {
			t.Fatal(err)
		}
		sig, stderr, err := runCmd(t, nil, "escrow", "hold-sign", "--action", "place", "--hold-id", hold, "--conversation", conv("conv-held"),
			"--key", keyFile, "--as", "lena")
		if err != nil {
			t.Fatalf("lena signs the hold: %v\n%s", err, stderr)
		}
		sigFile := filepath.Join(dir, "hold.sigs")
		if err := os.WriteFile(sigFile, []byte(sig), 0o600); err != nil {
			t.Fatal(err)
		}
		env := []string{"MEDIATOR_URL=" + in.base, "MEDIATOR_TOKEN=" + tok("lena", "approver"), "MEDIATOR_ROSTER_GENESIS=" + genesis}
		stdout, stderr, err := runCmd(t, env, "escrow", "hold-deliver", "--action", "place", "--hold-id", hold, "--conversation", conv("conv-held"),
			"--signatures", sigFile)
		if err != nil || !strings.Contains(stdout, "5 of 5 custodians hold the place") {
			t.Fatalf("lena delivers the hold: %v\n%s\n%s", err, stdout, stderr)
		}
		// The mediator never heard of the hold. Past the custodians'
		// minimum retention, it orders the shares destroyed.
		time.Sleep(2500 * time.Millisecond)
		for i, r := range remotes {
			res, err := r.Destroy(ctx, []wire.ShareRef{{EscrowID: held.EscrowID, Locator: held.Receipts[i].Receipt.Locator}})
			if err != nil || res[0].Outcome != "held" {
				t.Fatalf("a destroy order at %s: %+v %v", r.Name, res, err)
			}
		}
		stdout, _, err = runCmd(t, env, "escrow", "check", "--conversation", conv("conv-held"), "--key-id", "k1")
		if err != nil || strings.Count(stdout, "on record: "+hold) != 5 || !strings.Contains(stdout, "5 of 5 custodians keep a share") {
			t.Fatalf("escrow check of the held key: %v\n%s", err, stdout)
		}
	})

	step(t, "the mediator killed mid-deposit leaves an orphan that reconciliation reports", func(t *testing.T) {
		auditorTok := tok("sue", "auditor")
		auditor, _ := newClient(in.base, auditorTok, http.DefaultClient)
		logKey, err := auditor.VerifierKey(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// A live deposit, which only the log's entry keeps from being an
		// orphan.
		if _, err := gw.Deposit(ctx, cs.digest, conv("conv-d"), "k2", key); err != nil {
			t.Fatal(err)
		}
		env := []string{"MEDIATOR_URL=" + in.base, "MEDIATOR_TOKEN=" + auditorTok, "MEDIATOR_ROSTER_GENESIS=" + genesis}
		// The log's bundle holds what its published checkpoint covers,
		// which follows an append by about a second.
		var stdout, stderr string
		for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
			if stdout, stderr, err = runCmd(t, env, "escrow", "reconcile", "--key", logKey, "--abort-window", "0s"); strings.Contains(stdout, "with 3 deposits") {
				break
			}
		}
		if err != nil || !strings.Contains(stdout, "0 findings") || !strings.Contains(stdout, "with 3 deposits the log holds") {
			t.Fatalf("reconcile before: %v\n%s\n%s", err, stdout, stderr)
		}
		// The host holds the rows' table so that the mediator's commit
		// waits after every custodian committed its share, then kills it.
		db, err := pgx.Connect(ctx, in.dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close(ctx)
		tx, err := db.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "LOCK TABLE escrow_keys IN EXCLUSIVE MODE"); err != nil {
			t.Fatal(err)
		}
		go gw.Deposit(ctx, cs.digest, conv("conv-d"), "k-orphan", key)
		kept := func() int {
			n := 0
			for i, c := range set.Custodians {
				inv, err := client.CustodianStatus(ctx, nil, cs.cs[i].URL, c.Name, c.SigningKey, conv("conv-d"), "k-orphan")
				if err == nil && len(inv.Shares) == 1 && inv.Shares[0].State == shares.StateKept {
					n++
				}
			}
			return n
		}
		deadline := time.Now().Add(30 * time.Second)
		for kept() < 5 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if n := kept(); n != 5 {
			t.Fatalf("%d of 5 custodians committed the deposit", n)
		}
		if err := in.proc.stop(t, syscall.SIGKILL); err == nil {
			t.Log("the mediator exited cleanly before its kill")
		}
		tx.Rollback(ctx)
		in.restart(t)
		if n := countRows(t, in.dsn, "escrow_keys"); n != 3 {
			t.Fatalf("%d escrow rows: the killed deposit committed", n)
		}
		stdout, stderr, err = runCmd(t, env, "escrow", "reconcile", "--key", logKey, "--abort-window", "0s")
		if err == nil || strings.Count(stdout, " orphan ") != 5 || !strings.Contains(stdout, "5 findings") {
			t.Fatalf("reconcile after the kill: %v\n%s\n%s", err, stdout, stderr)
		}
	})
}

package escrow_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/audit"
	"github.com/mediatorhq/mediator/client"
	"github.com/mediatorhq/mediator/dev"
	"github.com/mediatorhq/mediator/escrow"
	"github.com/mediatorhq/mediator/invalid"
	"github.com/mediatorhq/mediator/pseudonym"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/shares"
	"github.com/mediatorhq/mediator/test/harness"
	"github.com/mediatorhq/mediator/test/harness/custodians"
	"github.com/mediatorhq/mediator/test/testdb"
	"github.com/mediatorhq/mediator/wire"
)

var env *harness.Env

func TestMain(m *testing.M) { harness.Main(m, &env) }

// fixture is the escrow service on a fresh database and five custodians.
type fixture struct {
	pool     *pgxpool.Pool
	cs       *custodians.Set
	rows     *escrow.PGRows
	svc      *escrow.Service
	splitter *shares.Splitter
}

func newFixture(t testing.TB, opts dev.CustodianOptions) *fixture {
	t.Helper()
	pool := testdb.Pool(t, env)
	cs := custodians.Start(t, env, opts)
	rows := escrow.NewPGRows(pool, audit.NewTxAppender())
	sp, err := shares.NewSplitter(cs.SharesSet())
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{pool: pool, cs: cs, rows: rows, svc: cs.Escrow(t, rows, rows), splitter: sp}
}

func newKey(t testing.TB) []byte {
	t.Helper()
	k := make([]byte, 32)
	rand.Read(k)
	return k
}

// ps is the pseudonym the tests give conversation name.
func ps(name string) string { return pseudonym.Synthetic(name) }

// request is a deposit of key as a depositor seals it, under the
// conversation's pseudonym.
func (f *fixture) request(t testing.TB, convo, keyID string, key []byte) escrow.DepositRequest {
	t.Helper()
	return f.rawRequest(t, ps(convo), keyID, key)
}

// rawRequest is request with the conversation id as given.
func (f *fixture) rawRequest(t testing.TB, convo, keyID string, key []byte) escrow.DepositRequest {
	t.Helper()
	commitment, sealed, err := f.splitter.Split(convo, keyID, key)
	if err != nil {
		t.Fatal(err)
	}
	return escrow.DepositRequest{ConversationID: convo, KeyID: keyID, Commitment: commitment, CustodianSet: f.cs.Digest,
		Threshold: f.splitter.Set().Threshold, Shares: sealed, Depositor: "gateway-3"}
}

// held counts the escrow's shares the custodians still hold, reading their
// stores with Vault's root token (as a test may; the mediator cannot).
func (f *fixture) held(t *testing.T, rec escrow.Escrow) int {
	t.Helper()
	admin, err := vaultapi.NewClient(&vaultapi.Config{Address: env.Vault.Addr})
	if err != nil {
		t.Fatal(err)
	}
	admin.SetToken(env.Vault.Token)
	n := 0
	for i, c := range f.cs.Custodians {
		sec, err := admin.KVv2(c.Config.KV.Mount).Get(context.Background(), c.Config.KV.Prefix+"/"+rec.Shares[i].Receipt.Locator)
		if err == nil && sec.Data[rec.EscrowID] != nil {
			n++
		}
	}
	return n
}

// TestDepositForwardsSealedSharesOnly: a deposit is stored as one share per
// custodian, each with a receipt the custodian signed; a resend of the
// same key is idempotent, another key under the id a conflict; nothing in
// the database, log or answers holds the key or a share.
func TestDepositForwardsSealedSharesOnly(t *testing.T) {
	f := newFixture(t, dev.CustodianOptions{})
	ctx := context.Background()
	key := newKey(t)
	req := f.request(t, "conv-1", "epoch-1", key)
	rec, created, err := f.svc.Deposit(ctx, req)
	if err != nil || !created {
		t.Fatal(err)
	}
	if len(rec.Shares) != 5 || rec.Threshold != 3 || rec.KeyCommitment != shares.Commitment(ps("conv-1"), "epoch-1", key) ||
		rec.Depositor != "gateway-3" || rec.CustodianSet != f.cs.Digest || rec.AuditSeq < 0 {
		t.Fatalf("escrow: %+v", rec)
	}
	for i, r := range rec.Shares {
		if err := r.Verify(f.cs.Signer(i)); err != nil || r.Receipt.Index != i+1 {
			t.Fatalf("receipt %d: %v", i, err)
		}
	}
	if n := f.held(t, rec); n != 5 {
		t.Fatalf("%d custodians hold a share, want 5", n)
	}
	again, created, err := f.svc.Deposit(ctx, f.request(t, "conv-1", "epoch-1", key))
	if err != nil || created || again.EscrowID != rec.EscrowID {
		t.Fatalf("resend: %+v %v %v", again, created, err)
	}
	// The resend's answer carries the stored receipts, which the
	// depositor checks: without them it could not tell a kept deposit
	// from a dropped one.
	if len(again.Shares) != len(rec.Shares) {
		t.Fatalf("the resend's answer carries %d receipts, want %d", len(again.Shares), len(rec.Shares))
	}
	for i, r := range again.Shares {
		if r.Hash() != rec.Shares[i].Hash() || r.Verify(f.cs.Signer(i)) != nil {
			t.Fatalf("the resend's receipt %d is not the stored one", i)
		}
	}
	if _, _, err := f.svc.Deposit(ctx, f.request(t, "conv-1", "epoch-1", newKey(t))); !errors.Is(err, escrow.ErrConflict) {
		t.Fatalf("another key: %v", err)
	}
	// Canary: no form of the key or of a plaintext share in the database.
	var dump string
	if err := f.pool.QueryRow(ctx, `SELECT string_agg(t::text, ' ') FROM (
		SELECT row_to_json(e)::text AS t FROM escrow_keys e UNION ALL SELECT row_to_json(s)::text FROM escrow_custodian_shares s
		UNION ALL SELECT encode(leaf, 'escape') FROM audit_entries) x`).Scan(&dump); err != nil {
		t.Fatal(err)
	}
	for _, form := range []string{base64.StdEncoding.EncodeToString(key), hex.EncodeToString(key), base64.RawURLEncoding.EncodeToString(key)} {
		if strings.Contains(dump, form) {
			t.Fatal("the key is in the database")
		}
	}
	if !strings.Contains(dump, "gateway-3") || !strings.Contains(dump, "receipt_sha256") {
		t.Fatal("the deposit's log entry lacks the depositor or the receipts")
	}
}

// TestDepositIsAllOrNothing: with a custodian down the deposit fails with
// 503, no row is recorded, and the custodians that stored their share
// aborted it; a share sealed wrong is a validation error naming the
// custodian, with the same clean-up; a deposit sealed for another set is
// refused before any custodian is asked.
func TestDepositIsAllOrNothing(t *testing.T) {
	f := newFixture(t, dev.CustodianOptions{})
	ctx := context.Background()
	f.cs.Stop(2)
	req := f.request(t, "conv-down", "k", newKey(t))
	if _, _, err := f.svc.Deposit(ctx, req); !errors.Is(err, escrow.ErrUnavailable) || !strings.Contains(err.Error(), "custodian-3") {
		t.Fatalf("deposit with a custodian down: %v", err)
	}
	var rows int
	f.pool.QueryRow(ctx, "SELECT count(*) FROM escrow_keys").Scan(&rows)
	if rows != 0 {
		t.Fatalf("a failed deposit left %d rows", rows)
	}
	// The four custodians that stored their share aborted it.
	for _, i := range []int{0, 1, 3, 4} {
		if n := f.cs.Counter(i, "mediator_custodian_lifecycle_total", "aborted", "aborted"); n != 1 {
			t.Fatalf("custodian-%d aborted %v shares, want 1", i+1, n)
		}
	}
	f.cs.Run(2)

	bad := f.request(t, "conv-bad", "k", newKey(t))
	bad.Shares[3].Sealed = bytes.Clone(bad.Shares[2].Sealed) // custodian-3's share offered to custodian-4
	_, _, err := f.svc.Deposit(ctx, bad)
	ve, ok := invalid.As(err)
	if !ok || ve.Code != escrow.CodeShareInvalid || !strings.Contains(ve.Reason, "custodian-4") {
		t.Fatalf("a share sealed wrong: %v", err)
	}
	other := f.request(t, "conv-set", "k", newKey(t))
	other.CustodianSet = "sha256:" + strings.Repeat("0", 64)
	if _, _, err := f.svc.Deposit(ctx, other); !errors.Is(err, escrow.ErrSetMismatch) {
		t.Fatalf("another set: %v", err)
	}
	for _, convo := range []string{"+1 415 555 0100", "grp_2026_11_30", "conv-1", pseudonym.Synthetic("x")[:46]} {
		named := f.rawRequest(t, convo, "k", newKey(t))
		if _, _, err := f.svc.Deposit(ctx, named); !isInvalidField(err, "not_a_pseudonym", "conversation_id") {
			t.Fatalf("a conversation id that is not a pseudonym: %v", err)
		}
	}
	swapped := f.request(t, "conv-order", "k", newKey(t))
	swapped.Shares[0], swapped.Shares[1] = swapped.Shares[1], swapped.Shares[0]
	if _, _, err := f.svc.Deposit(ctx, swapped); !errors.As(err, &ve) {
		t.Fatalf("shares out of order: %v", err)
	}
	f.pool.QueryRow(ctx, "SELECT count(*) FROM escrow_keys").Scan(&rows)
	if rows != 0 {
		t.Fatalf("refused deposits left %d rows", rows)
	}
}

func TestConcurrentDepositsOfOneKeyIDMakeOneEscrow(t *testing.T) {
	f := newFixture(t, dev.CustodianOptions{})
	key := newKey(t)
	var wg sync.WaitGroup
	ids := make([]string, 6)
	for i := range ids {
		wg.Go(func() {
			rec, _, err := f.svc.Deposit(context.Background(), f.request(t, "race", "k", key))
			if err != nil {
				t.Error(err)
			}
			// Winner or not, each answer carries the escrow's receipts.
			if len(rec.Shares) != 5 {
				t.Errorf("a deposit of the race answered %d receipts", len(rec.Shares))
			}
			ids[i] = rec.EscrowID
		})
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("concurrent deposits made several escrows: %v", ids)
		}
	}
}

// TestKeyIDsCannotBeSquatted plays a depositor that claims another's
// (conversation, key id) first: the genuine deposit still makes its own
// escrow, naming its depositor; the genuine depositor's resend is the same
// escrow, and its deposit of a different key under the id is a conflict.
func TestKeyIDsCannotBeSquatted(t *testing.T) {
	f := newFixture(t, dev.CustodianOptions{})
	ctx := context.Background()
	squat := f.request(t, "conv-s", "epoch-1", newKey(t))
	squat.Depositor = "gw-evil"
	forged, created, err := f.svc.Deposit(ctx, squat)
	if err != nil || !created {
		t.Fatalf("the squatter's deposit: %v", err)
	}
	key := newKey(t)
	genuine := f.request(t, "conv-s", "epoch-1", key)
	rec, created, err := f.svc.Deposit(ctx, genuine)
	if err != nil || !created || rec.EscrowID == forged.EscrowID || rec.Depositor != "gateway-3" || forged.Depositor != "gw-evil" {
		t.Fatalf("the genuine deposit after the squat: %+v created=%v %v", rec, created, err)
	}
	if again, created, err := f.svc.Deposit(ctx, genuine); err != nil || created || again.EscrowID != rec.EscrowID {
		t.Fatalf("a resend: %+v created=%v %v", again, created, err)
	}
	if _, _, err := f.svc.Deposit(ctx, f.request(t, "conv-s", "epoch-1", newKey(t))); !errors.Is(err, escrow.ErrConflict) {
		t.Fatalf("another key under the depositor's id: %v, want ErrConflict", err)
	}
}

// holdDuringRun is LifecycleRows with a hook: a hold is placed on a conversation
// right after the destruction run has read which escrows are due, as an
// operator's hold racing a run would be.
type holdDuringRun struct {
	*escrow.PGRows
	svc   *escrow.Service
	convo string
}

func (h *holdDuringRun) DueForDestruction(ctx context.Context, before time.Time) ([]escrow.Escrow, []string, error) {
	due, held, err := h.PGRows.DueForDestruction(ctx, before)
	if err == nil {
		_, err = h.svc.PlaceHold(ctx, h.convo, "preservation order during the run", "counsel")
	}
	return due, held, err
}

// TestDestroyAtRetentionEndRespectsLegalHolds: destroyed means every
// custodian destroyed its share and the escrow is marked with its audit
// entry; a held conversation's key survives until the hold is released —
// also when the hold is placed while a run is going, and when only the
// mediator released it: custodians destroy once approvers who meet the
// roster's rule sign the lift; a key id destroyed cannot be deposited
// again.
func TestDestroyAtRetentionEndRespectsLegalHolds(t *testing.T) {
	keys := map[string]ed25519.PrivateKey{}
	var approvers []roster.Approver
	for _, a := range [][2]string{{"lena", "legal"}, {"sam", "security"}} {
		pub, priv, _ := ed25519.GenerateKey(rand.Reader)
		keys[a[0]] = priv
		approvers = append(approvers, roster.Approver{ID: a[0], Roles: []string{a[1]}, PublicKey: pub})
	}
	f := newFixture(t, dev.CustodianOptions{MinRetention: time.Nanosecond, Approvers: approvers})
	ctx := context.Background()
	a, _, err := f.svc.Deposit(ctx, f.request(t, "free", "k", newKey(t)))
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := f.svc.Deposit(ctx, f.request(t, "held", "k", newKey(t)))
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := f.svc.Deposit(ctx, f.request(t, "late-hold", "k", newKey(t)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.PlaceHold(ctx, "14155550100@s.whatsapp.net", "case 2026-117", "counsel@example"); !isInvalidField(err, "not_a_pseudonym", "conversation_id") {
		t.Fatalf("a hold naming a raw conversation id: %v", err)
	}
	hold, err := f.svc.PlaceHold(ctx, ps("held"), "case 2026-117 preservation order", "counsel@example")
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := f.svc.Destroy(ctx, a.CreatedAt.Add(-time.Hour)); err != nil || len(rep.Destroyed)+len(rep.Held) != 0 {
		t.Fatalf("early run: %+v %v", rep, err)
	}
	racing := &holdDuringRun{PGRows: f.rows, convo: ps("late-hold")}
	svc := f.cs.Escrow(t, f.rows, racing)
	racing.svc = svc
	rep, err := svc.Destroy(ctx, time.Now().Add(time.Minute))
	if err != nil || len(rep.Destroyed) != 1 || rep.Destroyed[0] != a.EscrowID || len(rep.Held) != 2 || len(rep.Failed) != 0 {
		t.Fatalf("destroy run: %+v %v", rep, err)
	}
	if n := f.held(t, a); n != 0 {
		t.Fatalf("%d custodians still hold a share of a destroyed escrow", n)
	}
	if n := f.held(t, c); n != 5 {
		t.Fatalf("the escrow held during the run lost shares: %d left", n)
	}
	if _, _, err := f.svc.Deposit(ctx, f.request(t, "free", "k", newKey(t))); !errors.Is(err, escrow.ErrDestroyed) {
		t.Fatalf("re-deposit after destruction: %v", err)
	}
	if err := f.svc.ReleaseHold(ctx, hold, "counsel@example"); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.ReleaseHold(ctx, hold, "counsel@example"); !errors.Is(err, escrow.ErrNotFound) {
		t.Fatalf("second release: %v", err)
	}
	// Released at the mediator only: every custodian keeps the hold.
	rep, err = f.svc.Destroy(ctx, time.Now().Add(time.Minute))
	if err != nil || len(rep.Destroyed) != 0 || !strings.Contains(rep.Failed[b.EscrowID], "held") {
		t.Fatalf("after the mediator's release alone: %+v %v", rep, err)
	}
	// lena and sam sign the lift and deliver it to each custodian.
	canonical, _ := f.cs.Genesis().Canonical()
	chain := []roster.Signed{{Roster: canonical, Signatures: []roster.Signature{
		roster.Sign(keys["lena"], roster.Digest(canonical), "lena"), roster.Sign(keys["sam"], roster.Digest(canonical), "sam")}}}
	lift := wire.SignedHold{Roster: chain, HoldID: hold, ConversationID: ps("held"), Action: approval.HoldLift}
	for _, id := range []string{"lena", "sam"} {
		lift.Signatures = append(lift.Signatures, wire.HoldSignature{SignerID: id, Signature: approval.SignHold(keys[id], hold, ps("held"), approval.HoldLift, id)})
	}
	for _, c := range f.cs.Custodians {
		if _, err := client.SendSignedHold(ctx, nil, c.URL, lift); err != nil {
			t.Fatalf("the signed lift at %s: %v", c.URL, err)
		}
	}
	rep, err = f.svc.Destroy(ctx, time.Now().Add(time.Minute))
	if err != nil || len(rep.Destroyed) != 1 || rep.Destroyed[0] != b.EscrowID {
		t.Fatalf("after release: %+v %v", rep, err)
	}
	var kinds string
	f.pool.QueryRow(ctx, "SELECT string_agg(kind, ',' ORDER BY seq) FROM audit_entries WHERE kind LIKE 'escrow.%' AND kind <> 'escrow.deposit'").Scan(&kinds)
	if kinds != "escrow.legal_hold,escrow.legal_hold,escrow.destroy,escrow.legal_hold_release,escrow.destroy" {
		t.Fatalf("lifecycle entries: %s", kinds)
	}
}

// BenchmarkDeposit measures deposits end to end: the depositor's split and
// sealing to five custodians included, each custodian opening, wrapping
// (Transit) and storing its share, and the group-committed rows.
func BenchmarkDeposit(b *testing.B) {
	f := newFixture(b, dev.CustodianOptions{})
	ctx := context.Background()
	b.SetParallelism(64) // deposits wait on custodians and Vault, not CPU
	var n sync.Mutex
	i := 0
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n.Lock()
			i++
			id := fmt.Sprint(i)
			n.Unlock()
			if _, _, err := f.svc.Deposit(ctx, f.request(b, "bench", id, newKey(b))); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "deposits/s")
	// How well concurrent deposits merge: shares per store call (and so per
	// write in a custodian's Vault).
	stored, calls := 0.0, 0.0
	for i := range f.cs.Custodians {
		stored += f.cs.Counter(i, "mediator_custodian_shares_total", "stored")
		calls += f.cs.Counter(i, "mediator_custodian_http_requests_total", "200", "/v1/shares") // labels sorted by name
	}
	if calls > 0 {
		b.ReportMetric(stored/calls, "shares/call")
	}
}

// BenchmarkDepositLatency is one deposit at a time, end to end as
// BenchmarkDeposit: its p50 and p99.
func BenchmarkDepositLatency(b *testing.B) {
	f := newFixture(b, dev.CustodianOptions{})
	ctx := context.Background()
	var lat []time.Duration
	i := 0
	for b.Loop() {
		i++
		t0 := time.Now()
		if _, _, err := f.svc.Deposit(ctx, f.request(b, "latency", fmt.Sprint(i), newKey(b))); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// isInvalidField reports whether err is an *invalid.Error for field under
// the rule code.
func isInvalidField(err error, code, field string) bool {
	e, ok := invalid.As(err)
	return ok && e.Code == code && e.Field == field
}

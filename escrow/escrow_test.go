package escrow

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/shamir"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediatorhq/mediator/audit"
	vaultsetup "github.com/mediatorhq/mediator/deploy/vault"
	"github.com/mediatorhq/mediator/dev/servers"
	"github.com/mediatorhq/mediator/test/harness"
	"github.com/mediatorhq/mediator/test/testdb"
	"github.com/mediatorhq/mediator/vaultclient"
)

var env *harness.Env

func TestMain(m *testing.M) { harness.Main(m, &env) }

// vaultPair is a bootstrapped Vault with an admin client and the service's
// least-privilege AppRole client.
type vaultPair struct {
	admin, service *vaultapi.Client
}

func bootstrapped(t testing.TB, v *servers.Vault) vaultPair {
	t.Helper()
	ctx := context.Background()
	admin, err := vaultapi.NewClient(&vaultapi.Config{Address: v.Addr})
	if err != nil {
		t.Fatal(err)
	}
	admin.SetToken(v.Token)
	creds, err := vaultsetup.Bootstrap(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := vaultclient.Connect(ctx, env.Log, vaultclient.Config{Addr: v.Addr, RoleID: creds.RoleID, SecretID: creds.SecretID})
	if err != nil {
		t.Fatal(err)
	}
	return vaultPair{admin: admin, service: svc}
}

// custodiansOn returns custodians from…to on c, each with a store of its
// own (prefix shares/custodian-N), so tests can remove or replace one
// custodian's share.
func custodiansOn(c *vaultapi.Client, from, to int) []Custodian {
	var out []Custodian
	for i := from; i <= to; i++ {
		out = append(out, Custodian{
			Name:    vaultsetup.CustodianKey(i),
			Wrapper: NewTransitWrapper(c, vaultsetup.TransitMount, vaultsetup.CustodianKey(i)),
			Store:   KVStore{Client: c, Mount: vaultsetup.KVMount, Prefix: vaultsetup.SharePrefix + "/" + vaultsetup.CustodianKey(i)},
		})
	}
	return out
}

// sharedStoreCustodians is the default configuration: five custodian keys
// on one Vault, their shares in one store (one KV entry per deposit).
func sharedStoreCustodians(c *vaultapi.Client) []Custodian {
	store := KVStore{Client: c, Mount: vaultsetup.KVMount, Prefix: vaultsetup.SharePrefix}
	var out []Custodian
	for i := 1; i <= 5; i++ {
		out = append(out, Custodian{
			Name:    vaultsetup.CustodianKey(i),
			Wrapper: NewTransitWrapper(c, vaultsetup.TransitMount, vaultsetup.CustodianKey(i)),
			Store:   store,
		})
	}
	return out
}

type fixture struct {
	pool *pgxpool.Pool
	svc  *Service
	logs *bytes.Buffer
}

func newFixture(t testing.TB, custodians []Custodian) *fixture {
	t.Helper()
	pool := testdb.Pool(t, env)
	logs := &bytes.Buffer{}
	svc, err := New(Config{Custodians: custodians, Threshold: 3, Rows: NewPGRows(pool, audit.NewStore(pool)),
		Log: slog.New(slog.NewJSONHandler(&lockedWriter{w: logs}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{pool: pool, svc: svc, logs: logs}
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func newKey(t testing.TB) []byte {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func TestDepositReconstructAndIdempotence(t *testing.T) {
	v := bootstrapped(t, env.Vault)
	f := newFixture(t, custodiansOn(v.service, 1, 5))
	ctx := context.Background()
	key := newKey(t)
	orig := bytes.Clone(key)
	rec, created, err := f.svc.Deposit(ctx, DepositRequest{ConversationID: "conv-1", KeyID: "epoch-7", Key: key})
	if err != nil || !created {
		t.Fatalf("deposit: %v %v", created, err)
	}
	if !bytes.Equal(key, make([]byte, 32)) {
		t.Fatal("the caller's key buffer was not zeroed")
	}
	if rec.Threshold != 3 || rec.Shares != 5 || len(rec.Custodians) != 5 || rec.KeyCommitment != Commitment("conv-1", "epoch-7", orig) {
		t.Fatalf("receipt: %+v", rec)
	}
	got, _, err := f.svc.Reconstruct(ctx, rec.EscrowID, "test-decision")
	if err != nil || !bytes.Equal(got, orig) {
		t.Fatalf("reconstruct: %v", err)
	}
	// The same key again: the original receipt, not a new escrow.
	again, created, err := f.svc.Deposit(ctx, DepositRequest{ConversationID: "conv-1", KeyID: "epoch-7", Key: bytes.Clone(orig)})
	if err != nil || created || again.EscrowID != rec.EscrowID || again.AuditSeq != rec.AuditSeq {
		t.Fatalf("same key again: %+v %v %v", again, created, err)
	}
	// Another key under the same id: conflict.
	if _, _, err := f.svc.Deposit(ctx, DepositRequest{ConversationID: "conv-1", KeyID: "epoch-7", Key: newKey(t)}); !errors.Is(err, ErrConflict) {
		t.Fatalf("different key: %v", err)
	}
	// Bad requests.
	for _, r := range []DepositRequest{
		{ConversationID: "c", KeyID: "k", Key: make([]byte, 15)},
		{ConversationID: "c", KeyID: "k", Key: make([]byte, 65)},
		{ConversationID: "", KeyID: "k", Key: make([]byte, 16)},
		{ConversationID: "c", KeyID: strings.Repeat("k", 129), Key: make([]byte, 16)},
	} {
		if _, _, err := f.svc.Deposit(ctx, r); !errors.Is(err, ErrInvalid) {
			t.Errorf("%d-byte key, ids %q/%q: %v", len(r.Key), r.ConversationID, r.KeyID, err)
		}
	}
	// The deposit is in the audit log, without key material.
	e, err := audit.NewStore(f.pool).Entry(ctx, rec.AuditSeq)
	if err != nil || !strings.Contains(string(e.Leaf), `"kind":"escrow.deposit"`) || !strings.Contains(string(e.Leaf), rec.KeyCommitment) {
		t.Fatalf("audit entry: %s %v", e.Leaf, err)
	}
	assertNoKeyMaterial(t, f, v, orig)
}

// assertNoKeyMaterial: the key never appears in PostgreSQL, the logs, or
// Vault KV in clear.
func assertNoKeyMaterial(t *testing.T, f *fixture, v vaultPair, key []byte) {
	t.Helper()
	forms := []string{base64.StdEncoding.EncodeToString(key), base64.RawURLEncoding.EncodeToString(key), hex.EncodeToString(key), string(key)}
	ctx := context.Background()
	var dump strings.Builder
	for _, q := range []string{
		"SELECT t::text FROM escrow_keys t", "SELECT t::text FROM audit_entries t",
		"SELECT convert_from(leaf, 'UTF8') FROM audit_entries",
	} {
		rows, err := f.pool.Query(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		texts, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		dump.WriteString(strings.Join(texts, "\n"))
	}
	kv := dumpKV(t, v.admin, vaultsetup.SharePrefix)
	if !strings.Contains(kv, "vault:v1:") {
		t.Fatal("read no wrapped shares from KV; the check would prove nothing")
	}
	for _, form := range forms {
		for where, text := range map[string]string{"postgres": dump.String(), "logs": f.logs.String(), "vault kv": kv} {
			if strings.Contains(text, form) {
				t.Errorf("key material found in %s", where)
			}
		}
	}
}

// dumpKV returns every secret under prefix in the share mount, read
// recursively with an admin token.
func dumpKV(t *testing.T, admin *vaultapi.Client, prefix string) string {
	t.Helper()
	var b strings.Builder
	list, err := admin.Logical().List(vaultsetup.KVMount + "/metadata/" + prefix)
	if err != nil {
		t.Fatal(err)
	}
	if list == nil {
		return ""
	}
	for _, k := range list.Data["keys"].([]any) {
		name := k.(string)
		if strings.HasSuffix(name, "/") {
			b.WriteString(dumpKV(t, admin, prefix+"/"+strings.TrimSuffix(name, "/")))
			continue
		}
		sec, err := admin.Logical().Read(vaultsetup.KVMount + "/data/" + prefix + "/" + name)
		if err != nil {
			t.Fatal(err)
		}
		if sec != nil {
			fmt.Fprintln(&b, sec.Data)
		}
	}
	return b.String()
}

// TestSharedStoreOneEntryPerDeposit: custodians sharing a store (the
// default) write one KV entry per deposit, with one field per custodian,
// each wrapped by its own custodian key; a substituted field is detected by
// its hash, and destroying the entry leaves nothing.
func TestSharedStoreOneEntryPerDeposit(t *testing.T) {
	v := bootstrapped(t, env.Vault)
	f := newFixture(t, sharedStoreCustodians(v.service))
	ctx := context.Background()
	key := newKey(t)
	rec, _, err := f.svc.Deposit(ctx, DepositRequest{ConversationID: "shared", KeyID: "k", Key: bytes.Clone(key)})
	if err != nil {
		t.Fatal(err)
	}
	sec, err := v.admin.KVv2(vaultsetup.KVMount).Get(ctx, vaultsetup.SharePrefix+"/"+rec.EscrowID)
	if err != nil || len(sec.Data) != 5 || sec.VersionMetadata.Version != 1 {
		t.Fatalf("entry: %v %v", sec, err)
	}
	// Each field is a Transit ciphertext of its own custodian's key: it
	// decrypts under that key and no other.
	c1 := NewTransitWrapper(v.admin, vaultsetup.TransitMount, vaultsetup.CustodianKey(1))
	if _, err := c1.Unwrap(ctx, aad("shared", "k"), []byte(sec.Data["custodian-1"].(string))); err != nil {
		t.Fatalf("custodian-1's field does not unwrap with custodian-1's key: %v", err)
	}
	if _, err := c1.Unwrap(ctx, aad("shared", "k"), []byte(sec.Data["custodian-2"].(string))); err == nil {
		t.Fatal("custodian-2's field unwrapped with custodian-1's key")
	}
	// Substitute custodian-1's share (an admin writes a new version).
	other, _ := shamir.Split(newKey(t), 5, 3)
	forged, err := c1.Wrap(ctx, aad("shared", "k"), other[0])
	if err != nil {
		t.Fatal(err)
	}
	data := sec.Data
	data["custodian-1"] = string(forged)
	if _, err := v.admin.KVv2(vaultsetup.KVMount).Put(ctx, vaultsetup.SharePrefix+"/"+rec.EscrowID, data); err != nil {
		t.Fatal(err)
	}
	got, _, err := f.svc.Reconstruct(ctx, rec.EscrowID, "d")
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("reconstruct around a substituted share: %v", err)
	}
	if !strings.Contains(f.logs.String(), `"custodians_failed":1`) {
		t.Fatalf("the substituted share was not skipped: %s", f.logs.String())
	}
	if errs := f.svc.destroyShares(ctx, rec.EscrowID); len(errs) != 0 {
		t.Fatal(errs)
	}
	if meta, err := v.admin.KVv2(vaultsetup.KVMount).GetMetadata(ctx, vaultsetup.SharePrefix+"/"+rec.EscrowID); err == nil {
		t.Fatalf("the entry survived destruction: %d versions", len(meta.Versions))
	}
	if _, _, err := f.svc.Reconstruct(ctx, rec.EscrowID, "d"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("reconstruct after the entry was destroyed: %v", err)
	}
}

func TestFewerThanKSharesCannotRebuild(t *testing.T) {
	v := bootstrapped(t, env.Vault)
	f := newFixture(t, custodiansOn(v.service, 1, 5))
	ctx := context.Background()
	key := newKey(t)
	rec, _, err := f.svc.Deposit(ctx, DepositRequest{ConversationID: "c", KeyID: "k", Key: bytes.Clone(key)})
	if err != nil {
		t.Fatal(err)
	}
	// Shamir itself: K−1 shares combine to something that is not the key.
	parts, _ := shamir.Split(key, 5, 3)
	if wrong, err := shamir.Combine(parts[:2]); err == nil && bytes.Equal(wrong, key) {
		t.Fatal("two shares rebuilt the key")
	}
	// Destroy three custodians' shares: only two remain.
	for i := 1; i <= 3; i++ {
		c := custodiansOn(v.admin, i, i)[0]
		if err := c.Store.Destroy(ctx, rec.EscrowID); err != nil {
			t.Fatal(err)
		}
	}
	_, _, err = f.svc.Reconstruct(ctx, rec.EscrowID, "d")
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "custodian-1") || !strings.Contains(err.Error(), "custodian-3") {
		t.Fatalf("reconstruct with 2 shares: %v", err)
	}
}

func TestTamperedShareIsSkipped(t *testing.T) {
	v := bootstrapped(t, env.Vault)
	f := newFixture(t, custodiansOn(v.service, 1, 5))
	ctx := context.Background()
	key := newKey(t)
	rec, _, err := f.svc.Deposit(ctx, DepositRequest{ConversationID: "c", KeyID: "k", Key: bytes.Clone(key)})
	if err != nil {
		t.Fatal(err)
	}
	// An attacker with admin rights replaces custodian-1's share with a
	// validly wrapped share of another key.
	other, _ := shamir.Split(newKey(t), 5, 3)
	c1 := custodiansOn(v.admin, 1, 1)[0]
	forged, err := c1.Wrapper.Wrap(ctx, aad("c", "k"), other[0])
	if err != nil {
		t.Fatal(err)
	}
	path := fmt.Sprintf("%s/data/%s/%s/%s", vaultsetup.KVMount, vaultsetup.SharePrefix, c1.Name, rec.EscrowID)
	if _, err := v.admin.Logical().Write(path, map[string]any{"data": map[string]any{c1.Name: string(forged)}}); err != nil {
		t.Fatal(err)
	}
	got, _, err := f.svc.Reconstruct(ctx, rec.EscrowID, "d")
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("reconstruct around a tampered share: %v", err)
	}
	if !strings.Contains(f.logs.String(), `"custodians_failed":1`) {
		t.Fatalf("the skipped custodian is not recorded: %s", f.logs.String())
	}
}

func TestVaultRefusesOverwritingAShare(t *testing.T) {
	v := bootstrapped(t, env.Vault)
	c := custodiansOn(v.service, 1, 1)[0]
	ctx := context.Background()
	p := "overwrite-test-" + hex.EncodeToString(newKey(t)[:4])
	if err := c.Store.Put(ctx, p, map[string][]byte{c.Name: []byte("vault:v1:first")}); err != nil {
		t.Fatal(err)
	}
	if err := c.Store.Put(ctx, p, map[string][]byte{c.Name: []byte("vault:v1:second")}); !errors.Is(err, ErrShareExists) && (err == nil || !strings.Contains(err.Error(), "permission denied")) {
		t.Fatalf("overwrite through the store: %v", err)
	}
	// Even without check-and-set, the service token may not update.
	path := fmt.Sprintf("%s/data/%s/%s/%s", vaultsetup.KVMount, vaultsetup.SharePrefix, c.Name, p)
	if _, err := v.service.Logical().Write(path, map[string]any{"data": map[string]any{c.Name: "x"}}); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("a raw overwrite by the service token was not refused by Vault: %v", err)
	}
	got, err := c.Store.Get(ctx, p)
	if err != nil || string(got[c.Name]) != "vault:v1:first" {
		t.Fatalf("share changed: %q %v", got, err)
	}
}

// TestCustodiansOnTwoVaults: custodians 1–2 on a second Vault server. When
// it stops, a deposit fails with nothing left behind anywhere, and an
// earlier key still rebuilds from the three custodians on the first.
func TestCustodiansOnTwoVaults(t *testing.T) {
	ctx := context.Background()
	second, err := servers.StartVault(ctx, nil, servers.VaultOptions{IgnoreEnv: true})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Stop()
	a, b := bootstrapped(t, env.Vault), bootstrapped(t, second)
	custodians := append(custodiansOn(b.service, 1, 2), custodiansOn(a.service, 3, 5)...)
	f := newFixture(t, custodians)
	key := newKey(t)
	rec, _, err := f.svc.Deposit(ctx, DepositRequest{ConversationID: "two", KeyID: "k1", Key: bytes.Clone(key)})
	if err != nil {
		t.Fatal(err)
	}
	before := shareLists(t, a.admin)
	second.Stop()
	_, _, err = f.svc.Deposit(ctx, DepositRequest{ConversationID: "two", KeyID: "k2", Key: newKey(t)})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("deposit with a custodian's Vault down: %v", err)
	}
	// Nothing left behind: no row, and the surviving Vault's shares are
	// exactly what they were before the failed deposit.
	var rows int
	if err := f.pool.QueryRow(ctx, "SELECT count(*) FROM escrow_keys").Scan(&rows); err != nil || rows != 1 {
		t.Fatalf("escrow rows = %d, %v", rows, err)
	}
	if after := shareLists(t, a.admin); after != before {
		t.Fatalf("the failed deposit left shares behind:\nbefore %s\nafter  %s", before, after)
	}
	got, _, err := f.svc.Reconstruct(ctx, rec.EscrowID, "d")
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("reconstruct with one Vault down: %v", err)
	}
}

// shareLists lists the escrow ids under custodians 3–5 in one Vault.
func shareLists(t *testing.T, admin *vaultapi.Client) string {
	t.Helper()
	var b strings.Builder
	for i := 3; i <= 5; i++ {
		list, err := admin.Logical().List(fmt.Sprintf("%s/metadata/%s/%s", vaultsetup.KVMount, vaultsetup.SharePrefix, vaultsetup.CustodianKey(i)))
		if err != nil {
			t.Fatal(err)
		}
		if list != nil {
			fmt.Fprintln(&b, list.Data["keys"])
		}
	}
	return b.String()
}

func TestConcurrentDepositsOfOneKeyIDMakeOneEscrow(t *testing.T) {
	v := bootstrapped(t, env.Vault)
	f := newFixture(t, custodiansOn(v.service, 1, 5))
	key := newKey(t)
	var wg sync.WaitGroup
	ids := make([]string, 6)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec, _, err := f.svc.Deposit(context.Background(), DepositRequest{ConversationID: "race", KeyID: "k", Key: bytes.Clone(key)})
			if err != nil {
				t.Error(err)
			}
			ids[i] = rec.EscrowID
		}()
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("concurrent deposits made several escrows: %v", ids)
		}
	}
}

func BenchmarkDeposit(b *testing.B) {
	v := bootstrapped(b, env.Vault)
	f := newFixture(b, sharedStoreCustodians(v.service))
	ctx := context.Background()
	b.SetParallelism(32) // deposits wait on Vault, not CPU
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := hex.EncodeToString(newKey(b)[:8])
			if _, _, err := f.svc.Deposit(ctx, DepositRequest{ConversationID: "bench", KeyID: id, Key: newKey(b)}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "deposits/s")
}

// TestDestroyAtRetentionEndRespectsLegalHolds: destroyed means the shares
// are gone from every custodian and reconstruction fails; a held
// conversation's key survives until the hold is released.
func TestDestroyAtRetentionEndRespectsLegalHolds(t *testing.T) {
	v := bootstrapped(t, env.Vault)
	f := newFixture(t, custodiansOn(v.service, 1, 5))
	rows := NewPGRows(f.pool, audit.NewStore(f.pool))
	ctx := context.Background()
	a, _, err := f.svc.Deposit(ctx, DepositRequest{ConversationID: "free", KeyID: "k", Key: newKey(t)})
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := f.svc.Deposit(ctx, DepositRequest{ConversationID: "held", KeyID: "k", Key: newKey(t)})
	if err != nil {
		t.Fatal(err)
	}
	hold, err := rows.PlaceHold(ctx, "held", "case 2026-117 preservation order", "counsel@example")
	if err != nil {
		t.Fatal(err)
	}
	// Nothing is due before the deposits.
	if rep, err := f.svc.Destroy(ctx, a.CreatedAt.Add(-time.Hour)); err != nil || len(rep.Destroyed)+len(rep.Held) != 0 {
		t.Fatalf("early run: %+v %v", rep, err)
	}
	rep, err := f.svc.Destroy(ctx, time.Now().Add(time.Minute))
	if err != nil || len(rep.Destroyed) != 1 || rep.Destroyed[0] != a.EscrowID || len(rep.Held) != 1 || rep.Held[0] != b.EscrowID || len(rep.Failed) != 0 {
		t.Fatalf("destroy run: %+v %v", rep, err)
	}
	if _, _, err := f.svc.Reconstruct(ctx, a.EscrowID, "d"); !errors.Is(err, ErrDestroyed) {
		t.Fatalf("reconstruct after destruction: %v", err)
	}
	// Unrecoverable, not merely marked: no custodian has a share left.
	for _, c := range custodiansOn(v.admin, 1, 5) {
		if _, err := c.Store.Get(ctx, a.EscrowID); err == nil {
			t.Fatalf("%s still holds a share of a destroyed escrow", c.Name)
		}
	}
	if _, _, err := f.svc.Reconstruct(ctx, b.EscrowID, "d"); err != nil {
		t.Fatalf("held key lost: %v", err)
	}
	if err := rows.ReleaseHold(ctx, hold, "counsel@example"); err != nil {
		t.Fatal(err)
	}
	if err := rows.ReleaseHold(ctx, hold, "counsel@example"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second release: %v", err)
	}
	rep, err = f.svc.Destroy(ctx, time.Now().Add(time.Minute))
	if err != nil || len(rep.Destroyed) != 1 || rep.Destroyed[0] != b.EscrowID {
		t.Fatalf("after release: %+v %v", rep, err)
	}
	var kinds string
	if err := f.pool.QueryRow(ctx, "SELECT string_agg(kind, ',' ORDER BY seq) FROM audit_entries").Scan(&kinds); err != nil {
		t.Fatal(err)
	}
	if kinds != "escrow.deposit,escrow.deposit,escrow.legal_hold,escrow.destroy,escrow.legal_hold_release,escrow.destroy" {
		t.Fatalf("audit trail: %s", kinds)
	}
}

// TestRewrapAfterRotation: after custodian-2's Transit key is rotated, an
// operator's rewrap moves its shares to the new version inside Vault; the
// key still rebuilds, and only from accepted shares.
func TestRewrapAfterRotation(t *testing.T) {
	v := bootstrapped(t, env.Vault)
	f := newFixture(t, custodiansOn(v.service, 1, 5))
	ctx := context.Background()
	key := newKey(t)
	rec, _, err := f.svc.Deposit(ctx, DepositRequest{ConversationID: "rot", KeyID: "k", Key: bytes.Clone(key)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.admin.Logical().Write(vaultsetup.TransitMount+"/keys/"+vaultsetup.CustodianKey(2)+"/rotate", nil); err != nil {
		t.Fatal(err)
	}
	// The operator's service instance: admin token (may update shares).
	op, err := New(Config{Custodians: custodiansOn(v.admin, 1, 5), Threshold: 3, Rows: NewPGRows(f.pool, audit.NewStore(f.pool))})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := op.Rewrap(ctx, map[string]bool{vaultsetup.CustodianKey(2): true})
	if err != nil || rep.Rewrapped < 1 || len(rep.Failed) != 0 {
		t.Fatalf("rewrap: %+v %v", rep, err)
	}
	c2 := custodiansOn(v.admin, 2, 2)[0]
	entry, err := c2.Store.Get(ctx, rec.EscrowID)
	if err != nil || !bytes.HasPrefix(entry[c2.Name], []byte("vault:v2:")) {
		t.Fatalf("share not moved to the new key version: %.12s %v", entry[c2.Name], err)
	}
	// Rebuild using custodian-2: make custodians 1 and 3 unavailable.
	for _, i := range []int{1, 3} {
		c := custodiansOn(v.admin, i, i)[0]
		c.Store.Destroy(ctx, rec.EscrowID)
	}
	got, _, err := f.svc.Reconstruct(ctx, rec.EscrowID, "d")
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("reconstruct after rewrap: %v", err)
	}
	// A second run finds nothing to do.
	if rep, err := op.Rewrap(ctx, map[string]bool{vaultsetup.CustodianKey(2): true}); err != nil || rep.Rewrapped != 0 {
		t.Fatalf("second rewrap: %+v %v", rep, err)
	}
}

// BenchmarkReconstruct100 rebuilds 100 escrowed keys (N=5, K=3), one after
// another, as a release of a 100-key scope would.
func BenchmarkReconstruct100(b *testing.B) {
	v := bootstrapped(b, env.Vault)
	f := newFixture(b, sharedStoreCustodians(v.service))
	ctx := context.Background()
	var ids []string
	for i := range 100 {
		rec, _, err := f.svc.Deposit(ctx, DepositRequest{ConversationID: "scope", KeyID: fmt.Sprint(i), Key: newKey(b)})
		if err != nil {
			b.Fatal(err)
		}
		ids = append(ids, rec.EscrowID)
	}
	for b.Loop() {
		for _, id := range ids {
			k, _, err := f.svc.Reconstruct(ctx, id, "bench")
			if err != nil {
				b.Fatal(err)
			}
			clear(k)
		}
	}
}

// BenchmarkDepositLatency deposits one key at a time and reports p50/p99.
func BenchmarkDepositLatency(b *testing.B) {
	v := bootstrapped(b, env.Vault)
	f := newFixture(b, sharedStoreCustodians(v.service))
	ctx := context.Background()
	var lat []time.Duration
	for b.Loop() {
		t0 := time.Now()
		if _, _, err := f.svc.Deposit(ctx, DepositRequest{ConversationID: "lat", KeyID: hex.EncodeToString(newKey(b)[:8]), Key: newKey(b)}); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

package custodian_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	vaultapi "github.com/hashicorp/vault/api"

	"github.com/mediatorhq/mediator/client"
	"github.com/mediatorhq/mediator/custodian"
	vaultsetup "github.com/mediatorhq/mediator/deploy/vault"
	"github.com/mediatorhq/mediator/dev"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/seal"
	"github.com/mediatorhq/mediator/shares"
	"github.com/mediatorhq/mediator/wire"
)

// TestHPKEKeyRotation: custodian 1 makes a new HPKE key. Until a roster
// version lists it, a share sealed to it is refused (share_invalid) and
// one sealed to the old key stored. Once a version listing it is pushed,
// the custodian publishes it, shares sealed to it are stored, and shares
// sealed to the old key still are within hpke_grace, across a restart.
// With its clock past the grace period the old key's shares are refused
// as retired_key and counted, also after a restart and a push of the same
// version again (the moment the key was replaced is kept in the store).
// Rewrap moves the new key to a new Transit key version, and it still
// opens after a restart.
func TestHPKEKeyRotation(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, dev.CustodianOptions{})
	cfg := f.set.Custodians[0].Config
	url := f.set.Custodians[0].URL
	grace := cfg.HPKEGrace.Duration
	if grace != 168*time.Hour {
		t.Fatalf("hpke_grace defaults to %s, want 168h", grace)
	}
	oldSet := f.set.SharesSet()
	oldKey := oldSet.Custodians[0].HPKEKey

	info, err := custodian.RotateHPKE(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "custodian-1" || !bytes.Equal(info.SigningKey, f.set.Signer(0)) || info.HPKEKey.Validate() != nil ||
		info.HPKEKey.Fingerprint() == oldKey.Fingerprint() {
		t.Fatalf("rotate-hpke answered %+v", info)
	}
	st := f.set.Running[0].StoreForTest()
	names, err := st.List(ctx, "hpke-keys")
	if err != nil || len(names) != 1 {
		t.Fatalf("hpke-keys: %v %v", names, err)
	}
	entry, err := st.Get(ctx, "hpke-keys/"+names[0])
	if err != nil {
		t.Fatal(err)
	}
	if w, _ := entry.Data["hpke_wrapped"].(string); !strings.HasPrefix(w, "vault:v1:") || entry.Data["fingerprint"] != info.HPKEKey.Fingerprint() {
		t.Fatalf("the stored key is not wrapped by the custodian's Transit key: %v", entry.Data)
	}
	// Init still prints the first key, the genesis's.
	if first, err := custodian.Init(ctx, cfg, nil); err != nil || first.HPKEKey.Fingerprint() != oldKey.Fingerprint() {
		t.Fatalf("init after a rotation: %v %v", first.HPKEKey.Fingerprint(), err)
	}
	// Another process of custodian 1, started before the roster changes,
	// its clock past the grace period.
	past := func() time.Time { return time.Now().Add(grace + time.Hour) }
	stale, err := custodian.Open(ctx, cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stale.Close()
	stale.SetClockForTest(past)
	newSet := oldSet
	newSet.Custodians = slices.Clone(oldSet.Custodians)
	newSet.Custodians[0].HPKEKey = info.HPKEKey

	remote := func(it wire.ShareToStore) wire.StoreResult {
		res, err := f.remotes[0].Store(ctx, it)
		if err != nil {
			t.Fatalf("store: %v", err)
		}
		return res
	}
	publishes := func(what string, want seal.PublicKey) {
		t.Helper()
		got, err := f.remotes[0].Info(ctx)
		if err != nil || got.HPKEKey.Fingerprint() != want.Fingerprint() {
			t.Errorf("%s: GET /v1/custodian names %s (%v), want %s", what, got.HPKEKey.Fingerprint(), err, want.Fingerprint())
		}
	}

	// Nothing changes before the roster lists the new key.
	expectStore(t, "before the roster, the new key", remote, shareFor(t, newSet, 0, time.Now()), "share_invalid")
	expectStore(t, "before the roster, the old key", remote, shareFor(t, oldSet, 0, time.Now()), "")
	publishes("before the roster", oldKey)

	// Version 2 lists the new key; it is pushed to custodian 1.
	genesis := f.set.Genesis()
	g, _ := genesis.Digest()
	v2 := genesis
	v2.Version, v2.Previous = 2, g
	v2.Custodians = slices.Clone(genesis.Custodians)
	v2.Custodians[0].HPKEKey = info.HPKEKey
	v2chain := []roster.Signed{f.chain[0], f.signed(t, v2, "lena", "sam")}
	if ans, err := client.PushRoster(ctx, nil, url, v2chain); err != nil || ans.Version != 2 {
		t.Fatalf("push version 2: %+v %v", ans, err)
	}
	publishes("after version 2", info.HPKEKey)
	expectStore(t, "version 2, the new key", remote, shareFor(t, newSet, 0, time.Now()), "")
	expectStore(t, "version 2, the old key within grace", remote, shareFor(t, oldSet, 0, time.Now()), "")
	retired, err := st.List(ctx, "hpke-retired")
	if err != nil || len(retired) != 1 || "sha256:"+retired[0] != oldKey.Fingerprint() {
		t.Fatalf("hpke-retired: %v %v, want the old key", retired, err)
	}
	// The other process, told of version 2 later, counts the grace period
	// from when the first one saw it: the old key is retired there.
	if _, err := stale.AcceptRoster(ctx, v2chain); err != nil {
		t.Fatal(err)
	}
	storeAt := func(c *custodian.Custodian) func(wire.ShareToStore) wire.StoreResult {
		return func(it wire.ShareToStore) wire.StoreResult {
			res, err := c.StoreShares(ctx, []wire.ShareToStore{it})
			if err != nil {
				t.Fatalf("store: %v", err)
			}
			return res[0]
		}
	}
	expectStore(t, "another process past grace, the old key", storeAt(stale), shareFor(t, oldSet, 0, past()), "retired_key")
	expectStore(t, "another process past grace, the new key", storeAt(stale), shareFor(t, newSet, 0, past()), "")
	stale.Close()

	// A restart keeps the key in force and the grace period.
	f.set.Stop(0)
	f.set.Run(0)
	publishes("after a restart", info.HPKEKey)
	expectStore(t, "after a restart, the new key", remote, shareFor(t, newSet, 0, time.Now()), "")
	expectStore(t, "after a restart, the old key within grace", remote, shareFor(t, oldSet, 0, time.Now()), "")

	// Past the grace period, on the custodian's clock: the old key's
	// shares are refused as retired_key, through restarts and a push of
	// the same version again.
	f.set.Stop(0)
	for restart := range 2 {
		var logs bytes.Buffer
		m := custodian.NewMetrics()
		c, err := custodian.Open(ctx, cfg, slog.New(slog.NewJSONHandler(&logs, nil)), m)
		if err != nil {
			t.Fatal(err)
		}
		ready := logLine(t, logs.Bytes(), "custodian ready")
		if ready["hpke_key"] != info.HPKEKey.Fingerprint() || !strings.Contains(jsonText(ready["hpke_keys_in_grace"]), oldKey.Fingerprint()+" until ") {
			t.Errorf("start %d: the ready line names %v in force and %v within grace", restart, ready["hpke_key"], ready["hpke_keys_in_grace"])
		}
		c.SetClockForTest(past)
		direct := storeAt(c)
		expectStore(t, "past grace, the old key", direct, shareFor(t, oldSet, 0, past()), "retired_key")
		expectStore(t, "past grace, the new key", direct, shareFor(t, newSet, 0, past()), "")
		if _, err := c.AcceptRoster(ctx, v2chain); err != nil {
			t.Fatal(err)
		}
		expectStore(t, "past grace, version 2 pushed again, the old key", direct, shareFor(t, oldSet, 0, past()), "retired_key")
		if got := counter(t, m, "mediator_custodian_shares_total", "retired_key"); got != 2 {
			t.Errorf("start %d: %v shares counted retired_key, want 2", restart, got)
		}
		if k := c.Info().HPKEKey; k.Fingerprint() != info.HPKEKey.Fingerprint() {
			t.Errorf("start %d: Info names %s", restart, k.Fingerprint())
		}
		c.Close()
	}

	// Rewrap moves the new key too (and the identity and the shares); it
	// opens after a restart.
	f.set.Run(0)
	admin, _ := vaultapi.NewClient(&vaultapi.Config{Address: env.Vault.Addr})
	admin.SetToken(env.Vault.Token)
	if _, err := admin.Logical().Write(vaultsetup.TransitMount+"/keys/custodian-1/rotate", nil); err != nil {
		t.Fatal(err)
	}
	st = f.set.Running[0].StoreForTest()
	ans, err := f.set.Running[0].Rewrap(ctx)
	if err != nil || ans.Rewrapped < 3 || len(ans.Failed) != 0 {
		t.Fatalf("rewrap: %+v %v", ans, err)
	}
	entry, err = st.Get(ctx, "hpke-keys/"+names[0])
	if w, _ := entry.Data["hpke_wrapped"].(string); err != nil || !strings.HasPrefix(w, "vault:v2:") {
		t.Fatalf("the new hpke key after rewrap: %v %v", entry.Data["hpke_wrapped"], err)
	}
	f.set.Stop(0)
	f.set.Run(0)
	expectStore(t, "after rewrap and a restart, the new key", remote, shareFor(t, newSet, 0, time.Now()), "")
	expectStore(t, "after rewrap and a restart, the old key within grace", remote, shareFor(t, oldSet, 0, time.Now()), "")
}

// TestHPKEKeyVersionsSkipped: a custodian that sees a chain replacing its
// key twice at once (it never saw the version in between) opens deposits
// sealed to each replaced key within grace; a version listing a key it does
// not hold leaves it publishing no key and refusing deposits to that key,
// while the replaced ones still open.
func TestHPKEKeyVersionsSkipped(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, dev.CustodianOptions{})
	cfg := f.set.Custodians[1].Config
	oldSet := f.set.SharesSet()
	setWith := func(k seal.PublicKey) shares.Set {
		s := oldSet
		s.Custodians = slices.Clone(oldSet.Custodians)
		s.Custodians[1].HPKEKey = k
		return s
	}
	var keys []seal.PublicKey
	for range 2 {
		info, err := custodian.RotateHPKE(ctx, cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, info.HPKEKey)
	}
	_, stranger, _ := seal.NewKey(seal.KEMMLKEM768X25519)
	chain := slices.Clone(f.chain)
	prev := f.set.Genesis()
	for _, k := range append(keys, stranger) {
		next := prev
		next.Version, next.Previous = prev.Version+1, roster.Digest(chain[len(chain)-1].Roster)
		next.Custodians = slices.Clone(prev.Custodians)
		next.Custodians[1].HPKEKey = k
		chain = append(chain, f.signed(t, next, "lena", "sam"))
		prev = next
	}
	remote := func(it wire.ShareToStore) wire.StoreResult {
		res, err := f.remotes[1].Store(ctx, it)
		if err != nil {
			t.Fatalf("store: %v", err)
		}
		return res
	}
	// Versions 2 and 3 at once: key 2 in force, the first key and key 1
	// within grace.
	if ans, err := client.PushRoster(ctx, nil, f.set.Custodians[1].URL, chain[:3]); err != nil || ans.Version != 3 {
		t.Fatalf("push versions 2 and 3: %+v %v", ans, err)
	}
	for name, set := range map[string]shares.Set{"key 2 (in force)": setWith(keys[1]), "key 1 (never seen in force)": setWith(keys[0]), "the first key": oldSet} {
		expectStore(t, "versions 2 and 3 at once, "+name, remote, shareFor(t, set, 1, time.Now()), "")
	}
	// Version 4 lists a key custodian 2 does not hold.
	if ans, err := client.PushRoster(ctx, nil, f.set.Custodians[1].URL, chain); err != nil || ans.Version != 4 {
		t.Fatalf("push version 4: %+v %v", ans, err)
	}
	if got, err := f.remotes[1].Info(ctx); err != nil || got.HPKEKey.KEMID != 0 || got.HPKEKey.PublicKey != nil {
		t.Errorf("a custodian not holding the key in force publishes %+v (%v)", got.HPKEKey, err)
	}
	expectStore(t, "version 4, the stranger's key", remote, shareFor(t, setWith(stranger), 1, time.Now()), "share_invalid")
	expectStore(t, "version 4, key 2 within grace", remote, shareFor(t, setWith(keys[1]), 1, time.Now()), "")
	expectStore(t, "version 4, the first key within grace", remote, shareFor(t, oldSet, 1, time.Now()), "")
}

// shareFor is custodian i's share (0-based) of a fresh v2 deposit sealed
// for set at time at, as the depositor sends it.
func shareFor(t *testing.T, set shares.Set, i int, at time.Time) wire.ShareToStore {
	t.Helper()
	sp, err := shares.NewSplitter(set)
	if err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 32)
	rand.Read(key)
	b := shares.Binding{EscrowID: uuid.NewString(), DepositedAt: shares.FormatTime(at)}
	keyID := "k-" + uuid.NewString()
	commitment, sealed, err := sp.SplitBound("conv-rotate", keyID, b, key)
	if err != nil {
		t.Fatal(err)
	}
	return wire.ShareToStore{EscrowID: b.EscrowID, ConversationID: "conv-rotate", KeyID: keyID, Index: i + 1,
		Commitment: commitment, Sealed: sealed[i].Sealed, Depositor: "gw", DepositedAt: b.DepositedAt}
}

// expectStore has store store it and checks the answer: stored when code
// is empty, else refused with code.
func expectStore(t *testing.T, what string, store func(wire.ShareToStore) wire.StoreResult, it wire.ShareToStore, code string) {
	t.Helper()
	res := store(it)
	switch {
	case code == "" && (res.Error != nil || res.Stored == nil):
		t.Errorf("%s: %+v, want it stored", what, res.Error)
	case code != "" && (res.Error == nil || res.Error.Code != code || res.Stored != nil):
		t.Errorf("%s: %+v %+v, want %s", what, res.Stored, res.Error, code)
	}
}

// logLine is the first JSON log line whose message starts with msg.
func logLine(t *testing.T, logs []byte, msg string) map[string]any {
	t.Helper()
	for line := range bytes.SplitSeq(logs, []byte("\n")) {
		var m map[string]any
		if json.Unmarshal(line, &m) == nil && strings.HasPrefix(m["msg"].(string), msg) {
			return m
		}
	}
	t.Fatalf("no log line %q in:\n%s", msg, logs)
	return nil
}

// jsonText is v as JSON.
func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// counter is the value of counter family name of m with the given label
// values; 0 when it has none.
func counter(t *testing.T, m *custodian.Metrics, name string, labelValues ...string) float64 {
	t.Helper()
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, c := range f.GetMetric() {
			var got []string
			for _, l := range c.GetLabel() {
				got = append(got, l.GetValue())
			}
			if slices.Equal(got, labelValues) {
				return c.GetCounter().GetValue()
			}
		}
	}
	return 0
}

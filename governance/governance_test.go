package governance

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mediatorhq/mediator/audit"
	"github.com/mediatorhq/mediator/invalid"
	"github.com/mediatorhq/mediator/policy"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/seal"
	"github.com/mediatorhq/mediator/shares"
	"github.com/mediatorhq/mediator/test/harness"
	"github.com/mediatorhq/mediator/test/testdb"
	"github.com/mediatorhq/mediator/wire"
)

var env *harness.Env

func TestMain(m *testing.M) { harness.MainPostgres(m, &env) }

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// custodianSet is the mediator's custodians file as Liveness compares it:
// a fake behind the package's own interface.
type custodianSet struct{ set shares.Set }

func (c custodianSet) Set() (shares.Set, string, error) {
	d, err := c.set.Digest()
	return c.set, d, err
}

// notifications records the events the service hands on.
type notifications struct {
	mu     sync.Mutex
	events []wire.Event
}

func (n *notifications) Notify(_ context.Context, e wire.Event) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.events = append(n.events, e)
}

func (n *notifications) types() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for _, e := range n.events {
		out = append(out, e.Type+"/"+e.Status)
	}
	return out
}

// world is the roster's workflow on a fresh database: a genesis of four
// approvers and five custodians, pinned and adopted, and the embedded
// release policy as the release rule.
type world struct {
	pool     *pgxpool.Pool
	svc      *Service
	clock    *clock
	keys     map[string]ed25519.PrivateKey
	genesis  roster.Roster
	notified *notifications
	metrics  *Metrics
}

var roles = map[string]string{"lena": "legal", "sam": "security", "nina": "legal", "olga": "security"}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{pool: testdb.Pool(t, env), clock: &clock{t: time.Now().UTC()}, keys: map[string]ed25519.PrivateKey{},
		notified: &notifications{}, metrics: NewMetrics(prometheus.NewRegistry())}
	g := roster.Roster{Version: 1, Threshold: 3, Rule: roster.DefaultRule()}
	for _, id := range slices.Sorted(maps.Keys(roles)) {
		pub, priv, _ := ed25519.GenerateKey(rand.Reader)
		w.keys[id] = priv
		g.Approvers = append(g.Approvers, roster.Approver{ID: id, Roles: []string{roles[id]}, PublicKey: pub})
	}
	for i := range 5 {
		_, hpke, err := seal.NewKey(seal.KEMX25519)
		if err != nil {
			t.Fatal(err)
		}
		sign, _, _ := ed25519.GenerateKey(rand.Reader)
		g.Custodians = append(g.Custodians, roster.Custodian{Name: fmt.Sprintf("custodian-%d", i+1),
			URL: fmt.Sprintf("https://custodian-%d.example", i+1), HPKEKey: hpke, SigningKey: sign})
	}
	c, err := g.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	w.genesis = g
	engine, err := policy.NewReloader(context.Background(), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	store := NewPGStore(w.pool, audit.NewTxAppender())
	w.svc = New(Config{Chain: store, Proposals: store, Checkins: store, RosterGenesis: roster.Digest(c),
		Custodians: custodianSet{g.Set()}, ReleaseRule: engine, Now: w.clock.now, Notifier: w.notified, Metrics: w.metrics})
	w.adopt(t, g, "lena", "sam", "nina", "olga")
	return w
}

// propose files next as the admin ada, numbered and linked by the service.
func (w *world) propose(t *testing.T, next roster.Roster) Proposal {
	t.Helper()
	next.Version, next.Previous = 0, ""
	p, err := w.svc.ProposeRoster(context.Background(), "ada", next)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (w *world) sign(p Proposal, id string, key ed25519.PrivateKey) (Proposal, error) {
	return w.svc.SignRoster(context.Background(), id, p.Digest, roster.Sign(key, p.Digest, id).Signature)
}

// adopt proposes next and has signers sign it with their keys in w.keys;
// it fails the test unless next is adopted.
func (w *world) adopt(t *testing.T, next roster.Roster, signers ...string) Proposal {
	t.Helper()
	p := w.propose(t, next)
	var err error
	for _, id := range signers {
		if p, err = w.sign(p, id, w.keys[id]); err != nil {
			t.Fatalf("%s signs: %v", id, err)
		}
	}
	if !p.Adopted {
		t.Fatalf("roster version %d not adopted: %v", p.Roster.Version, p.Progress.Missing)
	}
	return p
}

func (w *world) current(t *testing.T) roster.Roster {
	t.Helper()
	cur, _, err := w.svc.Roster(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return cur
}

// TestOnlyAQuorumAdoptsAVersion plays one admin, one approver and a
// newcomer without their key, each trying to change the roster alone: no
// version is adopted until a quorum of the version in force and the new
// key have signed, and a version that could never meet its own rule, or a
// first version that is not the pinned genesis, is refused outright.
func TestOnlyAQuorumAdoptsAVersion(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	cur := w.current(t)
	if cur.Version != 1 || testutil.ToFloat64(w.metrics.rosterVersionG) != 1 {
		t.Fatalf("genesis: version %d, metric %v", cur.Version, testutil.ToFloat64(w.metrics.rosterVersionG))
	}
	evePub, eve, _ := ed25519.GenerateKey(rand.Reader)
	next := cur
	next.Approvers = append(slices.Clone(cur.Approvers), roster.Approver{ID: "eve", Roles: []string{"legal", "security"}, PublicKey: evePub})
	p := w.propose(t, next)
	if p.Adopted || p.Roster.Version != 2 || p.Roster.Previous != w.svc.Genesis() || !slices.ContainsFunc(p.Changes, func(c string) bool { return strings.HasPrefix(c, "adds approver eve: ") }) {
		t.Fatalf("the proposal: version %d, previous %s, changes %v", p.Roster.Version, p.Roster.Previous, p.Changes)
	}
	var err error
	if p, err = w.sign(p, "eve", eve); err != nil || p.Adopted {
		t.Fatalf("eve's own signature: adopted %t, %v", p.Adopted, err)
	}
	if p, err = w.sign(p, "lena", w.keys["lena"]); err != nil || p.Adopted || !strings.Contains(strings.Join(p.Progress.Missing, ";"), "security role") {
		t.Fatalf("lena alone: %+v %v", p.Progress, err)
	}
	_, mallory, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := w.sign(p, "mallory", mallory); !errors.Is(err, ErrNotSigner) {
		t.Fatalf("someone in neither version: %v", err)
	}
	other := "sha256:" + strings.Repeat("0", 64)
	if _, err := w.svc.SignRoster(ctx, "sam", p.Digest, roster.Sign(w.keys["sam"], other, "sam").Signature); !errors.Is(err, ErrNotSigner) {
		t.Fatalf("a signature over another digest: %v", err)
	}
	if _, err := w.svc.SignRoster(ctx, "sam", "not-a-digest", nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a malformed digest: %v", err)
	}
	if w.current(t).Version != 1 {
		t.Fatal("the roster changed without a quorum")
	}
	if p, err = w.sign(p, "sam", w.keys["sam"]); err != nil || !p.Adopted {
		t.Fatalf("the quorum: adopted %t, %v", p.Adopted, err)
	}
	if v := w.current(t).Version; v != 2 || testutil.ToFloat64(w.metrics.rosterVersionG) != 2 {
		t.Fatalf("after adoption: version %d", v)
	}
	// A signature on the adopted proposal changes nothing; another
	// proposal for version 2 is stale.
	if p, err = w.sign(p, "nina", w.keys["nina"]); err != nil || !p.Adopted {
		t.Fatalf("a late signature: %+v %v", p.Adopted, err)
	}

	// Version 3 adds max without his proof of possession: never adopted.
	maxPub, _, _ := ed25519.GenerateKey(rand.Reader)
	v3 := w.current(t)
	v3.Approvers = append(slices.Clone(v3.Approvers), roster.Approver{ID: "max", Roles: []string{"legal"}, PublicKey: maxPub})
	p3 := w.propose(t, v3)
	w.keys["eve"] = eve
	for _, id := range []string{"lena", "sam", "olga", "eve"} {
		if p3, err = w.sign(p3, id, w.keys[id]); err != nil {
			t.Fatal(err)
		}
	}
	if p3.Adopted || !strings.Contains(strings.Join(p3.Progress.Missing, ";"), "max's signature with their new key") {
		t.Fatalf("max without proof of possession: %+v", p3.Progress)
	}

	// A version whose approvers cannot meet its own rule is refused.
	bad := w.current(t)
	bad.Rule = roster.Rule{MinSigners: 1, RequiredRoles: []string{"legal"}}
	bad.Version, bad.Previous = 0, ""
	_, err = w.svc.ProposeRoster(ctx, "ada", bad)
	if e, ok := invalid.As(err); !ok || e.Code != "invalid_roster" || e.Field != "roster" {
		t.Fatalf("a one-signer rule: %v", err)
	}
	if _, err := w.svc.ProposeRoster(ctx, "", w.current(t)); !isInvalid(err) {
		t.Fatalf("a proposal by nobody: %v", err)
	}
	if got := w.notified.types(); !slices.Contains(got, wire.EventRosterAdopted+"/adopted") || !slices.Contains(got, wire.EventRosterProposal+"/awaiting_signatures") {
		t.Fatalf("notified %v", got)
	}
}

// TestFirstVersionMustBeTheGenesis: before any version is adopted, only the
// pinned genesis may be proposed; anything else is a *NotGenesisError
// naming both digests, and a service that pins nothing trusts nothing.
func TestFirstVersionMustBeTheGenesis(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	store := NewPGStore(testdb.Pool(t, env), audit.NewTxAppender())
	fresh := New(Config{Chain: store, Proposals: store, Checkins: store, RosterGenesis: w.svc.Genesis()})
	if _, _, err := fresh.Roster(ctx); !errors.Is(err, ErrNotFound) {
		t.Fatalf("before the genesis is adopted: %v", err)
	}
	other := w.genesis
	other.Threshold = 2
	_, err := fresh.ProposeRoster(ctx, "ada", other)
	var ng *NotGenesisError
	if !errors.As(err, &ng) || !errors.Is(err, ErrNotGenesis) || ng.Pinned != w.svc.Genesis() || ng.Proposed == ng.Pinned {
		t.Fatalf("another first version: %v", err)
	}
	unpinned := New(Config{Chain: store, Proposals: store, Checkins: store})
	if _, _, err := unpinned.Roster(ctx); !errors.Is(err, ErrNoGenesis) {
		t.Fatalf("no pin: %v", err)
	}
}

// TestChainEditedInTheDatabase plays the database's superuser: a version
// written into the roster tables, with the newcomer's own signature, does
// not verify from the pinned genesis, so no roster is in force and the
// broken chain is counted.
func TestChainEditedInTheDatabase(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	forged := w.current(t)
	forged.Version, forged.Previous = 2, w.svc.Genesis()
	evePub, eve, _ := ed25519.GenerateKey(rand.Reader)
	forged.Approvers = append(slices.Clone(forged.Approvers), roster.Approver{ID: "eve", Roles: []string{"legal"}, PublicKey: evePub})
	c, _ := forged.Canonical()
	d := roster.Digest(c)
	sig := roster.Sign(eve, d, "eve")
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO roster_proposals (digest, version, canonical, proposed_by, audit_seq) VALUES ($1, 2, $2, 'ada', 0)`, []any{d, c}},
		{`INSERT INTO roster_signatures (digest, approver_id, key_id, signature, audit_seq) VALUES ($1, 'eve', $2, $3, 0)`, []any{d, sig.KeyID, sig.Signature}},
		{`INSERT INTO roster_versions (genesis, version, digest, audit_seq) VALUES ($1, 2, $2, 0)`, []any{w.svc.Genesis(), d}},
	} {
		if _, err := w.pool.Exec(ctx, q.sql, q.args...); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := w.svc.Roster(ctx); !errors.Is(err, ErrRosterBroken) {
		t.Fatalf("a forged version in the database: %v", err)
	}
	if _, err := w.svc.Checkin(ctx, "eve", w.clock.now(), ed25519.Sign(eve, roster.CheckinMessage("eve", w.clock.now().Truncate(time.Second)))); !errors.Is(err, ErrRosterBroken) {
		t.Fatalf("eve checks in under the forged version: %v", err)
	}
	if n := testutil.ToFloat64(w.metrics.rosterBrokenC); n < 1 {
		t.Fatalf("mediator_roster_chain_invalid_total = %v", n)
	}
}

// TestLiveness: approvers check in with signatures; the quorum is live
// only while those within the window can meet both rules; a check-in
// signed by another key, or for another time, is refused; and a roster
// whose custodians are not the mediator's is reported.
func TestLiveness(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	window := time.Hour
	live := func() Liveness {
		t.Helper()
		l, err := w.svc.Liveness(ctx, window)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	if l := live(); l.QuorumLive() || l.LivePerRole["legal"] != 0 || !l.CustodiansMatch {
		t.Fatalf("nobody checked in: %+v", l)
	}
	checkin := func(id string, key ed25519.PrivateKey, at time.Time) error {
		at = at.UTC().Truncate(time.Second)
		_, err := w.svc.Checkin(ctx, id, at, ed25519.Sign(key, roster.CheckinMessage(id, at)))
		return err
	}
	if err := checkin("lena", w.keys["sam"], w.clock.now()); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("lena's check-in with sam's key: %v", err)
	}
	if err := checkin("lena", w.keys["lena"], w.clock.now().Add(-time.Hour)); !isInvalid(err) {
		t.Fatalf("a check-in an hour old: %v", err)
	}
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	if err := checkin("mallory", stranger, w.clock.now()); !errors.Is(err, ErrUnknownApprover) {
		t.Fatalf("a check-in by someone not in the roster: %v", err)
	}
	if err := checkin("lena", w.keys["lena"], w.clock.now()); err != nil {
		t.Fatal(err)
	}
	if l := live(); l.QuorumLive() || l.LivePerRole["legal"] != 1 || l.LivePerRole["security"] != 0 {
		t.Fatalf("only legal is live: %+v", l)
	}
	if err := checkin("sam", w.keys["sam"], w.clock.now()); err != nil {
		t.Fatal(err)
	}
	if l := live(); !l.QuorumLive() || !l.ReleaseLive || !l.RosterLive {
		t.Fatalf("legal and security are live: %+v", l)
	}
	w.clock.add(2 * time.Hour)
	if l := live(); l.QuorumLive() || len(l.Live) != 0 {
		t.Fatalf("past the window: %+v", l)
	}
	next := w.current(t)
	next.Threshold--
	w.adopt(t, next, "lena", "sam")
	if l := live(); l.CustodiansMatch {
		t.Fatal("a custodians file that differs from the roster in force matches")
	}
}

// TestWatchLivenessNotifies: the watch keeps the liveness metrics and
// notifies once when the quorum stops being live and once when a proposal
// starts waiting too long; it stops when its context does.
func TestWatchLivenessNotifies(t *testing.T) {
	w := newWorld(t)
	ctx, cancel := context.WithCancel(context.Background())
	w.propose(t, w.genesis) // never signed: waits
	w.clock.add(time.Hour)
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.svc.WatchLiveness(ctx, LivenessWatch{Interval: 10 * time.Millisecond, Window: time.Hour, ProposalWait: time.Minute})
	}()
	deadline := time.Now().Add(10 * time.Second)
	want := []string{wire.EventQuorumNotLive + "/not_live", wire.EventRosterProposal + "/waiting_too_long"}
	for !containsAll(w.notified.types(), want) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // more rounds: nothing is notified twice
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the watch did not stop with its context")
	}
	got := w.notified.types()
	for _, e := range want {
		if n := count(got, e); n != 1 {
			t.Errorf("%s notified %d times, want once (all: %v)", e, n, got)
		}
	}
	if q, p := testutil.ToFloat64(w.metrics.quorumLive), testutil.ToFloat64(w.metrics.proposalWaiting); q != 0 || p < 3000 {
		t.Errorf("metrics: quorum live %v, oldest proposal waiting %v s", q, p)
	}
}

func isInvalid(err error) bool {
	_, ok := invalid.As(err)
	return ok
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

func count(have []string, s string) int {
	n := 0
	for _, h := range have {
		if h == s {
			n++
		}
	}
	return n
}

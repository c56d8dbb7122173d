package custodian_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mediatorhq/mediator/dev"
	"github.com/mediatorhq/mediator/shares"
	"github.com/mediatorhq/mediator/wire"
)

// TestDepositReplayRefused plays the mediator's host, which saw every
// deposit body and holds the mediator's custodian token: it posts the
// same sealed shares again, under a new escrow id, under the same one,
// after destruction and after the custodian restarted. Every custodian
// refuses each on its own records; a depositor's own fresh deposit after
// an abort is still taken.
func TestDepositReplayRefused(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, dev.CustodianOptions{MinRetention: time.Nanosecond})
	key := bytes.Repeat([]byte{0x6B}, 32)
	d := f.depositBody(t, "conv-r", "k1", key, true)

	// expect has every custodian answer a store of bodies[i], changed by
	// change, with an item error of code.
	expect := func(what, code string, bodies []wire.ShareToStore, change func(*wire.ShareToStore)) {
		t.Helper()
		for i, r := range f.remotes {
			it := bodies[i]
			if change != nil {
				change(&it)
			}
			res, err := r.Store(ctx, it)
			if err != nil || res.Error == nil || res.Error.Code != code || res.Stored != nil {
				t.Fatalf("%s at %s: %+v %+v %v, want %s", what, r.Name, res.Stored, res.Error, err, code)
			}
		}
	}
	newID := uuid.NewString()
	expect("a v2 body under a new escrow id", "share_invalid", d.bodies, func(it *wire.ShareToStore) { it.EscrowID = newID })
	expect("a v2 body under its escrow id again", "replayed", d.bodies, nil)
	expect("a v2 body relabelled as v1", "share_invalid", d.bodies, func(it *wire.ShareToStore) {
		it.EscrowID, it.DepositedAt = uuid.NewString(), ""
	})

	// A v1 deposit binds no escrow id: the index alone stops its replay,
	// whatever depositor the host names.
	commitment, sealed, err := shares.Split(f.set.SharesSet(), "conv-r", "k-v1", key)
	if err != nil {
		t.Fatal(err)
	}
	v1 := make([]wire.ShareToStore, len(sealed))
	for i, s := range sealed {
		v1[i] = wire.ShareToStore{EscrowID: uuid.NewString(), ConversationID: "conv-r", KeyID: "k-v1", Index: i + 1,
			Commitment: commitment, Sealed: s.Sealed, Depositor: "gw"}
		if res, err := f.remotes[i].Store(ctx, v1[i]); err != nil || res.Error != nil {
			t.Fatalf("a v1 store: %+v %v", res.Error, err)
		}
	}
	expect("a v1 body under a new escrow id", "replayed", v1, func(it *wire.ShareToStore) { it.EscrowID = uuid.NewString() })
	expect("a v1 body under a new escrow id and depositor", "replayed", v1, func(it *wire.ShareToStore) {
		it.EscrowID, it.Depositor = uuid.NewString(), "someone-else"
	})

	// The same key sealed afresh is a new deposit (a depositor's retry):
	// stored, and, not committed, aborted.
	again := f.sealed(t, "conv-r", "k1", key, time.Now())
	for i, r := range f.remotes {
		res, err := r.Store(ctx, again[i])
		if err != nil || res.Stored == nil {
			t.Fatalf("the key sealed afresh at %s: %+v %v", r.Name, res.Error, err)
		}
		if ab, err := r.Abort(ctx, []wire.ShareRef{{EscrowID: again[i].EscrowID, Locator: res.Stored.Locator}}); err != nil || ab[0].Outcome != "aborted" {
			t.Fatalf("abort of it at %s: %+v %v", r.Name, ab, err)
		}
	}

	// A deposit time far from the custodian's clock.
	old := f.sealed(t, "conv-r", "k-old", key, time.Now().Add(-time.Hour))
	expect("a deposit an hour old", "stale", old, nil)

	// Destroyed, then replayed: never stored again, even sealed afresh.
	for i, r := range f.remotes {
		if res, err := r.Destroy(ctx, ref(d.id, d.receipts, i)); err != nil || res[0].Outcome != "destroyed" {
			t.Fatalf("destroy at %s: %+v %v", r.Name, res, err)
		}
	}
	expect("a destroyed deposit's body", "replayed", d.bodies, nil)
	expect("a destroyed deposit sealed afresh", "destroyed", f.sealed(t, "conv-r", "k1", key, time.Now()), nil)

	// The index is the custodian's records: a restart keeps it.
	for i := range f.remotes {
		f.set.Stop(i)
		f.set.Run(i)
	}
	expect("after a restart, a destroyed deposit's body", "replayed", d.bodies, nil)
	expect("after a restart, a destroyed deposit sealed afresh", "destroyed", f.sealed(t, "conv-r", "k1", key, time.Now()), nil)
	expect("after a restart, a v1 body under a new escrow id", "replayed", v1, func(it *wire.ShareToStore) { it.EscrowID = uuid.NewString() })
	for i := range f.remotes {
		if got := f.set.Counter(i, "mediator_custodian_shares_total", "replayed"); got < 2 {
			t.Errorf("custodian %d counted %v replayed shares since its restart", i+1, got)
		}
	}

	// An aborted deposit may be deposited again by its depositor: new
	// escrow id, new sealed bytes.
	a := f.depositBody(t, "conv-r", "k2", key, false)
	for i, r := range f.remotes {
		if res, err := r.Abort(ctx, a.refs[i]); err != nil || res[0].Outcome != "aborted" {
			t.Fatalf("abort at %s: %+v %v", r.Name, res, err)
		}
	}
	expect("an aborted deposit's body", "replayed", a.bodies, nil)
	f.depositBody(t, "conv-r", "k2", key, true)
}

// sealed is a fresh v2 deposit of key at time at, as the depositor would
// send it, not stored.
func (f *fixture) sealed(t *testing.T, convo, keyID string, key []byte, at time.Time) []wire.ShareToStore {
	t.Helper()
	return f.sealedAs(t, uuid.NewString(), convo, keyID, key, at)
}

// sealedAs is sealed under escrow id.
func (f *fixture) sealedAs(t *testing.T, id, convo, keyID string, key []byte, at time.Time) []wire.ShareToStore {
	t.Helper()
	sp, err := shares.NewSplitter(f.set.SharesSet())
	if err != nil {
		t.Fatal(err)
	}
	b := shares.Binding{EscrowID: id, DepositedAt: shares.FormatTime(at)}
	commitment, sealed, err := sp.SplitBound(convo, keyID, b, key)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]wire.ShareToStore, len(sealed))
	for i, s := range sealed {
		out[i] = wire.ShareToStore{EscrowID: b.EscrowID, ConversationID: convo, KeyID: keyID, Index: i + 1,
			Commitment: commitment, Sealed: s.Sealed, Depositor: "gw", DepositedAt: b.DepositedAt}
	}
	return out
}

// TestDuplicateDepositOfAKey: two coordinators racing with one key (or a
// retry after a failure) leave it committed under two escrow ids at a
// custodian; the one whose row never commits may be aborted then, though
// committed, since the key stays kept under the other. The last committed
// copy of a deposit is never aborted.
func TestDuplicateDepositOfAKey(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, dev.CustodianOptions{})
	key := bytes.Repeat([]byte{0x3C}, 32)
	first := f.depositBody(t, "conv-f", "k1", key, true)
	if res, err := f.remotes[0].Abort(ctx, first.refs[0]); err != nil || res[0].Outcome != "committed" {
		t.Fatalf("abort of the only committed copy: %+v %v", res, err)
	}
	second := f.depositBody(t, "conv-f", "k1", key, true)
	for i, r := range f.remotes {
		if res, err := r.Abort(ctx, second.refs[i]); err != nil || res[0].Outcome != "aborted" {
			t.Fatalf("abort of a duplicate at %s: %+v %v", r.Name, res, err)
		}
		if res, err := r.Abort(ctx, first.refs[i]); err != nil || res[0].Outcome != "committed" {
			t.Fatalf("abort of the copy left at %s: %+v %v", r.Name, res, err)
		}
	}
	// A restart keeps what was committed within the abort window.
	third := f.depositBody(t, "conv-f", "k1", key, true)
	f.set.Stop(0)
	f.set.Run(0)
	if res, err := f.remotes[0].Abort(ctx, third.refs[0]); err != nil || res[0].Outcome != "aborted" {
		t.Fatalf("after a restart, abort of a duplicate: %+v %v", res, err)
	}
	if res, err := f.remotes[0].Abort(ctx, first.refs[0]); err != nil || res[0].Outcome != "committed" {
		t.Fatalf("after a restart, abort of the copy left: %+v %v", res, err)
	}
}

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

	// The same deposit, sealed afresh, is kept once.
	again := f.sealed(t, "conv-r", "k1", key, time.Now())
	expect("the same deposit under another escrow id", "replayed", again, nil)

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
	sp, err := shares.NewSplitter(f.set.SharesSet())
	if err != nil {
		t.Fatal(err)
	}
	b := shares.Binding{EscrowID: uuid.NewString(), DepositedAt: shares.FormatTime(at)}
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

// TestFailedDepositCanBeRetried: a deposit stored at a custodian but never
// committed nor aborted there (its abort was lost) does not block the
// depositor's retry under a new escrow id; the retry supersedes it, the
// old escrow is never committed, and a restart keeps the retry current.
// Past the abort window, a stored share is kept for good and blocks a
// second deposit of the key as before.
func TestFailedDepositCanBeRetried(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, dev.CustodianOptions{})
	key := bytes.Repeat([]byte{0x3C}, 32)
	first := f.depositBody(t, "conv-f", "k1", key, false) // stored everywhere, never committed
	retry := f.depositBody(t, "conv-f", "k1", key, true)  // the depositor's retry: stored and committed
	for i, r := range f.remotes {
		com, err := r.Commit(ctx, first.refs[i][0])
		if err != nil || com.Error == nil || com.Error.Code != "superseded" || com.Receipt != nil {
			t.Fatalf("commit of the superseded escrow at %s: %+v %v", r.Name, com, err)
		}
	}
	for i := range f.remotes {
		f.set.Stop(i)
		f.set.Run(i)
	}
	for i, r := range f.remotes {
		if com, err := r.Commit(ctx, first.refs[i][0]); err != nil || com.Error == nil || com.Error.Code != "superseded" {
			t.Fatalf("after a restart, commit of the superseded escrow at %s: %+v %v", r.Name, com, err)
		}
		if com, err := r.Commit(ctx, retry.refs[i][0]); err != nil || com.Receipt == nil {
			t.Fatalf("after a restart, commit of the retry at %s: %+v %v", r.Name, com, err)
		}
	}
	// A committed deposit is not superseded.
	again := f.sealed(t, "conv-f", "k1", key, time.Now())
	res, err := f.remotes[0].Store(ctx, again[0])
	if err != nil || res.Error == nil || res.Error.Code != "replayed" {
		t.Fatalf("a third deposit of a committed key: %+v %v", res, err)
	}
	// Nor is one stored and left uncommitted past the abort window.
	f.depositBody(t, "conv-f", "k2", key, false)
	later := time.Now().Add(11 * time.Minute)
	f.set.Stop(0)
	f.set.Run(0)
	f.set.Running[0].SetClockForTest(func() time.Time { return later })
	late := f.sealed(t, "conv-f", "k2", key, later)
	res, err = f.remotes[0].Store(ctx, late[0])
	if err != nil || res.Error == nil || res.Error.Code != "replayed" {
		t.Fatalf("a second deposit past the first's abort window: %+v %v", res, err)
	}
}

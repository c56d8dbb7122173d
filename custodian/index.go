package custodian

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/mediatorhq/mediator/shares"
	"github.com/mediatorhq/mediator/wire"
)

// Item codes a store is refused with when the custodian's own records say
// the share is not new.
const (
	// codeReplayed: the escrow id, or the sealed bytes, were stored here
	// before, or the same deposit (depositor, conversation, key id,
	// commitment) is kept under another escrow id.
	codeReplayed = "replayed"
	// codeDestroyed: this custodian destroyed that deposit; it never
	// stores it again.
	codeDestroyed = "destroyed"
	// codeStale: a v2 share's deposit time is further from the
	// custodian's clock than it accepts.
	codeStale = "stale"
)

// States of an escrow id in the index.
const (
	indexPending   = "pending" // reserved by a store call not yet written
	indexStored    = "stored"
	indexDestroyed = outcomeDestroyed
	indexAborted   = outcomeAborted
)

// depositIndex is what the custodian remembers of every share it ever
// stored: each escrow id and its state, each deposit (depositor,
// conversation, key id, commitment) and the escrow id it is kept under,
// and the SHA-256 of every sealed share. It is built at start from the
// custodian's own store, whose records it derives from: the deposit
// entries (written once; rewritten only to remove a share) and the
// write-once tombstones written before a share is removed, which carry
// the same fields. So nothing the custodian stored or destroyed is ever
// forgotten, and a store is checked in memory, without a call to Vault.
//
// One custodian is one process: the index is the process's, and two
// processes serving one custodian's store would not see each other's
// reservations.
type depositIndex struct {
	mu       sync.Mutex
	escrows  map[string]*indexed    // escrow id → what the custodian knows of its share
	deposits map[[32]byte][]string  // deposit key → every escrow id it was stored under
	byKey    map[[32]byte][]string  // (conversation, key id) → escrow ids, for status
	sealed   map[[32]byte]struct{}  // SHA-256 of sealed shares
	pending  map[string]reservation // escrow id → what its reservation added
	// fresh are the records of shares stored and not yet committed,
	// without the wrapped share, so that a commit needs no read of its
	// entry; dropped at commit, at abort and past the abort window.
	fresh map[string]freshShare
}

// freshShare is a stored share's record and where it is kept.
type freshShare struct {
	rec     record
	locator string
}

// indexed is what the index keeps of one share: about 150 bytes.
type indexed struct {
	state     string
	committed bool      // committed since the custodian started, or within the abort window before
	storedAt  time.Time // zero for a tombstone written before the index existed
	index     int
	sealed    [32]byte
}

// reservation is what one reserved store added to the index, to take back
// if the write fails.
type reservation struct {
	deposit [32]byte
	sealed  [32]byte
}

func newDepositIndex() *depositIndex {
	return &depositIndex{escrows: map[string]*indexed{}, deposits: map[[32]byte][]string{}, byKey: map[[32]byte][]string{},
		sealed: map[[32]byte]struct{}{}, pending: map[string]reservation{}, fresh: map[string]freshShare{}}
}

// remember keeps recs, just written at locator, until their commit.
func (x *depositIndex) remember(recs []record, locator string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, r := range recs {
		r.Wrapped = ""
		x.fresh[r.EscrowID] = freshShare{rec: r, locator: locator}
	}
}

// freshRecord returns escrow id's record if it was stored at locator, not
// yet committed, and is still kept.
func (x *depositIndex) freshRecord(escrowID, locator string) (record, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	f, ok := x.fresh[escrowID]
	if !ok || f.locator != locator || x.escrows[escrowID].state != indexStored {
		return record{}, false
	}
	return f.rec, true
}

// forget drops the fresh records of ids, and of every share stored
// before cutoff.
func (x *depositIndex) forget(ids []string, cutoff string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, id := range ids {
		delete(x.fresh, id)
	}
	for id, f := range x.fresh {
		if f.rec.StoredAt < cutoff {
			delete(x.fresh, id)
		}
	}
}

// conversationKey names a (conversation, key id) pair in byKey.
func conversationKey(conversationID, keyID string) [32]byte {
	return depositKey("", conversationID, keyID, "")
}

// depositKey names a deposit by what a depositor deposits: who, which
// conversation and key id, and the key's commitment, each length-prefixed.
func depositKey(depositor, conversationID, keyID, commitment string) [32]byte {
	h := sha256.New()
	h.Write([]byte("mediator-custodian-deposit-index-v1"))
	for _, p := range []string{depositor, conversationID, keyID, commitment} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		h.Write([]byte(p))
	}
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// reserve checks that it is new to this custodian and, if so, reserves its
// escrow id, deposit and sealed bytes until settle. A share is new when
// its escrow id and its sealed bytes were never stored here (the deposit
// body was never seen: a replay of it, under any escrow id or depositor
// name, is refused), and its deposit (depositor, conversation, key id,
// commitment) was never destroyed here. A depositor may deposit the same
// key again, sealed afresh under a new escrow id: two coordinators racing
// with one key do, and a retry after a failure does; the mediator keeps
// one escrow of a key, and a custodian lets it abort a duplicate
// (duplicateKept).
func (x *depositIndex) reserve(it wire.ShareToStore) *wire.ItemError {
	dk := depositKey(it.Depositor, it.ConversationID, it.KeyID, it.Commitment)
	sk := sha256.Sum256(it.Sealed)
	x.mu.Lock()
	defer x.mu.Unlock()
	if _, ok := x.escrows[it.EscrowID]; ok {
		return &wire.ItemError{Code: codeReplayed, Message: "this custodian has stored a share under this escrow id before"}
	}
	if _, ok := x.sealed[sk]; ok {
		return &wire.ItemError{Code: codeReplayed, Message: "this custodian has stored these sealed bytes before"}
	}
	for _, prev := range x.deposits[dk] {
		if x.escrows[prev].state == indexDestroyed {
			return &wire.ItemError{Code: codeDestroyed, Message: "this custodian destroyed this deposit; it is never stored again"}
		}
	}
	x.escrows[it.EscrowID] = &indexed{state: indexPending, index: it.Index, sealed: sk}
	x.deposits[dk] = append(x.deposits[dk], it.EscrowID)
	x.sealed[sk] = struct{}{}
	x.pending[it.EscrowID] = reservation{deposit: dk, sealed: sk}
	return nil
}

// settle ends the reservations of items: kept as stored at when written,
// else taken back.
func (x *depositIndex) settle(items []wire.ShareToStore, written bool, at time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, it := range items {
		id := it.EscrowID
		r, ok := x.pending[id]
		if !ok {
			continue
		}
		delete(x.pending, id)
		if written {
			e := x.escrows[id]
			e.state, e.storedAt = indexStored, at
			ck := conversationKey(it.ConversationID, it.KeyID)
			x.byKey[ck] = append(x.byKey[ck], id)
			continue
		}
		delete(x.escrows, id)
		delete(x.sealed, r.sealed)
		x.deposits[r.deposit] = slices.DeleteFunc(x.deposits[r.deposit], func(e string) bool { return e == id })
		if len(x.deposits[r.deposit]) == 0 {
			delete(x.deposits, r.deposit)
		}
	}
}

// ended records that escrow id's share was destroyed or aborted.
func (x *depositIndex) ended(escrowID, outcome string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if e, ok := x.escrows[escrowID]; ok {
		e.state = outcome
	}
	delete(x.fresh, escrowID)
}

// duplicateKept reports whether r's deposit is kept here, committed,
// under another escrow id too: then dropping r's share loses nothing,
// and an abort of it is allowed even though it was committed.
func (x *depositIndex) duplicateKept(r record) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, id := range x.deposits[depositKey(r.Depositor, r.ConversationID, r.KeyID, r.Commitment)] {
		if e := x.escrows[id]; id != r.EscrowID && e.state == indexStored && e.committed {
			return true
		}
	}
	return false
}

// committed records that ids were committed.
func (x *depositIndex) commit(ids []string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, id := range ids {
		if e, ok := x.escrows[id]; ok {
			e.committed = true
		}
	}
}

// add records a share the store holds, or held (a tombstone), from its
// record r: state is indexStored, indexDestroyed or indexAborted. Fields
// a tombstone written before the index existed lacks are left out: its
// escrow id is still known.
func (x *depositIndex) add(state string, r record) {
	e := &indexed{state: state, index: r.Index}
	e.storedAt, _ = time.Parse(shares.TimeLayout, r.StoredAt)
	if b, err := hex.DecodeString(r.SealedSHA256); err == nil && len(b) == sha256.Size {
		e.sealed = [32]byte(b)
		x.sealed[e.sealed] = struct{}{}
	}
	x.escrows[r.EscrowID] = e
	if r.Commitment != "" {
		dk := depositKey(r.Depositor, r.ConversationID, r.KeyID, r.Commitment)
		x.deposits[dk] = append(x.deposits[dk], r.EscrowID)
	}
	if r.ConversationID != "" {
		ck := conversationKey(r.ConversationID, r.KeyID)
		x.byKey[ck] = append(x.byKey[ck], r.EscrowID)
	}
}

// size is how many escrow ids the index knows.
func (x *depositIndex) size() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.escrows)
}

// loadIndex builds the index from the custodian's store: every deposit
// entry's records and every tombstone, and the commits since
// committedSince (those older matter to no abort). Tombstones are read
// after the entries, so a share destroyed while the index loads is known
// as destroyed. Cost: one Vault read per deposit entry (a store call's
// shares), per tombstone and per recent commit call.
func loadIndex(ctx context.Context, s *store, committedSince time.Time) (*depositIndex, error) {
	x := newDepositIndex()
	entries, err := s.list(ctx, "deposits")
	if err != nil {
		return nil, fmt.Errorf("custodian: index: %w", err)
	}
	for _, e := range entries {
		sec, err := s.get(ctx, s.path("deposits", e))
		if err != nil {
			return nil, fmt.Errorf("custodian: index: deposits/%s: %w", e, err)
		}
		for id, raw := range sec.Data {
			var r record
			text, _ := raw.(string)
			if err := json.Unmarshal([]byte(text), &r); err != nil || r.EscrowID != id {
				return nil, fmt.Errorf("custodian: index: the record of %s in deposits/%s is unreadable", id, e)
			}
			x.add(indexStored, r)
		}
	}
	gone, err := s.list(ctx, "destroyed")
	if err != nil {
		return nil, fmt.Errorf("custodian: index: %w", err)
	}
	for _, id := range gone {
		sec, err := s.get(ctx, s.path("destroyed", id))
		if err != nil {
			return nil, fmt.Errorf("custodian: index: destroyed/%s: %w", id, err)
		}
		str := func(k string) string { v, _ := sec.Data[k].(string); return v }
		state := indexDestroyed
		if str("outcome") == outcomeAborted {
			state = indexAborted
		}
		index, _ := strconv.Atoi(str("index"))
		x.add(state, record{EscrowID: id, Depositor: str("depositor"), ConversationID: str("conversation_id"), KeyID: str("key_id"),
			Commitment: str("commitment"), SealedSHA256: str("sealed_sha256"), StoredAt: str("stored_at"), Index: index})
	}
	committed, err := s.committedSince(ctx, committedSince)
	if err != nil {
		return nil, fmt.Errorf("custodian: index: %w", err)
	}
	for id := range committed {
		if e, ok := x.escrows[id]; ok {
			e.committed = true
		}
	}
	return x, nil
}

// checkDepositTime checks a v2 share's deposit time against the
// custodian's clock: within the abort window either way.
func (c *Custodian) checkDepositTime(depositedAt string) *wire.ItemError {
	at, err := parseTime(depositedAt)
	if err != nil {
		return &wire.ItemError{Code: codeShareInvalid, Message: "deposited_at is not a time in the receipts' layout"}
	}
	if d := c.now().Sub(at); d > c.cfg.AbortWindow.Duration || -d > c.cfg.AbortWindow.Duration {
		return &wire.ItemError{Code: codeStale, Message: fmt.Sprintf("deposited_at is more than %s from this custodian's clock", c.cfg.AbortWindow.Duration)}
	}
	return nil
}

// parseTime reads a time in shares.TimeLayout exactly.
func parseTime(s string) (t time.Time, err error) {
	t, err = time.Parse(shares.TimeLayout, s)
	if err == nil && shares.FormatTime(t) != s {
		err = fmt.Errorf("not in the layout %s", shares.TimeLayout)
	}
	return t, err
}

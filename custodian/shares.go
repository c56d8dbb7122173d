package custodian

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/mediatorhq/mediator/invalid"
	"github.com/mediatorhq/mediator/shares"
	"github.com/mediatorhq/mediator/wire"
)

// Item error codes a custodian answers with.
const (
	codeShareInvalid    = "share_invalid"
	codeUnavailable     = "unavailable"
	codeNotFound        = "not_found"
	codeNotInScope      = "not_in_scope"
	codeAlreadyReleased = "already_released"
	// codeTooManyInCall: the share was past the most one release call
	// answers (maxReleaseShares); asked for again in another call, it is
	// answered.
	codeTooManyInCall = "too_many_in_call"
)

var commitmentPattern = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// maxStoreBatch bounds the shares of one store call.
const maxStoreBatch = 1024

// StoreShares stores the shares of concurrent deposits together. Each must
// open as this custodian's share of the key it names (its place, the key's
// conversation, id and commitment, and for v2 its escrow id and deposit
// time, are bound by the HPKE info) with its HPKE key in force or one
// within grace (hpkekeys.go), a v2 share's deposit time must be
// near the custodian's clock, and the custodian's index must show it new
// (never stored here, not destroyed, not kept under another escrow id).
// It is then wrapped by the custodian's own key; the shares of one call
// are wrapped in one call to that key and written once, as one new entry.
// A share refused gets an item error and is not stored; the others are.
//
// A stored share is answered with where it is kept, unsigned: it may
// still be aborted until CommitShares signs its deposit receipt.
func (c *Custodian) StoreShares(ctx context.Context, items []wire.ShareToStore) ([]wire.StoreResult, error) {
	if len(items) == 0 || len(items) > maxStoreBatch {
		return nil, invalid.Input("shares", fmt.Sprintf("a store call carries 1–%d shares", maxStoreBatch))
	}
	at := c.now()
	now := shares.FormatTime(at)
	out := make([]wire.StoreResult, len(items))
	opened := make([][]byte, len(items))
	defer func() {
		for _, s := range opened {
			clear(s)
		}
	}()
	// One worker per CPU opens the shares: an HPKE open's stack grows
	// once per worker, not once per share.
	var (
		wg   sync.WaitGroup
		next atomic.Int64
	)
	keys, live := c.keys.opening(at, c.cfg.HPKEGrace.Duration)
	for range min(len(items), runtime.GOMAXPROCS(0)) {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < len(items); i = int(next.Add(1)) - 1 {
				opened[i], out[i].Error = c.openShare(items[i], keys, live)
			}
		})
	}
	wg.Wait()
	var (
		toWrap, keptAt   []int // indexes into items
		reserved         []wire.ShareToStore
		keep             []record
		aads, plaintexts [][]byte
		seen             = make(map[string]bool, len(items))
	)
	for i, it := range items {
		if out[i].Error == nil && seen[it.EscrowID] {
			// One entry holds one share per escrow id.
			out[i].Error = &wire.ItemError{Code: codeShareInvalid, Message: "the escrow id appears twice in one call"}
		}
		if out[i].Error == nil {
			out[i].Error = c.index.reserve(it)
		}
		if out[i].Error == nil {
			seen[it.EscrowID] = true
			reserved = append(reserved, it)
			toWrap = append(toWrap, i)
			aads, plaintexts = append(aads, aad(it.ConversationID, it.KeyID)), append(plaintexts, opened[i])
		}
	}
	wrapped, errs := c.wrapper.WrapAll(ctx, aads, plaintexts)
	var unwrapped []wire.ShareToStore
	for j, i := range toWrap {
		it := items[i]
		if errs[j] != nil {
			c.log.Error("wrap failed", "custodian", c.cfg.Name, "escrow_id", it.EscrowID, "err", errs[j])
			out[i].Error = &wire.ItemError{Code: codeUnavailable, Message: "the custodian's key is unavailable"}
			unwrapped = append(unwrapped, it)
			continue
		}
		keptAt = append(keptAt, i)
		keep = append(keep, record{EscrowID: it.EscrowID, ConversationID: it.ConversationID, KeyID: it.KeyID, Index: it.Index,
			Commitment: it.Commitment, Wrapped: string(wrapped[j]), SealedSHA256: shares.SealedHash(it.Sealed),
			StoredAt: now, Depositor: it.Depositor, DepositedAt: it.DepositedAt})
	}
	c.index.settle(unwrapped, false, at)
	c.countRefused(out)
	if len(keep) == 0 {
		return out, nil
	}
	locator, err := c.store.putDeposits(ctx, keep)
	if err != nil {
		c.index.settle(reserved, false, at)
		c.metrics.stored("unavailable", len(keep))
		return nil, fmt.Errorf("%w: %v", errUnavailable, err)
	}
	c.index.settle(reserved, true, at)
	c.index.remember(keep, locator)
	for j, r := range keep {
		out[keptAt[j]].Stored = &wire.StoredShare{Locator: locator, SealedSHA256: r.SealedSHA256, StoredAt: now}
	}
	c.metrics.stored("stored", len(keep))
	c.log.Info("shares stored", "custodian", c.cfg.Name, "stored", len(keep), "refused", len(items)-len(keep), "locator", locator)
	return out, nil
}

// countRefused counts the store results that are refusals, by code.
func (c *Custodian) countRefused(out []wire.StoreResult) {
	for _, r := range out {
		if r.Error == nil {
			continue
		}
		switch r.Error.Code {
		case codeReplayed, codeDestroyed, codeStale, codeRetiredKey:
			c.metrics.stored(r.Error.Code, 1)
		case codeUnavailable:
			c.metrics.stored("unavailable", 1)
		default:
			c.metrics.stored("invalid", 1)
		}
	}
}

// openShare checks one sealed share's form and opens it as this
// custodian's share of the key it names, with keys in order (the HPKE
// encapsulation does not name its key): the first live ones open it; one
// after them, past its grace period, only tells retired_key from
// share_invalid. The caller zeroes the share.
func (c *Custodian) openShare(it wire.ShareToStore, keys []*hpkeKey, live int) ([]byte, *wire.ItemError) {
	if !validUUID(it.EscrowID) || !shares.ValidID(it.ConversationID) || !shares.ValidID(it.KeyID) ||
		it.Index < 1 || it.Index > 255 || !commitmentPattern.MatchString(it.Commitment) || len(it.Depositor) > shares.MaxIDLen {
		return nil, &wire.ItemError{Code: codeShareInvalid, Message: "the share's ids, place or commitment are malformed"}
	}
	var b shares.Binding
	if it.DepositedAt != "" {
		if e := c.checkDepositTime(it.DepositedAt); e != nil {
			return nil, e
		}
		b = shares.Binding{EscrowID: it.EscrowID, DepositedAt: it.DepositedAt}
	}
	for i, k := range keys {
		share, err := shares.OpenDeposited(k.priv, it.ConversationID, it.KeyID, c.cfg.Name, it.Index, it.Commitment, b, it.Sealed)
		switch {
		case err != nil:
		case i < live:
			return share, nil
		default:
			clear(share)
			return nil, &wire.ItemError{Code: codeRetiredKey, Message: fmt.Sprintf(
				"the share is sealed to an HPKE key of this custodian's that the roster replaced more than %s ago: seal to the key the roster in force lists",
				c.cfg.HPKEGrace.Duration)}
		}
	}
	return nil, &wire.ItemError{Code: codeShareInvalid, Message: "the share does not open as this custodian's share of this key at this place"}
}

// Outcomes of destroy and abort.
const (
	outcomeDestroyed = "destroyed"
	outcomeAborted   = "aborted"
	outcomeHeld      = "held"
	outcomeTooYoung  = "too_young"
	outcomeTooOld    = "too_old"
	outcomeNotFound  = "not_found"
	outcomeReleased  = "released"
	outcomeCommitted = "committed"
	outcomeFailed    = "failed"
)

// Destroy destroys the shares named, each only if the custodian's own
// records allow it: stored at least MinRetention ago, and its conversation
// under no legal hold this custodian recorded. A share already destroyed
// answers destroyed again.
func (c *Custodian) Destroy(ctx context.Context, refs []wire.ShareRef) ([]wire.RefResult, error) {
	holds, err := c.store.holds(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errUnavailable, err)
	}
	return c.eachRef(ctx, refs, outcomeDestroyed, func(r record) (string, bool) {
		stored, _ := time.Parse(shares.TimeLayout, r.StoredAt)
		switch {
		case holds[r.ConversationID]:
			return outcomeHeld, false
		case c.now().Sub(stored) < c.cfg.MinRetention.Duration:
			return outcomeTooYoung, false
		}
		return outcomeDestroyed, true
	})
}

// Abort destroys shares of deposits that failed elsewhere: only within
// AbortWindow of storing them, before any release of them, and before
// their commit (CommitShares), so a coordinator cannot use it to destroy
// escrowed keys, nor a deposit its depositor saw receipts for. A committed
// share may be aborted only while the same deposit is kept here,
// committed, under another escrow id: the duplicate a race of two
// coordinators leaves, whose loser's row never commits.
func (c *Custodian) Abort(ctx context.Context, refs []wire.ShareRef) ([]wire.RefResult, error) {
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	// A share older than the window cannot be aborted, so only releases
	// and commits within it matter (with a minute's slack for clocks).
	since := c.now().Add(-c.cfg.AbortWindow.Duration - time.Minute)
	released, err := c.store.freshReleased(ctx, since)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errUnavailable, err)
	}
	committed, err := c.store.committedSince(ctx, since)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errUnavailable, err)
	}
	return c.eachRef(ctx, refs, outcomeAborted, func(r record) (string, bool) {
		stored, _ := time.Parse(shares.TimeLayout, r.StoredAt)
		switch {
		case c.now().Sub(stored) > c.cfg.AbortWindow.Duration:
			return outcomeTooOld, false
		case released[r.EscrowID]:
			return outcomeReleased, false
		case committed[r.EscrowID] && !c.index.duplicateKept(r):
			return outcomeCommitted, false
		}
		return outcomeAborted, true
	})
}

// CommitShares commits shares stored by StoreShares, and signs each one's
// deposit receipt: from then on the custodian refuses to abort it, so a
// depositor holding every custodian's receipt knows that no one party can
// have it dropped before MinRetention. The coordinator commits only once
// every custodian stored its share. The receipt is the same however often
// a share is committed (its time is the store's).
func (c *Custodian) CommitShares(ctx context.Context, refs []wire.ShareRef) ([]wire.CommitResult, error) {
	if len(refs) == 0 || len(refs) > maxStoreBatch {
		return nil, invalid.Input("shares", fmt.Sprintf("a commit call carries 1–%d shares", maxStoreBatch))
	}
	out := make([]wire.CommitResult, len(refs))
	recs := make([]record, len(refs))
	entries := map[string]*vaultapi.KVSecret{}
	var ids []string
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	for i, ref := range refs {
		if r, ok := c.index.freshRecord(ref.EscrowID, ref.Locator); ok {
			recs[i] = r
			ids = append(ids, r.EscrowID)
			continue
		}
		sec, ok := entries[ref.Locator]
		if !ok {
			var err error
			if sec, err = c.store.entry(ctx, ref.Locator); err != nil && !errors.Is(err, errNoRecord) {
				return nil, fmt.Errorf("%w: %v", errUnavailable, err)
			}
			entries[ref.Locator] = sec
		}
		if sec == nil || !validUUID(ref.EscrowID) {
			out[i].Error = &wire.ItemError{Code: codeNotFound, Message: "no share is kept under this escrow id and locator"}
			continue
		}
		r, err := recordIn(sec, ref.EscrowID)
		if err != nil {
			out[i].Error = &wire.ItemError{Code: codeNotFound, Message: "no share is kept under this escrow id and locator"}
			continue
		}
		recs[i] = r
		ids = append(ids, r.EscrowID)
	}
	if len(ids) > 0 {
		if err := c.store.putCommitted(ctx, c.now(), ids); err != nil {
			return nil, fmt.Errorf("%w: %v", errUnavailable, err)
		}
		c.index.commit(ids)
		c.index.forget(ids, shares.FormatTime(c.now().Add(-c.cfg.AbortWindow.Duration)))
	}
	for i, r := range recs {
		if out[i].Error != nil {
			continue
		}
		rc := shares.Receipt{Kind: shares.ReceiptDeposit, Custodian: c.cfg.Name, EscrowID: r.EscrowID,
			ConversationID: r.ConversationID, KeyID: r.KeyID, Index: r.Index, Commitment: r.Commitment,
			SealedSHA256: r.SealedSHA256, At: r.StoredAt, Locator: refs[i].Locator}
		signed, err := shares.Sign(c.id.sign, rc)
		if err != nil {
			return nil, err
		}
		out[i].Receipt = &signed
	}
	c.metrics.lifecycleN("commit", "committed", len(ids))
	c.metrics.lifecycleN("commit", outcomeNotFound, len(refs)-len(ids))
	return out, nil
}

// eachRef applies a destruction rule to each ref: allow says, from the
// share's record, what becomes of it and whether it is destroyed. A share
// destroyed is removed for good and a write-once tombstone records why.
func (c *Custodian) eachRef(ctx context.Context, refs []wire.ShareRef, verb string, allow func(record) (string, bool)) ([]wire.RefResult, error) {
	out := make([]wire.RefResult, len(refs))
	for i, ref := range refs {
		out[i] = wire.RefResult{EscrowID: ref.EscrowID}
		if !validUUID(ref.EscrowID) {
			out[i].Outcome = outcomeNotFound
			continue
		}
		if sec, err := c.store.get(ctx, c.store.path("destroyed", ref.EscrowID)); err == nil {
			out[i].Outcome, _ = sec.Data["outcome"].(string)
			continue
		}
		rec, sec, err := c.store.deposit(ctx, ref.Locator, ref.EscrowID)
		if errors.Is(err, errNoRecord) {
			out[i].Outcome = outcomeNotFound
			continue
		}
		if err != nil {
			out[i].Outcome, out[i].Message = outcomeFailed, "the custodian's store is unavailable"
			continue
		}
		outcome, destroy := allow(rec)
		if !destroy {
			out[i].Outcome = outcome
			continue
		}
		// The tombstone carries what the index knows the share by, so
		// that it is never stored again once destroyed.
		if err := c.store.putOnce(ctx, c.store.path("destroyed", ref.EscrowID), map[string]any{
			"outcome": outcome, "at": shares.FormatTime(c.now()), "conversation_id": rec.ConversationID, "key_id": rec.KeyID,
			"depositor": rec.Depositor, "commitment": rec.Commitment, "sealed_sha256": rec.SealedSHA256,
			"stored_at": rec.StoredAt, "index": strconv.Itoa(rec.Index),
		}); err != nil && !errors.Is(err, errExists) {
			out[i].Outcome, out[i].Message = outcomeFailed, "the custodian's store is unavailable"
			continue
		}
		if err := c.store.removeDeposit(ctx, ref.Locator, ref.EscrowID, sec); err != nil {
			c.log.Error("destroy failed", "custodian", c.cfg.Name, "escrow_id", ref.EscrowID, "err", err)
			out[i].Outcome, out[i].Message = outcomeFailed, "the share could not be removed; retry"
			continue
		}
		c.index.ended(ref.EscrowID, outcome)
		out[i].Outcome = outcome
		c.log.Info("share "+outcome, "custodian", c.cfg.Name, "escrow_id", ref.EscrowID)
	}
	for _, r := range out {
		c.metrics.lifecycle(verb, r.Outcome)
	}
	return out, nil
}

// Rewrap moves the custodian's private keys (its identity and every HPKE
// key it made since: in force, within grace or retired) and every share it
// holds to its wrapper's current key, after a rotation (a new Transit key
// version, a new HSM key label). Transit re-wraps inside Vault: no share
// leaves it. Kept shares never depend on an HPKE key, so a rotation of
// HPKE keys (RotateHPKE) needs no re-wrapping of them.
// A deposit entry that fails is named in Failed, its shares counted
// nowhere else, and the others go on; if the keys cannot be moved or the
// entries listed, it returns only the error.
func (c *Custodian) Rewrap(ctx context.Context) (wire.RewrapAnswer, error) {
	var ans wire.RewrapAnswer
	moved, unchanged, err := rewrapIdentity(ctx, c.cfg.Name, c.store, c.wrapper)
	if err != nil {
		return wire.RewrapAnswer{}, err
	}
	ans.Rewrapped, ans.Unchanged = moved, unchanged
	entries, err := c.store.list(ctx, "deposits")
	if err != nil {
		return wire.RewrapAnswer{}, fmt.Errorf("%w: %v", errUnavailable, err)
	}
	for _, e := range entries {
		n, unchanged, err := c.rewrapEntry(ctx, "deposits/"+e)
		if err != nil {
			ans.Failed = append(ans.Failed, "deposits/"+e+": "+err.Error())
			continue
		}
		ans.Rewrapped += n
		ans.Unchanged += unchanged
	}
	c.log.Info("rewrap done", "custodian", c.cfg.Name, "rewrapped", ans.Rewrapped, "unchanged", ans.Unchanged, "failed", len(ans.Failed))
	return ans, nil
}

// rewrapEntry rewraps the shares of one deposit entry, all or none: it
// returns how many moved and how many were already under the current key,
// or an error and nothing.
func (c *Custodian) rewrapEntry(ctx context.Context, locator string) (rewrapped, unchanged int, err error) {
	sec, err := c.store.get(ctx, c.store.path(locator))
	if err != nil {
		return 0, 0, err
	}
	data := make(map[string]any, len(sec.Data))
	for id, raw := range sec.Data {
		data[id] = raw
		var rec record
		text, _ := raw.(string)
		if err := json.Unmarshal([]byte(text), &rec); err != nil {
			return 0, 0, fmt.Errorf("the record of %s is unreadable", id)
		}
		fresh, moved, err := c.wrapper.Rewrap(ctx, aad(rec.ConversationID, rec.KeyID), []byte(rec.Wrapped))
		if err != nil {
			return 0, 0, err
		}
		if !moved {
			unchanged++
			continue
		}
		rec.Wrapped = string(fresh)
		b, err := json.Marshal(rec)
		if err != nil {
			return 0, 0, err
		}
		data[id] = string(b)
		rewrapped++
	}
	if rewrapped == 0 {
		return 0, unchanged, nil
	}
	if err := c.store.replace(ctx, c.store.path(locator), sec, data); err != nil {
		return 0, 0, err
	}
	return rewrapped, unchanged, nil
}

package custodian

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/mediatorhq/mediator/invalid"
	"github.com/mediatorhq/mediator/shares"
	"github.com/mediatorhq/mediator/wire"
)

// MaxInventory bounds the shares of one inventory answer; a window that
// holds more is refused, to be asked for in narrower windows.
const MaxInventory = 100_000

// stateOf is a share's state as an inventory states it.
func (c *Custodian) stateOf(e *indexed) string {
	switch e.state {
	case indexDestroyed:
		return shares.StateDestroyed
	case indexAborted:
		return shares.StateAborted
	}
	if e.committed || c.now().Sub(e.storedAt) > c.cfg.AbortWindow.Duration {
		return shares.StateKept
	}
	return shares.StateUncommitted
}

// share is e as an inventory states it.
func (c *Custodian) share(id string, e *indexed) shares.ShareState {
	st := shares.ShareState{EscrowID: id, Index: e.index, SealedSHA256: fmt.Sprintf("%x", e.sealed), State: c.stateOf(e)}
	if !e.storedAt.IsZero() {
		st.StoredAt = shares.FormatTime(e.storedAt)
	}
	return st
}

// Status is the custodian's signed word on every share it keeps or kept
// of one conversation's key id, from its own index, and on the legal
// holds it has on record for the conversation: what `mediator escrow
// check` asks each custodian directly, so that no one relays it.
func (c *Custodian) Status(ctx context.Context, conversationID, keyID string) (shares.SignedInventory, error) {
	if !shares.ValidID(conversationID) || !shares.ValidID(keyID) {
		return shares.SignedInventory{}, invalid.Input("conversation_id", "conversation_id and key_id must be 1–128 printable bytes")
	}
	holds, err := c.store.holdsOf(ctx, conversationID)
	if err != nil {
		return shares.SignedInventory{}, fmt.Errorf("%w: %v", errUnavailable, err)
	}
	inv := shares.Inventory{Custodian: c.cfg.Name, At: shares.FormatTime(c.now()), ConversationID: conversationID, KeyID: keyID,
		Shares: []shares.ShareState{}, Holds: holds}
	x := c.index
	x.mu.Lock()
	for _, id := range x.byKey[conversationKey(conversationID, keyID)] {
		if e := x.escrows[id]; e.state != indexPending {
			inv.Shares = append(inv.Shares, c.share(id, e))
		}
	}
	x.mu.Unlock()
	return shares.SignInventory(c.id.sign, inv)
}

// Inventory is the custodian's signed list of the shares it stored in
// [since, until), in the order stored, each with its state: what
// reconciliation compares with the log. It names no conversation.
func (c *Custodian) Inventory(since, until time.Time) (shares.SignedInventory, error) {
	if !since.Before(until) {
		return shares.SignedInventory{}, invalid.Input("since", "since must be before until")
	}
	inv := shares.Inventory{Custodian: c.cfg.Name, At: shares.FormatTime(c.now()), Since: shares.FormatTime(since),
		Until: shares.FormatTime(until), Shares: []shares.ShareState{}}
	x := c.index
	x.mu.Lock()
	for id, e := range x.escrows {
		if e.state == indexPending || e.storedAt.Before(since) || !e.storedAt.Before(until) {
			continue
		}
		if len(inv.Shares) == MaxInventory {
			x.mu.Unlock()
			return shares.SignedInventory{}, invalid.Input("until", fmt.Sprintf("the window holds more than %d shares; ask for a narrower one", MaxInventory))
		}
		inv.Shares = append(inv.Shares, c.share(id, e))
	}
	x.mu.Unlock()
	slices.SortFunc(inv.Shares, func(a, b shares.ShareState) int {
		if a.StoredAt != b.StoredAt {
			return compareStrings(a.StoredAt, b.StoredAt)
		}
		return compareStrings(a.EscrowID, b.EscrowID)
	})
	return shares.SignInventory(c.id.sign, inv)
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (c *Custodian) postStatus(w http.ResponseWriter, r *http.Request) {
	var q wire.StatusQuery
	if !decode(w, r, &q) {
		return
	}
	inv, err := c.Status(r.Context(), q.ConversationID, q.KeyID)
	if err != nil {
		c.callError(w, "status", err)
		return
	}
	wire.WriteJSON(w, http.StatusOK, inv)
}

func (c *Custodian) postInventory(w http.ResponseWriter, r *http.Request) {
	var q wire.InventoryQuery
	if !decode(w, r, &q) {
		return
	}
	inv, err := c.Inventory(q.Since, q.Until)
	if err != nil {
		c.callError(w, "inventory", err)
		return
	}
	wire.WriteJSON(w, http.StatusOK, inv)
}

package custodian

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/roster"
)

// seenRoster is the newest roster version this custodian has verified,
// kept in its own store so that an older chain offered later, by a
// mediator that hides a removal or a re-key, is refused even after a
// restart.
type seenRoster struct {
	Version uint64 `json:"version"`
	Digest  string `json:"digest"`
	// HPKEKey is the fingerprint of the HPKE key the version lists for
	// this custodian, the key in force ("none" if it lists none; absent
	// in a record written before keys rotated: the first key).
	HPKEKey string `json:"hpke_key,omitempty"`
}

const rosterPath = "roster"

// verifiedChain is the chain a custodian verified last: its versions'
// digests, the last version, and the HPKE key each version lists for
// this custodian (listedKeys).
type verifiedChain struct {
	digests []string
	latest  roster.Roster
	keys    []string
}

// Codes of a roster chain this custodian does not accept.
const (
	// rosterMissing: no chain at all.
	rosterMissing = "roster_missing"
	// rosterUnverified: the chain does not verify from the pinned genesis.
	rosterUnverified = "roster_unverified"
	// rosterRollback: the chain verifies but does not hold the newest
	// version this custodian has verified (older, or another branch).
	rosterRollback = "roster_rollback"
)

// RosterError is a roster chain this custodian does not accept. Code is
// stable and machine-readable: "roster_missing" (no chain),
// "roster_unverified" (it does not verify from the pinned genesis) or
// "roster_rollback" (it verifies but does not hold the newest version
// this custodian has verified). Reason is for people; a release refusal
// carries it as it is.
type RosterError struct {
	Code   string
	Reason string
}

func (e *RosterError) Error() string { return e.Reason }

// trustRoster is acceptRoster on a release's path: a rollback is counted
// as a refused release.
func (c *Custodian) trustRoster(ctx context.Context, chain []roster.Signed) (roster.Roster, string, error) {
	latest, digest, err := c.acceptRoster(ctx, chain)
	var re *RosterError
	if errors.As(err, &re) && re.Code == rosterRollback {
		c.metrics.rosterRefused()
	}
	return latest, digest, err
}

// acceptRoster verifies chain from the genesis this custodian pins, checks
// that it holds the newest version this custodian has seen, records a
// newer one as seen (store, log line, metric), and returns the version in
// force and its digest. Every road a version takes to this custodian (a
// release's evidence, a push from anyone) goes through here. A chain it
// does not accept is a *RosterError; a roster record it cannot read or
// write is errUnavailable.
//
// A version that lists another HPKE key for this custodian than the key in
// force makes it the key in force (hpkekeys.go): the keys it replaces are
// recorded replaced, once each, before the version is recorded.
//
// Cost: one roster.Check per version unless the chain is the one verified
// last; one store read, and one write when the version is new (and one
// per key replaced, when the key in force changes).
func (c *Custodian) acceptRoster(ctx context.Context, chain []roster.Signed) (roster.Roster, string, error) {
	if len(chain) == 0 {
		return roster.Roster{}, "", &RosterError{rosterMissing, "the release came with no roster chain to verify from this custodian's pinned genesis"}
	}
	digests := make([]string, len(chain))
	for i, s := range chain {
		digests[i] = roster.Digest(s.Roster)
	}
	// A chain of exactly the versions verified last time needs no second
	// verification: each version's digest names its content, and that
	// content was adopted. The verification itself runs outside the lock,
	// so that a large chain pushed by anyone holds up no release.
	c.rosterMu.Lock()
	cached := slices.Equal(digests, c.verified.digests)
	latest, keys := c.verified.latest, c.verified.keys
	c.rosterMu.Unlock()
	if !cached {
		versions, err := roster.VerifyChain(c.cfg.RosterGenesis, chain)
		if err != nil {
			return roster.Roster{}, "", &RosterError{rosterUnverified, fmt.Sprintf("the roster chain does not verify from this custodian's pinned genesis: %v", err)}
		}
		latest, keys = versions[len(versions)-1], c.listedKeys(versions)
	}
	// The record is read and written under the lock: one version recorded
	// at a time (the store's check-and-set guards other processes).
	c.rosterMu.Lock()
	defer c.rosterMu.Unlock()
	if !cached {
		c.verified.digests, c.verified.latest, c.verified.keys = digests, latest, keys
	}
	digest := digests[len(digests)-1]
	for attempt := 0; attempt < 3; attempt++ {
		seen, sec, err := c.seenRoster(ctx)
		if err != nil {
			return roster.Roster{}, "", err
		}
		if !roster.Extends(chain, seen.Version, seen.Digest) {
			return roster.Roster{}, "", &RosterError{rosterRollback, fmt.Sprintf("the roster chain offered ends at version %d and does not hold version %d (%s), which this custodian has already verified",
				latest.Version, seen.Version, seen.Digest)}
		}
		// A version that changes this custodian's HPKE key: the keys it
		// replaces are recorded replaced before the version is.
		change, err := c.recordReplacedKeys(ctx, keys, latest.Version, digest)
		if err != nil {
			return roster.Roster{}, "", err
		}
		if latest.Version == seen.Version {
			c.adoptKeys(change, latest.Version)
			return latest, digest, nil
		}
		data := map[string]any{"version": latest.Version, "digest": digest, "hpke_key": cmp.Or(keys[len(keys)-1], notListed)}
		if sec == nil {
			err = c.store.putOnce(ctx, c.store.path(rosterPath), data)
		} else {
			err = c.store.replace(ctx, c.store.path(rosterPath), sec, data)
		}
		if err == nil {
			c.log.Info("roster version verified", "custodian", c.cfg.Name, "roster_version", latest.Version, "roster_digest", digest)
			c.metrics.rosterVersion(latest.Version)
			c.adoptKeys(change, latest.Version)
			return latest, digest, nil
		}
		// Another call recorded a version meanwhile: look again.
	}
	return roster.Roster{}, "", fmt.Errorf("%w: roster record kept changing", errUnavailable)
}

// seenRoster reads the newest version this custodian has verified, and
// the record that holds it (nil, and version 0, when it has verified
// none). A record it cannot read is errUnavailable.
func (c *Custodian) seenRoster(ctx context.Context) (seenRoster, *vaultapi.KVSecret, error) {
	sec, err := c.store.get(ctx, c.store.path(rosterPath))
	var seen seenRoster
	switch {
	case errors.Is(err, errNoRecord):
		return seen, nil, nil
	case err != nil:
		return seen, nil, fmt.Errorf("%w: roster record: %v", errUnavailable, err)
	}
	raw, _ := json.Marshal(sec.Data)
	if err := json.Unmarshal(raw, &seen); err != nil {
		return seen, nil, fmt.Errorf("%w: roster record unreadable", errUnavailable)
	}
	return seen, sec, nil
}

// verifyApproval checks one approval against the roster in force: the
// approver is listed, and the signature verifies with their key there. It
// returns their roles there.
func verifyApproval(r roster.Roster, id, requestID, digest, decision string, sig []byte) (roles []string, verified, active bool) {
	a, ok := r.Approver(id)
	if !ok {
		return []string{}, false, false
	}
	return slices.Clone(a.Roles), approval.Verify(a.PublicKey, requestID, digest, decision, id, sig), true
}

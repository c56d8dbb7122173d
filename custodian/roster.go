package custodian

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

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
}

const rosterPath = "roster"

// verifiedChain is the chain a custodian verified last: its versions'
// digests and the last version.
type verifiedChain struct {
	digests []string
	latest  roster.Roster
}

// trustRoster verifies chain from the genesis this custodian pins, checks
// that it holds the newest version this custodian has seen, records a
// newer one as seen, and returns the version in force and its digest.
// Each failure is a reason for a refusal.
func (c *Custodian) trustRoster(ctx context.Context, chain []roster.Signed) (roster.Roster, string, error) {
	if len(chain) == 0 {
		return roster.Roster{}, "", errors.New("the release came with no roster chain to verify from this custodian's pinned genesis")
	}
	digests := make([]string, len(chain))
	for i, s := range chain {
		digests[i] = roster.Digest(s.Roster)
	}
	c.rosterMu.Lock()
	defer c.rosterMu.Unlock()
	// A chain of exactly the versions verified last time needs no second
	// verification: each version's digest names its content, and that
	// content was adopted.
	latest, digest := c.verified.latest, ""
	if !slices.Equal(digests, c.verified.digests) {
		var err error
		if latest, digest, err = roster.Latest(c.cfg.RosterGenesis, chain); err != nil {
			return roster.Roster{}, "", fmt.Errorf("the roster chain does not verify from this custodian's pinned genesis: %v", err)
		}
		c.verified.digests, c.verified.latest = digests, latest
	}
	digest = digests[len(digests)-1]
	for attempt := 0; attempt < 3; attempt++ {
		sec, err := c.store.get(ctx, c.store.path(rosterPath))
		var seen seenRoster
		switch {
		case errors.Is(err, errNoRecord):
		case err != nil:
			return roster.Roster{}, "", fmt.Errorf("%w: roster record: %v", errUnavailable, err)
		default:
			raw, _ := json.Marshal(sec.Data)
			if err := json.Unmarshal(raw, &seen); err != nil {
				return roster.Roster{}, "", fmt.Errorf("%w: roster record unreadable", errUnavailable)
			}
		}
		if !roster.Extends(chain, seen.Version, seen.Digest) {
			c.metrics.rosterRefused()
			return roster.Roster{}, "", fmt.Errorf("the roster chain offered ends at version %d and does not hold version %d (%s), which this custodian has already verified",
				latest.Version, seen.Version, seen.Digest)
		}
		if latest.Version == seen.Version {
			return latest, digest, nil
		}
		data := map[string]any{"version": latest.Version, "digest": digest}
		if sec == nil {
			err = c.store.putOnce(ctx, c.store.path(rosterPath), data)
		} else {
			err = c.store.replace(ctx, c.store.path(rosterPath), sec, data)
		}
		if err == nil {
			c.log.Info("roster version verified", "custodian", c.cfg.Name, "roster_version", latest.Version, "roster_digest", digest)
			c.metrics.rosterVersion(latest.Version)
			return latest, digest, nil
		}
		// Another release recorded a version meanwhile: look again.
	}
	return roster.Roster{}, "", fmt.Errorf("%w: roster record kept changing", errUnavailable)
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

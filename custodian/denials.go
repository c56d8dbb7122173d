package custodian

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/mediatorhq/mediator/policy"
	"github.com/mediatorhq/mediator/shares"
)

// The mediator locks a request as denied after maxDeniedReleases release
// attempts its policy denied, so that no one probes the policy at
// leisure; a compromised mediator need not. So each custodian counts its
// own policy's refusals of a request's release in its own store, one
// write-once record each (denied/<request-id>/<n>, n = 1, 2, …), and
// refuses every release of a request with maxDeniedReleases of them on
// record, whatever the evidence carries.

// maxDeniedReleases is how many refusals by this custodian's own policy
// lock a request here: as many as lock it at the mediator
// (access.maxDeniedReleases).
const maxDeniedReleases = 5

// deniedPath holds the refusals: denied/<request-id>/<n>.
const deniedPath = "denied"

// denialRetries bounds how often recording a refusal moves on to the next
// number because a concurrent call wrote this one first.
const denialRetries = 2 * maxDeniedReleases

// lockedReason is the reason of a release refused for a lock.
var lockedReason = fmt.Sprintf("locked after %d denials", maxDeniedReleases)

// denialRecord is what a custodian keeps of one refusal by its policy.
type denialRecord struct {
	RequestDigest  string   `json:"request_digest"`
	At             string   `json:"at"`
	DecisionID     string   `json:"decision_id"`
	PolicyRevision string   `json:"policy_revision"`
	Reasons        []string `json:"reasons"`
}

// denials returns how many refusals of request requestID's release are
// on record. A count it cannot read is errUnavailable: a release is never
// decided without it.
//
// Cost: one store list.
func (c *Custodian) denials(ctx context.Context, requestID string) (int, error) {
	names, err := c.store.list(ctx, deniedPath+"/"+requestID)
	if err != nil {
		return 0, fmt.Errorf("%w: denial records: %v", errUnavailable, err)
	}
	return len(names), nil
}

// checkLocked refuses the release of a request with maxDeniedReleases
// refusals on record (prior, as denials counted them).
func (c *Custodian) checkLocked(cr checkedRequest, prior int) error {
	if prior < maxDeniedReleases {
		return nil
	}
	c.log.Warn("release refused: locked after repeated denials", "custodian", c.cfg.Name, "request_id", cr.req.ID, "denials", prior)
	c.metrics.lockedRefused()
	return &RefusedError{Reasons: []string{fmt.Sprintf("%s by this custodian's policy: the request's release is refused for good", lockedReason)},
		PolicyRevision: cr.rev}
}

// recordDenial writes the policy's refusal d of cr's release as the next
// record after the prior ones on record: if a concurrent call wrote that
// number first, the next is tried, up to denialRetries times. It returns
// whether the request is locked now. A refusal it cannot record is
// errUnavailable: its reasons are not given out uncounted.
func (c *Custodian) recordDenial(ctx context.Context, cr checkedRequest, d policy.Decision, prior int) (bool, error) {
	rec := denialRecord{RequestDigest: cr.digest, At: shares.FormatTime(c.now()), DecisionID: d.ID, PolicyRevision: cr.rev, Reasons: d.Reasons}
	b, err := json.Marshal(rec)
	if err != nil {
		return false, fmt.Errorf("%w: denial record: %v", errUnavailable, err)
	}
	for n := prior + 1; n <= prior+1+denialRetries; n++ {
		err := c.store.putOnce(ctx, c.store.path(deniedPath, cr.req.ID, strconv.Itoa(n)), map[string]any{"record": string(b)})
		switch {
		case errors.Is(err, errExists):
			continue
		case err != nil:
			return false, fmt.Errorf("%w: denial record: %v", errUnavailable, err)
		}
		c.metrics.denialRecorded()
		if n >= maxDeniedReleases {
			c.log.Warn("request locked after repeated denials", "custodian", c.cfg.Name, "request_id", cr.req.ID, "denials", n)
		}
		return n >= maxDeniedReleases, nil
	}
	return false, fmt.Errorf("%w: denial record: %d concurrent refusals of request %s", errUnavailable, denialRetries, cr.req.ID)
}

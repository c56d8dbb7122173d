package policy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

// probe refuses a policy that would let an anonymous caller release keys,
// or that any release probe gets through (ProbeRelease).
func (e *Engine) probe(ctx context.Context, data map[string]any) error {
	if e.hasAuthz {
		allowed, err := e.Authorize(ctx, AuthzInput{Method: "POST", Route: "/v1/access-requests/{id}/release"})
		if err != nil {
			return fmt.Errorf("policy: probe: %w", err)
		}
		if allowed {
			return errors.New("policy: refused: it lets an unauthenticated caller release keys")
		}
	}
	return e.ProbeRelease(ctx, data)
}

// ProbeError is a release policy that let a probe through: a release that
// dual control must deny. Probes names each probe it allowed (see
// ProbeRelease), once.
type ProbeError struct{ Probes []string }

func (e *ProbeError) Error() string {
	return "policy: refused: it allows a release it must deny: " + strings.Join(e.Probes, "; ")
}

// ProbeRelease evaluates the release policy on releases it must deny and
// refuses it, with a *ProbeError naming them, if it allows any or denies
// one without a reason.
//
// Each probe is a near-miss: a release the data allows (min_approvals
// distinct approvers other than the requester, together holding every
// required role, each approval fresh, its signature verified and its
// approver active in the roster in force; a jurisdiction and legal basis
// the data allows; a short scope; a request not expired) with exactly one
// condition of dual control broken:
//
//   - no approval, or one approver too few (each holding every role);
//   - the same approver counted twice;
//   - the requester approving their own request;
//   - approvers who together lack one required role (one probe per role);
//   - an approval whose signature did not verify, an approval by an
//     approver not active in the roster in force, and an approval older
//     than the approval window (each tried on every approval in turn);
//   - a verified deny vote by a further approver;
//   - an expired request, a scope longer than max_scope_days, and a legal
//     basis the jurisdiction does not allow (when the data lists another's);
//
// so a policy that checks every condition but one is caught by that one's
// probe. Probes carry random ids and times as a real request does, so a
// policy cannot tell a probe from a release. It makes one evaluation per
// probe: at most 8 + len(required_roles) + 3 × min_approvals, with
// min_approvals taken as at most 64 (maxProbeApprovers).
func (e *Engine) ProbeRelease(ctx context.Context, data map[string]any) error {
	var through []string
	for _, p := range releaseProbes(data, time.Now().UTC()).probes {
		d, err := e.DecideRelease(ctx, p.in)
		if err != nil {
			return fmt.Errorf("policy: probe %s: %w", p.name, err)
		}
		if (d.Allow || len(d.Reasons) == 0) && !slices.Contains(through, p.name) {
			through = append(through, p.name)
		}
	}
	if len(through) > 0 {
		return &ProbeError{Probes: through}
	}
	return nil
}

// A releaseProbe is a release dual control must deny; name says which
// condition it breaks, as a ProbeError reports it.
type releaseProbe struct {
	name string
	in   ReleaseInput
}

// probeSet is a release the data allows and its near-misses.
type probeSet struct {
	allowed ReleaseInput
	probes  []releaseProbe
}

// Names of probes that tests and ProbeError readers rely on.
const (
	probeForged    = "an approval whose signature did not verify"
	probeInactive  = "an approval by an approver not active in the roster in force"
	probeVeto      = "a verified deny vote by another approver"
	probeRequester = "the requester's own approval"
	probeTwice     = "the same approver counted twice"
	probeStale     = "an approval older than the approval window"
)

// Bounds on the data the probes are built from. Data past them is data no
// release can meet or a bound that binds nothing; probes built to them
// would only cost memory (min_approvals² approvals) or overflow a
// time.Duration.
const (
	// maxProbeApprovers bounds the approvers of a probe.
	maxProbeApprovers = 64
	// maxProbeHours bounds the approval window and the scope a probe
	// steps past: a century, beyond which neither limits anything.
	maxProbeHours = 100 * 365 * 24
)

// releaseProbes builds, from the release data in data (as CheckReleaseData
// accepts it; missing settings fall back to the least the checks allow),
// a release at now that the data allows and the probes derived from it
// (see ProbeRelease).
func releaseProbes(data map[string]any, now time.Time) probeSet {
	rel, _ := data["release"].(map[string]any)
	minApprovals := int(min(max(whole(rel, "min_approvals", 2), 2), maxProbeApprovers))
	windowHours := max(whole(rel, "approval_window_hours", 1), 1)
	scopeDays := max(whole(rel, "max_scope_days", 1), 1)
	var roles []string
	list, _ := rel["required_roles"].([]any)
	for _, r := range list {
		roles = append(roles, fmt.Sprint(r))
	}
	if len(roles) == 0 {
		roles = []string{"legal"}
	}
	// A jurisdiction and basis the data allows, chosen at random, and a
	// basis some other jurisdiction allows but this one does not.
	bases, _ := rel["legal_bases"].(map[string]any)
	type pair struct{ jurisdiction, basis string }
	var allowed []pair
	listed := map[string][]string{}
	for _, j := range slices.Sorted(maps.Keys(bases)) {
		list, _ := bases[j].([]any)
		for _, b := range list {
			allowed = append(allowed, pair{j, fmt.Sprint(b)})
			listed[j] = append(listed[j], fmt.Sprint(b))
		}
	}
	var use pair
	if len(allowed) > 0 {
		use = allowed[rand.IntN(len(allowed))]
	}
	var foreign string
	for _, p := range allowed {
		if p.jurisdiction != use.jurisdiction && !slices.Contains(listed[use.jurisdiction], p.basis) {
			foreign = p.basis
			break
		}
	}

	// Times as the service records them: a request to the second, an
	// approval to the microsecond (PostgreSQL's precision), now to the
	// nanosecond. Approvals fall after the request and within an hour,
	// which every approval window allows.
	between := func(lo, hi time.Duration) time.Duration { return lo + rand.N(hi-lo) }
	created := now.Add(-between(20*time.Minute, 50*time.Minute)).Truncate(time.Second)
	request := ReleaseRequest{ID: uuid.NewString(), Requester: uuid.NewString(), CaseID: uuid.NewString(),
		LegalBasis: use.basis, Jurisdiction: use.jurisdiction, CreatedAt: created,
		ExpiresAt: created.Add(between(24*time.Hour, 7*24*time.Hour)).Truncate(time.Second)}
	request.Scope = ReleaseScope{ConversationIDs: []string{uuid.NewString()}, To: created}
	request.Scope.From = created.Add(-between(time.Hour, 23*time.Hour)).Truncate(time.Second)
	approve := func(id string, roles []string) ReleaseApproval {
		return ReleaseApproval{ApproverID: id, Roles: slices.Clone(roles), Decision: "approve",
			ApprovedAt:        now.Add(-between(time.Minute, 15*time.Minute)).Truncate(time.Microsecond),
			SignatureVerified: true, ApproverActive: true}
	}

	// Exactly min_approvals approvers, so that one approval that must not
	// count leaves too few; together they hold every required role, one
	// or more each, as a roster gives them.
	held := make([][]string, minApprovals)
	for j, r := range roles {
		held[j%minApprovals] = append(held[j%minApprovals], r)
	}
	for i := len(roles); i < minApprovals; i++ {
		held[i] = []string{roles[i%len(roles)]}
	}
	approvers := make([]string, minApprovals)
	for i := range approvers {
		approvers[i] = uuid.NewString()
	}
	valid := func() []ReleaseApproval {
		out := make([]ReleaseApproval, minApprovals)
		for i, id := range approvers {
			out[i] = approve(id, held[i])
		}
		return out
	}
	with := func(r ReleaseRequest, approvals []ReleaseApproval) ReleaseInput {
		return ReleaseInput{Now: now, Request: r, Approvals: approvals}
	}

	set := probeSet{allowed: with(request, valid())}
	add := func(name string, r ReleaseRequest, approvals []ReleaseApproval) {
		set.probes = append(set.probes, releaseProbe{name, with(r, approvals)})
	}
	add("no approval", request, nil)
	var few []ReleaseApproval
	for _, id := range approvers[1:] {
		few = append(few, approve(id, roles))
	}
	if len(few) == 1 {
		add("one approval", request, few)
	} else {
		add(fmt.Sprintf("%d approvals, one too few", len(few)), request, few)
	}
	twice := valid()
	both := slices.Concat(held[0], held[1])
	twice[0].Roles, twice[1] = both, approve(approvers[0], both)
	add(probeTwice, request, twice)
	own := valid()
	own[0].ApproverID = request.Requester
	add(probeRequester, request, own)
	for _, r := range roles {
		others := slices.DeleteFunc(slices.Clone(roles), func(x string) bool { return x == r })
		lacking := make([]ReleaseApproval, minApprovals)
		for i, id := range approvers {
			lacking[i] = approve(id, others)
		}
		add("approvers without the "+r+" role", request, lacking)
	}
	for i := range minApprovals {
		forged := valid()
		forged[i].SignatureVerified = false
		add(probeForged, request, forged)
		inactive := valid()
		inactive[i].ApproverActive = false
		add(probeInactive, request, inactive)
	}
	veto := approve(uuid.NewString(), held[0])
	veto.Decision = "deny"
	add(probeVeto, request, append(valid(), veto))
	if windowHours <= maxProbeHours {
		// A stale approval needs a request older than the window.
		window := time.Duration(windowHours) * time.Hour
		old := request
		old.CreatedAt = now.Add(-window - between(time.Hour, 2*time.Hour)).Truncate(time.Second)
		old.Scope.To = old.CreatedAt
		old.Scope.From = old.CreatedAt.Add(-between(time.Hour, 23*time.Hour)).Truncate(time.Second)
		for i := range minApprovals {
			stale := valid()
			stale[i].ApprovedAt = now.Add(-window - between(time.Minute, time.Hour)).Truncate(time.Microsecond)
			add(probeStale, old, stale)
		}
	}
	expired := request
	expired.ExpiresAt = now.Truncate(time.Second).Add(-time.Duration(rand.IntN(59)+1) * time.Second)
	add("an expired request", expired, valid())
	if scopeDays <= maxProbeHours/24 {
		wide := request
		wide.Scope.From = wide.Scope.To.Add(-time.Duration(scopeDays)*24*time.Hour - between(time.Hour, 23*time.Hour)).Truncate(time.Second)
		add("a scope longer than max_scope_days", wide, valid())
	}
	if foreign != "" {
		unlisted := request
		unlisted.LegalBasis = foreign
		add(fmt.Sprintf("a legal basis %s does not allow", use.jurisdiction), unlisted, valid())
	}
	return set
}

// whole is rel[key] as a whole number, or fallback.
func whole(rel map[string]any, key string, fallback int64) int64 {
	var n int64
	var err error
	switch v := rel[key].(type) {
	case json.Number:
		n, err = v.Int64()
	case float64:
		n = int64(v)
	default:
		return fallback
	}
	if err != nil {
		return fallback
	}
	return n
}

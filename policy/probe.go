package policy

import (
	"context"
	"errors"
	"fmt"
	"maps"
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
// dual control must deny.
type ProbeError struct{ Probes []string }

func (e *ProbeError) Error() string {
	return "policy: refused: it allows a release it must deny: " + strings.Join(e.Probes, "; ")
}

// ProbeRelease evaluates the release policy on requests it must deny, each
// otherwise valid (a jurisdiction and legal basis the data allows, a short
// scope, fresh approvals): zero approvals, one approval, the requester's
// own approvals, approvers who together miss a required role, and an
// expired request with full approval. A policy that allows any of them, or
// denies without a reason, is refused with a *ProbeError naming them.
func (e *Engine) ProbeRelease(ctx context.Context, data map[string]any) error {
	rel, _ := data["release"].(map[string]any)
	bases, _ := rel["legal_bases"].(map[string]any)
	var jurisdiction, basis string
	for _, j := range slices.Sorted(maps.Keys(bases)) {
		if list, _ := bases[j].([]any); len(list) > 0 {
			jurisdiction, basis = j, fmt.Sprint(list[0])
			break
		}
	}
	var roles []string
	list, _ := rel["required_roles"].([]any)
	for _, r := range list {
		roles = append(roles, fmt.Sprint(r))
	}
	if len(roles) == 0 {
		roles = []string{"probe-role"}
	}
	now := time.Now().UTC().Truncate(time.Second)
	// Random ids, like a real request's, so that a policy cannot tell a
	// probe from a release by its names.
	id := func() string { return uuid.NewString() }
	request := ReleaseRequest{ID: id(), Requester: id(), CaseID: id(), LegalBasis: basis,
		Jurisdiction: jurisdiction, Scope: ReleaseScope{ConversationIDs: []string{id()}, From: now.Add(-time.Hour), To: now},
		CreatedAt: now.Add(-time.Minute), ExpiresAt: now.Add(time.Hour)}
	approve := func(id string, rs ...string) ReleaseApproval {
		return ReleaseApproval{ApproverID: id, Roles: rs, Decision: "approve", ApprovedAt: now.Add(-time.Minute),
			SignatureVerified: true, ApproverActive: true}
	}
	// Every approver of a full approval holds every required role, so
	// only the rule a probe breaks stands between it and a release.
	a, b, c := id(), id(), id()
	full := []ReleaseApproval{approve(a, roles...), approve(b, roles...), approve(c, roles...)}
	expired := request
	expired.CreatedAt, expired.ExpiresAt = now.Add(-2*time.Hour), now.Add(-time.Hour)
	// Everyone without the first required role.
	lacking := []ReleaseApproval{approve(a, roles[1:]...), approve(b, roles[1:]...), approve(c, roles[1:]...)}
	probes := []struct {
		name      string
		request   ReleaseRequest
		approvals []ReleaseApproval
	}{
		{"no approval", request, nil},
		{"one approval", request, full[:1]},
		{"the requester's own approvals", request, []ReleaseApproval{approve(request.Requester, roles...), approve(request.Requester, roles...)}},
		{"approvers without the " + roles[0] + " role", request, lacking},
		{"an expired request", expired, full},
	}
	var through []string
	for _, p := range probes {
		d, err := e.DecideRelease(ctx, ReleaseInput{Now: now, Request: p.request, Approvals: p.approvals})
		if err != nil {
			return fmt.Errorf("policy: probe %s: %w", p.name, err)
		}
		if d.Allow || len(d.Reasons) == 0 {
			through = append(through, p.name)
		}
	}
	if len(through) > 0 {
		return &ProbeError{Probes: through}
	}
	return nil
}

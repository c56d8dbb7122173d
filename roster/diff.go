package roster

import (
	"fmt"
	"slices"
	"strings"
)

// Changes lists, for people, what next changes from prev (nil for a
// genesis): approvers added, removed, re-keyed or given other roles,
// custodians added, removed or changed, and the threshold and rule. An
// approver is shown what they sign.
func Changes(prev *Roster, next Roster) []string {
	var out []string
	if prev == nil {
		prev = &Roster{}
		out = append(out, "genesis: the first version")
	}
	for _, a := range next.Approvers {
		old, ok := prev.Approver(a.ID)
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("adds approver %s with roles %s and key %s", a.ID, strings.Join(a.Roles, ","), a.KeyID()))
		case old.KeyID() != a.KeyID():
			out = append(out, fmt.Sprintf("re-keys approver %s: %s → %s", a.ID, old.KeyID(), a.KeyID()))
		}
		if ok && !slices.Equal(old.Roles, a.Roles) {
			out = append(out, fmt.Sprintf("changes approver %s's roles: %s → %s", a.ID, strings.Join(old.Roles, ","), strings.Join(a.Roles, ",")))
		}
	}
	for _, a := range prev.Approvers {
		if _, ok := next.Approver(a.ID); !ok {
			out = append(out, "removes approver "+a.ID)
		}
	}
	for _, c := range next.Custodians {
		old, ok := prev.Custodian(c.Name)
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("adds custodian %s at %s", c.Name, c.URL))
		case old.URL != c.URL:
			out = append(out, fmt.Sprintf("moves custodian %s: %s → %s", c.Name, old.URL, c.URL))
		}
		if ok && (old.HPKEKey.Fingerprint() != c.HPKEKey.Fingerprint() || !old.SigningKey.Equal(c.SigningKey)) {
			out = append(out, fmt.Sprintf("changes custodian %s's keys", c.Name))
		}
	}
	for _, c := range prev.Custodians {
		if _, ok := next.Custodian(c.Name); !ok {
			out = append(out, "removes custodian "+c.Name)
		}
	}
	if prev.Threshold != next.Threshold {
		out = append(out, fmt.Sprintf("custodian threshold %d → %d", prev.Threshold, next.Threshold))
	}
	if prev.Rule.MinSigners != next.Rule.MinSigners || !slices.Equal(prev.Rule.RequiredRoles, next.Rule.RequiredRoles) {
		out = append(out, fmt.Sprintf("roster rule: %d signers covering %s", next.Rule.MinSigners, strings.Join(next.Rule.RequiredRoles, ",")))
	}
	return out
}

package roster

import (
	"fmt"
	"slices"
	"strings"
)

// Changes lists, for people, everything next changes from prev (nil for a
// genesis), one line each:
//
//   - every approver and officer added, removed, re-keyed or given other
//     roles, each key as its full fingerprint (KeyFingerprint), and the
//     order of the entries when it changed;
//   - every custodian added or removed, moved to another URL, given
//     another HPKE key (seal.PublicKey.Fingerprint) or signing key
//     (KeyFingerprint), or put at another place in the list: share i is
//     sealed to custodian i, so a custodian's place is part of the set;
//   - the pseudonym service added or removed, moved to another URL, or
//     given other public keys (each in full);
//   - the audit log added or removed, given another origin, or other
//     verifier keys (each in full);
//   - always the threshold and the rule, old → new or unchanged.
//
// The lines are a pure function of the two versions, in a fixed order:
// the mediator describes proposals with it, and an approver's tool
// computes it again from the proposal's signed bytes and the version in
// force it verified, so an honest mediator's description is exactly the
// tool's. Cost: O(n²) in the number of entries, at most MaxApprovers.
func Changes(prev *Roster, next Roster) []string {
	var out []string
	var before Roster
	if prev == nil {
		out = append(out, "genesis: the first version")
	} else {
		before = *prev
	}
	out = append(out, memberChanges(before.Approvers, next.Approvers)...)
	out = append(out, custodianChanges(before.Custodians, next.Custodians)...)
	out = append(out, pseudonymChanges(before.Pseudonym, next.Pseudonym)...)
	out = append(out, logChanges(before.Log, next.Log)...)
	return append(out, thresholdChange(prev, next), ruleChange(prev, next))
}

// pseudonymChanges lists what changes of the pseudonym service.
func pseudonymChanges(before, after *PseudonymService) []string {
	keys := func(p *PseudonymService) string { return strings.Join(p.PublicKeys, ", ") }
	switch {
	case before == nil && after == nil:
		return nil
	case before == nil:
		return []string{fmt.Sprintf("adds the pseudonym service: url %s, keys %s", after.URL, keys(after))}
	case after == nil:
		return []string{fmt.Sprintf("removes the pseudonym service (url %s, keys %s)", before.URL, keys(before))}
	}
	var out []string
	if before.URL != after.URL {
		out = append(out, fmt.Sprintf("changes the pseudonym service's url: %s → %s", before.URL, after.URL))
	}
	if !slices.Equal(before.PublicKeys, after.PublicKeys) {
		out = append(out, fmt.Sprintf("changes the pseudonym service's keys: %s → %s", keys(before), keys(after)))
	}
	return out
}

// logChanges lists what changes of the audit log.
func logChanges(before, after *AuditLog) []string {
	keys := func(l *AuditLog) string { return strings.Join(l.VerifierKeys, ", ") }
	switch {
	case before == nil && after == nil:
		return nil
	case before == nil:
		return []string{fmt.Sprintf("adds the audit log: origin %s, verifier keys %s", after.Origin, keys(after))}
	case after == nil:
		return []string{fmt.Sprintf("removes the audit log (origin %s, verifier keys %s)", before.Origin, keys(before))}
	}
	var out []string
	if before.Origin != after.Origin {
		out = append(out, fmt.Sprintf("changes the audit log's origin: %s → %s", before.Origin, after.Origin))
	}
	if !slices.Equal(before.VerifierKeys, after.VerifierKeys) {
		out = append(out, fmt.Sprintf("changes the audit log's verifier keys: %s → %s", keys(before), keys(after)))
	}
	return out
}

// kind is what an entry is called: officer or approver.
func kind(a Approver) string {
	if a.IsOfficer() {
		return RoleOfficer
	}
	return "approver"
}

// memberChanges lists what changes between two versions' approvers and
// officers, matched by id.
func memberChanges(before, after []Approver) []string {
	var out []string
	find := func(list []Approver, id string) (Approver, bool) {
		i := slices.IndexFunc(list, func(a Approver) bool { return a.ID == id })
		if i < 0 {
			return Approver{}, false
		}
		return list[i], true
	}
	for _, a := range after {
		old, ok := find(before, a.ID)
		if !ok {
			out = append(out, fmt.Sprintf("adds %s %s: roles %s, key %s", kind(a), a.ID, strings.Join(a.Roles, ","), a.Fingerprint()))
			continue
		}
		if !slices.Equal(old.Roles, a.Roles) {
			becomes := ""
			if kind(old) != kind(a) {
				becomes = fmt.Sprintf(" (the %s becomes an %s)", kind(old), kind(a))
			}
			out = append(out, fmt.Sprintf("changes %s %s's roles: %s → %s%s", kind(old), a.ID,
				strings.Join(old.Roles, ","), strings.Join(a.Roles, ","), becomes))
		}
		if !old.PublicKey.Equal(a.PublicKey) {
			out = append(out, fmt.Sprintf("re-keys %s %s: %s → %s", kind(a), a.ID, old.Fingerprint(), a.Fingerprint()))
		}
	}
	for _, old := range before {
		if _, ok := find(after, old.ID); !ok {
			out = append(out, fmt.Sprintf("removes %s %s (roles %s, key %s)", kind(old), old.ID, strings.Join(old.Roles, ","), old.Fingerprint()))
		}
	}
	// The order of the entries decides nothing, but it is part of what is
	// signed: say when the entries both versions list are in another order.
	var kept, keptBefore []string
	for _, a := range after {
		if _, ok := find(before, a.ID); ok {
			kept = append(kept, a.ID)
		}
	}
	for _, a := range before {
		if _, ok := find(after, a.ID); ok {
			keptBefore = append(keptBefore, a.ID)
		}
	}
	if !slices.Equal(kept, keptBefore) {
		out = append(out, fmt.Sprintf("lists the approvers and officers in another order: %s → %s (the order decides nothing)",
			strings.Join(ids(before), ", "), strings.Join(ids(after), ", ")))
	}
	return out
}

func ids(list []Approver) []string {
	out := make([]string, len(list))
	for i, a := range list {
		out[i] = a.ID
	}
	return out
}

// custodianChanges lists what changes between two versions' custodians,
// matched by name; places are the share numbers, from 1.
func custodianChanges(before, after []Custodian) []string {
	var out []string
	place := func(list []Custodian, name string) int {
		return slices.IndexFunc(list, func(c Custodian) bool { return c.Name == name })
	}
	for i, c := range after {
		j := place(before, c.Name)
		if j < 0 {
			out = append(out, fmt.Sprintf("adds custodian %s as share %d: url %s, hpke key %s, signing key %s",
				c.Name, i+1, c.URL, c.HPKEKey.Fingerprint(), KeyFingerprint(c.SigningKey)))
			continue
		}
		old := before[j]
		if j != i {
			out = append(out, fmt.Sprintf("moves custodian %s from share %d to share %d", c.Name, j+1, i+1))
		}
		if old.URL != c.URL {
			out = append(out, fmt.Sprintf("changes custodian %s's url: %s → %s", c.Name, old.URL, c.URL))
		}
		if old.HPKEKey.Fingerprint() != c.HPKEKey.Fingerprint() {
			out = append(out, fmt.Sprintf("changes custodian %s's hpke key: %s → %s", c.Name, old.HPKEKey.Fingerprint(), c.HPKEKey.Fingerprint()))
		}
		if !old.SigningKey.Equal(c.SigningKey) {
			out = append(out, fmt.Sprintf("changes custodian %s's signing key: %s → %s", c.Name, KeyFingerprint(old.SigningKey), KeyFingerprint(c.SigningKey)))
		}
	}
	for j, old := range before {
		if place(after, old.Name) < 0 {
			out = append(out, fmt.Sprintf("removes custodian %s (share %d, url %s, hpke key %s, signing key %s)",
				old.Name, j+1, old.URL, old.HPKEKey.Fingerprint(), KeyFingerprint(old.SigningKey)))
		}
	}
	return out
}

// thresholdChange says how many custodians of how many recover a key,
// before and after.
func thresholdChange(prev *Roster, next Roster) string {
	now := fmt.Sprintf("%d of %d custodians", next.Threshold, len(next.Custodians))
	switch {
	case prev == nil:
		return "threshold: " + now
	case prev.Threshold == next.Threshold && len(prev.Custodians) == len(next.Custodians):
		return "threshold: " + now + ", unchanged"
	}
	return fmt.Sprintf("threshold: %d of %d custodians → %s", prev.Threshold, len(prev.Custodians), now)
}

// ruleChange says what adopting the version after takes, before and
// after.
func ruleChange(prev *Roster, next Roster) string {
	describe := func(r Rule) string {
		return fmt.Sprintf("%d signers covering %s", r.MinSigners, strings.Join(r.RequiredRoles, ","))
	}
	switch {
	case prev == nil:
		return "rule: " + describe(next.Rule)
	case describe(prev.Rule) == describe(next.Rule):
		return "rule: " + describe(next.Rule) + ", unchanged"
	}
	return "rule: " + describe(prev.Rule) + " → " + describe(next.Rule)
}

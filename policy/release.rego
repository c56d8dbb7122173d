# Package mediator.release decides whether the keys of a lawful-access
# request may be released: dual control. Every number and list it uses is in
# data.release (data.json beside this file), which an operator edits; the
# rules themselves rarely need to change.
#
# Input (policy.ReleaseInput):
#   {"now": RFC 3339,
#    "request": {"id", "requester", "case_id", "legal_basis", "jurisdiction",
#                "scope": {"conversation_ids": [..], "from": RFC 3339, "to": RFC 3339},
#                "created_at": RFC 3339, "expires_at": RFC 3339},
#    "approvals": [{"approver_id", "roles": [..], "decision": "approve"|"deny",
#                   "approved_at": RFC 3339, "signature_verified": bool,
#                   "approver_active": bool}]}
#
# Output: decision = {"allow": bool, "reasons": [why not, sorted]}. It allows
# only when no rule gives a reason.
package mediator.release

import rego.v1

# cfg is data.release, or nothing: with no data at all, every rule that
# reads a number or list below still runs, against the checks that deny.
default cfg := {}

cfg := data.release

# The policy fails closed: data that lacks a setting, or sets one that
# would weaken dual control, denies every release with a reason. (The
# engine also refuses to load such data; these rules hold even if it did.)
required_settings := {"min_approvals", "required_roles", "approval_window_hours", "max_scope_days", "legal_bases"}

reasons contains msg if {
	some k in required_settings
	not k in object.keys(cfg)
	msg := sprintf("the release policy's data lacks release.%s; nothing is released until it is set", [k])
}

reasons contains "the release policy's data sets min_approvals below 2" if {
	not is_number(cfg.min_approvals)
}

reasons contains "the release policy's data sets min_approvals below 2" if {
	is_number(cfg.min_approvals)
	cfg.min_approvals < 2
}

reasons contains "the release policy's data requires no role" if {
	not is_array(cfg.required_roles)
}

reasons contains "the release policy's data requires no role" if {
	is_array(cfg.required_roles)
	count(cfg.required_roles) == 0
}

now_ns := time.parse_rfc3339_ns(input.now)

hour_ns := 3600 * 1000000000

# counted holds the approvals that count toward dual control: an approve
# vote, whose signature verified against the approver's registered key, by
# an approver still active, who is not the requester.
counted contains a if {
	some a in input.approvals
	a.decision == "approve"
	a.signature_verified == true
	a.approver_active == true
	a.approver_id != input.request.requester
}

counted_approvers := {a.approver_id | some a in counted}

covered_roles := {r | some a in counted; some r in a.roles}

reasons contains msg if {
	count(counted_approvers) < cfg.min_approvals
	msg := sprintf("needs approvals from at least %d distinct approvers other than the requester; has %d", [cfg.min_approvals, count(counted_approvers)])
}

reasons contains msg if {
	some role in cfg.required_roles
	not role in covered_roles
	msg := sprintf("no approval from an approver with the %s role", [role])
}

# Any verified deny vote blocks the release.
reasons contains msg if {
	some a in input.approvals
	a.decision == "deny"
	a.signature_verified == true
	msg := sprintf("%s voted to deny", [a.approver_id])
}

reasons contains msg if {
	some a in counted
	now_ns - time.parse_rfc3339_ns(a.approved_at) > cfg.approval_window_hours * hour_ns
	msg := sprintf("the approval by %s is older than the %d-hour approval window", [a.approver_id, cfg.approval_window_hours])
}

reasons contains "the request has expired" if {
	time.parse_rfc3339_ns(input.request.expires_at) <= now_ns
}

reasons contains msg if {
	allowed := object.get(cfg.legal_bases, input.request.jurisdiction, [])
	not input.request.legal_basis in allowed
	msg := sprintf("legal basis %q is not allowed in jurisdiction %q", [input.request.legal_basis, input.request.jurisdiction])
}

reasons contains msg if {
	span := time.parse_rfc3339_ns(input.request.scope.to) - time.parse_rfc3339_ns(input.request.scope.from)
	span > cfg.max_scope_days * 24 * hour_ns
	msg := sprintf("the scope window is longer than %d days", [cfg.max_scope_days])
}

reasons contains "the scope window ends before it starts" if {
	time.parse_rfc3339_ns(input.request.scope.to) < time.parse_rfc3339_ns(input.request.scope.from)
}

decision := {"allow": count(reasons) == 0, "reasons": sort(reasons)}

# Tests of mediator.release: one allowed case, then each rule and each way
# an approval must fail to count. Run by policy.TestRego (as `opa test .`).
package mediator.release_test

import rego.v1

import data.mediator.release

now := "2026-11-20T12:00:00Z"

base_request := {
	"id": "7c3f8a9e-0000-4000-8000-000000000001",
	"requester": "olga",
	"case_id": "case-17",
	"legal_basis": "court_order",
	"jurisdiction": "US",
	"scope": {"conversation_ids": ["c1", "c2"], "from": "2026-11-01T00:00:00Z", "to": "2026-11-15T00:00:00Z"},
	"created_at": "2026-11-20T10:00:00Z",
	"expires_at": "2026-11-23T10:00:00Z",
}

approval(id, roles, decision, at) := {
	"approver_id": id,
	"roles": roles,
	"decision": decision,
	"approved_at": at,
	"signature_verified": true,
	"approver_active": true,
}

lena := approval("lena", ["legal"], "approve", "2026-11-20T11:00:00Z")

sam := approval("sam", ["security"], "approve", "2026-11-20T11:30:00Z")

input_with(approvals) := {"now": now, "request": base_request, "approvals": approvals}

request_with(patch) := object.union(base_request, patch)

deny_reason(inp, fragment) if {
	d := release.decision with input as inp
	d.allow == false
	some r in d.reasons
	contains(r, fragment)
}

test_two_roles_two_approvers_allowed if {
	d := release.decision with input as input_with([lena, sam])
	d.allow == true
	d.reasons == []
}

test_no_approvals_denied if {
	deny_reason(input_with([]), "at least 2 distinct approvers")
}

test_one_approval_denied if {
	deny_reason(input_with([lena]), "has 1")
	deny_reason(input_with([lena]), "security role")
}

test_self_approval_counts_for_nothing if {
	self := approval("olga", ["security"], "approve", "2026-11-20T11:40:00Z")
	deny_reason(input_with([lena, self]), "has 1")
}

test_same_approver_twice_counts_once if {
	again := approval("lena", ["security"], "approve", "2026-11-20T11:45:00Z")
	deny_reason(input_with([lena, again]), "has 1")
}

test_roles_must_be_covered if {
	lara := approval("lara", ["legal"], "approve", "2026-11-20T11:10:00Z")
	deny_reason(input_with([lena, lara]), "security role")
}

test_one_approver_with_both_roles_is_not_enough if {
	both := approval("bo", ["legal", "security"], "approve", "2026-11-20T11:10:00Z")
	deny_reason(input_with([both]), "has 1")
}

test_deny_vote_blocks if {
	no := approval("nina", ["legal"], "deny", "2026-11-20T11:50:00Z")
	deny_reason(input_with([lena, sam, no]), "nina voted to deny")
}

test_stale_approval_denied if {
	old := approval("lena", ["legal"], "approve", "2026-11-16T11:00:00Z")
	deny_reason(input_with([old, sam]), "older than the 72-hour approval window")
}

test_unverified_signature_does_not_count if {
	forged := object.union(sam, {"signature_verified": false})
	deny_reason(input_with([lena, forged]), "has 1")
}

test_unverified_deny_vote_is_ignored if {
	forged := approval("nina", ["legal"], "deny", "2026-11-20T11:50:00Z")
	d := release.decision with input as input_with([lena, sam, object.union(forged, {"signature_verified": false})])
	d.allow == true
}

test_inactive_approver_does_not_count if {
	gone := object.union(sam, {"approver_active": false})
	deny_reason(input_with([lena, gone]), "has 1")
}

test_expired_request_denied if {
	inp := {"now": now, "request": request_with({"expires_at": "2026-11-20T11:59:59Z"}), "approvals": [lena, sam]}
	deny_reason(inp, "expired")
}

test_legal_basis_not_allowed_in_jurisdiction if {
	inp := {"now": now, "request": request_with({"legal_basis": "warrant"}), "approvals": [lena, sam]}
	deny_reason(inp, "legal basis \"warrant\" is not allowed in jurisdiction \"US\"")
}

test_unknown_jurisdiction_denied if {
	inp := {"now": now, "request": request_with({"jurisdiction": "XX"}), "approvals": [lena, sam]}
	deny_reason(inp, "jurisdiction \"XX\"")
}

test_scope_longer_than_limit_denied if {
	inp := {"now": now, "request": request_with({"scope": {"conversation_ids": ["c1"], "from": "2026-07-01T00:00:00Z", "to": "2026-11-15T00:00:00Z"}}), "approvals": [lena, sam]}
	deny_reason(inp, "longer than 90 days")
}

test_scope_backwards_denied if {
	inp := {"now": now, "request": request_with({"scope": {"conversation_ids": ["c1"], "from": "2026-11-15T00:00:00Z", "to": "2026-11-01T00:00:00Z"}}), "approvals": [lena, sam]}
	deny_reason(inp, "ends before it starts")
}

test_operator_data_changes_the_numbers if {
	stricter := object.union(data.release, {"min_approvals": 3})
	d := release.decision with input as input_with([lena, sam]) with data.release as stricter
	d.allow == false
	some r in d.reasons
	contains(r, "at least 3")
}

test_every_reason_is_reported if {
	inp := {"now": now, "request": request_with({"expires_at": "2026-11-20T11:00:00Z", "legal_basis": "warrant"}), "approvals": []}
	d := release.decision with input as inp
	count(d.reasons) == 5
}

# The policy fails closed on data that lacks a setting or weakens dual
# control: each of these would otherwise allow one approval, or none.
test_missing_data_denied if {
	deny_reason(input_with([lena, sam]), "lacks release.min_approvals") with data.release as object.remove(data.release, ["min_approvals"])
	deny_reason(input_with([lena, sam]), "lacks release.required_roles") with data.release as object.remove(data.release, ["required_roles"])
	deny_reason(input_with([lena, sam]), "lacks release.legal_bases") with data.release as object.remove(data.release, ["legal_bases"])
}

test_no_data_at_all_denied if {
	d := release.decision with input as input_with([lena, sam]) with data.release as {}
	d.allow == false
	count(d.reasons) >= 5
}

test_weakened_data_denied if {
	deny_reason(input_with([lena]), "below 2") with data.release.min_approvals as 0
	deny_reason(input_with([lena]), "below 2") with data.release.min_approvals as 1
	deny_reason(input_with([lena, sam]), "requires no role") with data.release.required_roles as []
	deny_reason(input_with([lena, sam]), "lacks release.min_approvals") with data.release as object.union(object.remove(data.release, ["min_approvals"]), {"min_approval": 0})
}

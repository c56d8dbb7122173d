# Package mediator.authz decides every API call from the caller's roles, the
# HTTP method and the route pattern the router matched. Deny by default.
#
# Input:
#   {"authenticated": bool, "subject": string, "roles": [string],
#    "method": "GET", "route": "/v1/whoami"}
#
# An operator changes who may call what by editing the tables below (or by
# pointing --policy-dir at a copy); no rebuild is needed.
package mediator.authz

import rego.v1

default allow := false

# public lists the operational routes anyone may call without a token:
# orchestrators probe them and clients read the API description. They
# reveal no identifiers or secrets. /metrics is not among them: its counts
# of lawful-access activity and events are for Prometheus, with a token of
# the metrics role (or on the separate --metrics-addr listener).
public := {
	"GET /healthz",
	"GET /readyz",
	"GET /openapi.yaml",
}

all_roles := {"ingest", "depositor", "officer", "approver", "auditor", "admin", "metrics"}

audit_readers := {"auditor", "officer"}

request_readers := {"officer", "approver", "auditor"}

# routes maps "METHOD pattern" to the roles allowed to call it.
routes := {
	"GET /v1/whoami": all_roles,
	"GET /metrics": {"metrics"},
	"POST /v1/events": {"ingest"},
	"GET /v1/audit/checkpoint": audit_readers,
	"GET /v1/audit/verifier-key": audit_readers,
	"GET /v1/audit/entries": audit_readers,
	"GET /v1/audit/entries/{seq}": audit_readers,
	"GET /v1/audit/entries/{seq}/tlog-proof": audit_readers,
	"GET /v1/audit/proof/inclusion": audit_readers,
	"GET /v1/audit/proof/consistency": audit_readers,
	"GET /v1/audit/export": audit_readers,
	# The same log as C2SP tlog-tiles (a regulator's tools read these with
	# an auditor token).
	"GET /v1/audit/tlog/checkpoint": audit_readers,
	"GET /v1/audit/tlog/tile/entries/*": audit_readers,
	"GET /v1/audit/tlog/tile/{level}/*": audit_readers,
	"POST /v1/escrow/keys": {"depositor"},
	# Depositors read the custodian set they seal shares to (and check it
	# against the digest they pinned); auditors and officers may see it.
	"GET /v1/escrow/custodians": {"depositor", "auditor", "officer"},
	# The single-admin approver registry is retired: these answer 410 and
	# name the roster flow.
	"POST /v1/approvers": {"admin"},
	"GET /v1/approvers": {"admin", "auditor"},
	"POST /v1/approvers/{id}/keys": {"admin"},
	"POST /v1/approvers/{id}/deactivate": {"admin"},
	# The roster: anyone who must verify it reads the chain; an admin can
	# only propose; approvers sign (the quorum rule is checked by whoever
	# verifies the chain, not by this policy) and check in. Officers sign
	# a version that adds or re-keys them (proof of possession), so they
	# read proposals too: their tool shows what they sign.
	"GET /v1/roster": {"depositor", "officer", "approver", "auditor", "admin"},
	"GET /v1/roster/proposals": {"officer", "approver", "auditor", "admin"},
	"GET /v1/roster/proposals/{digest}": {"officer", "approver", "auditor", "admin"},
	"POST /v1/roster/proposals": {"admin"},
	"POST /v1/roster/proposals/{digest}/signatures": {"approver", "officer"},
	"POST /v1/roster/checkins": {"approver"},
	"POST /v1/access-requests": {"officer"},
	"GET /v1/access-requests": request_readers,
	"GET /v1/access-requests/{id}": request_readers,
	"POST /v1/access-requests/{id}/approvals": {"approver"},
	# Only the requesting officer may release or revoke; the handler checks
	# that the caller filed the request.
	"POST /v1/access-requests/{id}/release": {"officer"},
	"GET /v1/access-requests/{id}/release": {"officer"},
	"POST /v1/access-requests/{id}/revoke": {"officer"},
	"GET /v1/stats/transport": {"auditor"},
}

allow if public[route_key]

allow if {
	input.authenticated == true
	some role in input.roles
	role in routes[route_key]
}

route_key := sprintf("%s %s", [input.method, input.route])

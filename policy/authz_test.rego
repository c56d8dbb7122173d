package mediator.authz_test

import data.mediator.authz
import rego.v1

roles := ["ingest", "depositor", "officer", "approver", "auditor", "admin", "metrics"]

# matrix is the route × role table: for every route that exists, the roles
# that must be allowed. Every role not listed must be denied.
matrix := {
	"GET /healthz": {"anonymous", "ingest", "depositor", "officer", "approver", "auditor", "admin", "metrics"},
	"GET /readyz": {"anonymous", "ingest", "depositor", "officer", "approver", "auditor", "admin", "metrics"},
	"GET /metrics": {"metrics"},
	"GET /openapi.yaml": {"anonymous", "ingest", "depositor", "officer", "approver", "auditor", "admin", "metrics"},
	"GET /v1/whoami": {"ingest", "depositor", "officer", "approver", "auditor", "admin", "metrics"},
	"POST /v1/events": {"ingest"},
	"GET /v1/audit/checkpoint": {"auditor", "officer"},
	"GET /v1/audit/verifier-key": {"auditor", "officer"},
	"GET /v1/audit/entries": {"auditor", "officer"},
	"GET /v1/audit/entries/{seq}": {"auditor", "officer"},
	"GET /v1/audit/entries/{seq}/tlog-proof": {"auditor", "officer"},
	"GET /v1/audit/proof/inclusion": {"auditor", "officer"},
	"GET /v1/audit/proof/consistency": {"auditor", "officer"},
	"GET /v1/audit/export": {"auditor", "officer"},
	"GET /v1/audit/tlog/checkpoint": {"auditor", "officer"},
	"GET /v1/audit/tlog/tile/entries/*": {"auditor", "officer"},
	"GET /v1/audit/tlog/tile/{level}/*": {"auditor", "officer"},
	"POST /v1/escrow/keys": {"depositor"},
	"GET /v1/escrow/custodians": {"depositor", "auditor", "officer"},
	"POST /v1/approvers": {"admin"},
	"GET /v1/approvers": {"admin", "auditor"},
	"POST /v1/approvers/{id}/keys": {"admin"},
	"POST /v1/approvers/{id}/deactivate": {"admin"},
	"GET /v1/roster": {"depositor", "officer", "approver", "auditor", "admin"},
	"GET /v1/roster/proposals": {"officer", "approver", "auditor", "admin"},
	"GET /v1/roster/proposals/{digest}": {"officer", "approver", "auditor", "admin"},
	"POST /v1/roster/proposals": {"admin"},
	"POST /v1/roster/proposals/{digest}/signatures": {"approver", "officer"},
	"POST /v1/roster/checkins": {"approver"},
	"POST /v1/access-requests": {"officer"},
	"GET /v1/access-requests": {"officer", "approver", "auditor"},
	"GET /v1/access-requests/{id}": {"officer", "approver", "auditor"},
	"POST /v1/access-requests/{id}/approvals": {"approver"},
	"POST /v1/access-requests/{id}/release": {"officer"},
	"GET /v1/access-requests/{id}/release": {"officer"},
	"POST /v1/access-requests/{id}/revoke": {"officer"},
	"GET /v1/stats/transport": {"auditor"},
}

request(key, role) := inp if {
	parts := split(key, " ")
	role != "anonymous"
	inp := {"authenticated": true, "subject": "alice", "roles": [role], "method": parts[0], "route": parts[1]}
}

request(key, "anonymous") := inp if {
	parts := split(key, " ")
	inp := {"authenticated": false, "subject": "", "roles": [], "method": parts[0], "route": parts[1]}
}

decision(key, role) if authz.allow with input as request(key, role)

test_matrix_allows if {
	every key, allowed in matrix {
		every role in allowed {
			decision(key, role)
		}
	}
}

test_matrix_denies if {
	every key, allowed in matrix {
		every role in ({"anonymous"} | {r | some r in roles}) - allowed {
			not decision(key, role)
		}
	}
}

# Every route the policy knows is in the matrix, so a new route cannot be
# added to the policy without its row here.
test_matrix_covers_policy if {
	policy_routes := {k | some k, _ in authz.routes} | authz.public
	policy_routes == {k | some k, _ in matrix}
}

test_unknown_route_denied if {
	not authz.allow with input as {"authenticated": true, "roles": roles, "method": "GET", "route": "/debug/pprof/"}
}

test_wrong_method_denied if {
	not authz.allow with input as {"authenticated": true, "roles": roles, "method": "POST", "route": "/v1/whoami"}
}

test_unauthenticated_roles_ignored if {
	# Roles without a verified token count for nothing.
	not authz.allow with input as {"authenticated": false, "roles": ["admin"], "method": "GET", "route": "/v1/whoami"}
}

test_unknown_role_denied if {
	not authz.allow with input as {"authenticated": true, "roles": ["root"], "method": "GET", "route": "/v1/whoami"}
}

test_no_roles_denied if {
	not authz.allow with input as {"authenticated": true, "roles": [], "method": "GET", "route": "/v1/whoami"}
}

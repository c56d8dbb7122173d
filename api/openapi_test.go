package api_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/mediatorhq/mediator/api"
	"github.com/mediatorhq/mediator/policy"
	"github.com/mediatorhq/mediator/test/apispec"
)

// TestOpenAPIDescribesEveryRoute: the description is valid OpenAPI 3.1, it
// has an operation for every route the router serves and none it does not,
// and each operation's x-mediator-roles is exactly what the policy allows.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	ctx := context.Background()
	spec, err := apispec.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	routes, err := api.Routes(api.NewRouter(api.Deps{Metrics: api.NewMetrics("test")}))
	if err != nil {
		t.Fatal(err)
	}
	// Retired routes answer 410 and are named in the description's
	// introduction, not described as operations.
	retired := map[string]bool{"POST /v1/approvers": true, "GET /v1/approvers": true,
		"POST /v1/approvers/{id}/keys": true, "POST /v1/approvers/{id}/deactivate": true}
	served := map[string]bool{}
	for _, r := range routes {
		served[r] = true
		method, path, _ := strings.Cut(r, " ")
		if retired[r] {
			if spec.Has(method, path) || !strings.Contains(spec.Doc.Info.Description, "`"+r+"`") {
				t.Errorf("retired route %s is described as an operation, or not named as retired", r)
			}
			continue
		}
		if !spec.Has(method, path) {
			t.Errorf("route %s is not in api/openapi.yaml", r)
		}
	}
	engine, err := policy.Load(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	allRoles := []string{"ingest", "depositor", "officer", "approver", "auditor", "admin", "metrics"}
	described := 0
	for path, item := range spec.Doc.Paths.Map() {
		for method, op := range item.Operations() {
			described++
			key := method + " " + path
			if !served[key] {
				t.Errorf("api/openapi.yaml describes %s, which the router does not serve", key)
				continue
			}
			raw, _ := op.Extensions["x-mediator-roles"].([]any)
			var declared []string
			for _, r := range raw {
				declared = append(declared, r.(string))
			}
			var allowed []string
			if ok, _ := engine.Authorize(ctx, policy.AuthzInput{Method: method, Route: path}); ok {
				allowed = append(allowed, "public")
			} else {
				for _, role := range allRoles {
					if ok, _ := engine.Authorize(ctx, policy.AuthzInput{Authenticated: true, Roles: []string{role}, Method: method, Route: path}); ok {
						allowed = append(allowed, role)
					}
				}
			}
			slices.Sort(declared)
			slices.Sort(allowed)
			if !slices.Equal(declared, allowed) {
				t.Errorf("%s: x-mediator-roles %v, the policy allows %v", key, declared, allowed)
			}
			// Every guarded operation describes the auth failures.
			if !slices.Contains(declared, "public") && (op.Responses.Value("401") == nil || op.Responses.Value("403") == nil) {
				t.Errorf("%s: 401 and 403 are not described", key)
			}
		}
	}
	if described != len(routes)-len(retired) {
		t.Errorf("%d operations described, %d routes served", described, len(routes))
	}
}

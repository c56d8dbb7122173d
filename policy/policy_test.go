package policy

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/open-policy-agent/opa/v1/tester"
)

// TestRego runs every Rego unit test in this directory (the route × role
// matrix and the denial cases) the way `opa test .` would.
func TestRego(t *testing.T) {
	results, err := tester.Run(context.Background(), ".")
	if err != nil {
		t.Fatalf("run rego tests: %v", err)
	}
	if len(results) == 0 {
		t.Fatal("no Rego tests found")
	}
	for _, r := range results {
		if !r.Pass() {
			t.Errorf("rego %s.%s: %s", r.Package, r.Name, r.String())
		} else {
			t.Logf("rego %s.%s: PASS", r.Package, r.Name)
		}
	}
}

func TestAuthorize(t *testing.T) {
	ctx := context.Background()
	e, err := Load(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		in   AuthzInput
		want bool
	}{
		{"anonymous healthz", AuthzInput{Method: "GET", Route: "/healthz"}, true},
		{"anonymous whoami", AuthzInput{Method: "GET", Route: "/v1/whoami"}, false},
		{"auditor whoami", AuthzInput{Authenticated: true, Roles: []string{"auditor"}, Method: "GET", Route: "/v1/whoami"}, true},
		{"roles without token", AuthzInput{Roles: []string{"admin"}, Method: "GET", Route: "/v1/whoami"}, false},
		{"unknown route", AuthzInput{Authenticated: true, Roles: []string{"admin"}, Method: "GET", Route: "/debug/vars"}, false},
	}
	for _, c := range cases {
		got, err := e.Authorize(ctx, c.in)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got != c.want {
			t.Errorf("%s: allow = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestLoadDirOverridesAndRefusesBroken(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	// A stricter operator policy: nobody may call whoami.
	strict := "package mediator.authz\nimport rego.v1\ndefault allow := false\npublic := {\"GET /healthz\"}\nroutes := {}\nallow if public[sprintf(\"%s %s\", [input.method, input.route])]\n"
	if err := os.WriteFile(filepath.Join(dir, "authz.rego"), []byte(strict), 0o644); err != nil {
		t.Fatal(err)
	}
	// Test files in the directory are not served.
	if err := os.WriteFile(filepath.Join(dir, "authz_test.rego"), []byte("this is not rego"), 0o644); err != nil {
		t.Fatal(err)
	}
	e, err := Load(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	ok, err := e.Authorize(ctx, AuthzInput{Authenticated: true, Roles: []string{"admin"}, Method: "GET", Route: "/v1/whoami"})
	if err != nil || ok {
		t.Fatalf("operator policy not used: allow=%v err=%v", ok, err)
	}
	def, _ := Load(ctx, "")
	if e.Revision() == def.Revision() {
		t.Fatal("revision does not change with the policy text")
	}

	if err := os.WriteFile(filepath.Join(dir, "authz.rego"), []byte("package mediator.authz\nallow if {"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(ctx, dir); err == nil {
		t.Fatal("a policy that does not compile was loaded")
	}
	if _, err := Load(ctx, t.TempDir()); err == nil {
		t.Fatal("an empty policy directory was loaded")
	}
}

func TestAuthzRoutes(t *testing.T) {
	e, err := Load(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := e.AuthzRoutes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"GET /healthz": true, "GET /readyz": true, "GET /metrics": true, "GET /v1/whoami": true, "POST /v1/events": true}
	got := map[string]bool{}
	for _, k := range keys {
		got[k] = true
	}
	for k := range want {
		if !got[k] {
			t.Errorf("policy lacks route %q (has %v)", k, keys)
		}
	}
}

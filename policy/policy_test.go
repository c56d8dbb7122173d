package policy

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

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

// policyDir copies the embedded policies into a new directory, as an
// operator starting from the defaults would.
func policyDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"authz.rego", "release.rego", "data.json"} {
		b, err := embedded.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadDirOverridesAndRefusesBroken(t *testing.T) {
	ctx := context.Background()
	dir := policyDir(t)
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

// TestLoadRefusesPermissivePolicies: the load-time probes keep a policy
// that releases without approvals, or lets anyone call the release route,
// from ever serving.
func TestLoadRefusesPermissivePolicies(t *testing.T) {
	ctx := context.Background()
	for name, text := range map[string]string{
		"release.rego": "package mediator.release\nimport rego.v1\ndecision := {\"allow\": true, \"reasons\": []}\n",
		"authz.rego":   "package mediator.authz\nimport rego.v1\nallow := true\n",
	} {
		dir := policyDir(t)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(ctx, dir); err == nil || !strings.Contains(err.Error(), "refused") {
			t.Errorf("a permissive %s loaded: %v", name, err)
		}
	}
	dir := policyDir(t)
	if err := os.WriteFile(filepath.Join(dir, "data.json"), []byte(`["not an object"]`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(ctx, dir); err == nil {
		t.Error("a data document that is not an object loaded")
	}
}

func releaseInput(approvers ...string) ReleaseInput {
	now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	in := ReleaseInput{Now: now, Request: ReleaseRequest{ID: "r1", Requester: "olga", CaseID: "case", LegalBasis: "court_order",
		Jurisdiction: "US", Scope: ReleaseScope{ConversationIDs: []string{"c1"}, From: now.Add(-48 * time.Hour), To: now},
		CreatedAt: now.Add(-time.Hour), ExpiresAt: now.Add(time.Hour)}}
	roles := map[string]string{"lena": "legal", "sam": "security"}
	for _, a := range approvers {
		in.Approvals = append(in.Approvals, ReleaseApproval{ApproverID: a, Roles: []string{roles[a]}, Decision: "approve",
			ApprovedAt: now.Add(-time.Minute), SignatureVerified: true, ApproverActive: true})
	}
	return in
}

func TestDecideRelease(t *testing.T) {
	ctx := context.Background()
	e, err := Load(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	one, err := e.DecideRelease(ctx, releaseInput("lena"))
	if err != nil || one.Allow || len(one.Reasons) != 2 || !strings.Contains(strings.Join(one.Reasons, ";"), "security role") {
		t.Fatalf("one approval: %+v %v", one, err)
	}
	two, err := e.DecideRelease(ctx, releaseInput("lena", "sam"))
	if err != nil || !two.Allow || len(two.Reasons) != 0 {
		t.Fatalf("two approvals: %+v %v", two, err)
	}
	again, _ := e.DecideRelease(ctx, releaseInput("lena", "sam"))
	if two.ID == again.ID || two.InputHash != again.InputHash || two.InputHash == one.InputHash {
		t.Fatalf("ids must differ and input hashes follow the input: %s %s / %s %s / %s", two.ID, again.ID, two.InputHash, again.InputHash, one.InputHash)
	}
	if !strings.HasPrefix(two.InputHash, "sha256:") || two.PolicyRevision != e.Revision() {
		t.Fatalf("decision record: %+v", two)
	}
}

func TestReloaderKeepsWorkingPolicyAndFollowsEdits(t *testing.T) {
	ctx := context.Background()
	dir := policyDir(t)
	r, err := NewReloader(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	var outcomes []error
	r.OnReload = func(_ string, err error) { outcomes = append(outcomes, err) }
	before := r.Revision()
	if d, _ := r.DecideRelease(ctx, releaseInput("lena", "sam")); !d.Allow {
		t.Fatal("default policy denies a dual-controlled release")
	}
	// The operator raises the bar in the data document; SIGHUP reloads.
	data, _ := os.ReadFile(filepath.Join(dir, "data.json"))
	stricter := strings.Replace(string(data), `"min_approvals": 2`, `"min_approvals": 3`, 1)
	if err := os.WriteFile(filepath.Join(dir, "data.json"), []byte(stricter), 0o644); err != nil {
		t.Fatal(err)
	}
	if changed, err := r.Reload(ctx); err != nil || !changed {
		t.Fatalf("reload: %v %v", changed, err)
	}
	if d, _ := r.DecideRelease(ctx, releaseInput("lena", "sam")); d.Allow || d.PolicyRevision == before {
		t.Fatalf("the edited data document is not in force: %+v", d)
	}
	working := r.Revision()
	// A broken edit: the working policy keeps serving.
	if err := os.WriteFile(filepath.Join(dir, "release.rego"), []byte("package mediator.release\ndecision := {"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reload(ctx); err == nil {
		t.Fatal("a broken policy reloaded")
	}
	if r.Revision() != working {
		t.Fatal("a broken policy replaced the working one")
	}
	if len(outcomes) != 2 || outcomes[0] != nil || outcomes[1] == nil {
		t.Fatalf("reload outcomes reported: %v", outcomes)
	}
	// Watch notices a fixed policy by itself (the working rules, with
	// yet another number).
	r.OnReload = nil
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go r.Watch(wctx, 10*time.Millisecond)
	orig, _ := embedded.ReadFile("release.rego")
	if err := os.WriteFile(filepath.Join(dir, "release.rego"), orig, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data.json"), []byte(strings.Replace(stricter, `"min_approvals": 3`, `"min_approvals": 4`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for r.Revision() == working && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if r.Revision() == working {
		t.Fatal("Watch did not reload the fixed policy")
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

// TestLoadRefusesPermissiveData: each data.json that would let a release
// through with zero or one approver is refused at load, with its reasons,
// by the service's engine and by a custodian's (LoadRelease).
func TestLoadRefusesPermissiveData(t *testing.T) {
	ctx := context.Background()
	orig, _ := embedded.ReadFile("data.json")
	for name, c := range map[string]struct{ old, new, reason string }{
		"min_approvals 0":     {`"min_approvals": 2`, `"min_approvals": 0`, "min_approvals must be at least 2"},
		"min_approvals 1":     {`"min_approvals": 2`, `"min_approvals": 1`, "min_approvals must be at least 2"},
		"typo min_approval":   {`"min_approvals": 2`, `"min_approval": 2`, "min_approvals is missing"},
		"no required roles":   {`"required_roles": ["legal", "security"]`, `"required_roles": []`, "required_roles must name at least one role"},
		"missing roles key":   {`"required_roles": ["legal", "security"],`, ``, "required_roles must be a list"},
		"no legal bases":      {`"legal_bases": {`, `"x": {`, "legal_bases must map"},
		"window as a string":  {`"approval_window_hours": 72`, `"approval_window_hours": "72"`, "whole number"},
		"no release document": {`"release"`, `"releases"`, "release is missing"},
	} {
		text := strings.Replace(string(orig), c.old, c.new, 1)
		if text == string(orig) {
			t.Fatalf("%s: the edit did not apply", name)
		}
		for loader, load := range map[string]func(context.Context, string) (*Engine, error){"Load": Load, "LoadRelease": LoadRelease} {
			dir := policyDir(t)
			if err := os.WriteFile(filepath.Join(dir, "data.json"), []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := load(ctx, dir)
			var de *DataError
			if !errors.As(err, &de) || !strings.Contains(err.Error(), c.reason) {
				t.Errorf("%s, %s: %v, want a DataError saying %q", name, loader, err, c.reason)
			}
		}
	}
}

// TestProbesCatchWeakRules: a release.rego that counts any one approval,
// or ignores the requester, or never expires, loads with valid data but
// is refused by the probes, naming what it let through.
func TestProbesCatchWeakRules(t *testing.T) {
	ctx := context.Background()
	for name, c := range map[string]struct{ rego, probe string }{
		"one approval is enough": {"package mediator.release\nimport rego.v1\ndecision := {\"allow\": count(input.approvals) >= 1, \"reasons\": [r | count(input.approvals) < 1; r := \"none\"]}\n", "one approval"},
		"requester counts":       {"package mediator.release\nimport rego.v1\ndecision := {\"allow\": count(input.approvals) >= 2, \"reasons\": [r | count(input.approvals) < 2; r := \"few\"]}\n", probeRequester},
		// A policy that tells a probe by its names: probes carry random
		// ids, like real requests.
		"probes told by name": {"package mediator.release\nimport rego.v1\ndecision := {\"allow\": false, \"reasons\": [\"probe\"]} if startswith(input.request.id, \"probe\")\ndecision := {\"allow\": true, \"reasons\": []} if not startswith(input.request.id, \"probe\")\n", "no approval"},
	} {
		dir := policyDir(t)
		if err := os.WriteFile(filepath.Join(dir, "release.rego"), []byte(c.rego), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := LoadRelease(ctx, dir)
		var pe *ProbeError
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), c.probe) {
			t.Errorf("%s: %v", name, err)
		}
	}
	e, err := LoadRelease(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Authorize(ctx, AuthzInput{}); !errors.Is(err, ErrNoAuthz) {
		t.Fatalf("a release-only engine authorized: %v", err)
	}
	if d, err := e.DecideRelease(ctx, releaseInput("lena", "sam")); err != nil || !d.Allow {
		t.Fatalf("a release-only engine: %+v %v", d, err)
	}
}

// TestProbesCatchPolicyIgnoringOneCondition: the shipped release.rego with
// one condition of dual control dropped (a forged signature, a deactivated
// approver, a deny vote, the requester, distinct approvers, the approval
// window) compiles and loads valid data, yet the mediator and a custodian
// both refuse it, naming exactly the probe it let through: each probe is a
// near-miss of an allowed release.
func TestProbesCatchPolicyIgnoringOneCondition(t *testing.T) {
	ctx := context.Background()
	orig, _ := embedded.ReadFile("release.rego")
	for name, c := range map[string]struct{ old, new, probe string }{
		"ignores signature_verified": {"\ta.signature_verified == true\n\ta.approver_active", "\ta.approver_active", probeForged},
		"ignores approver_active":    {"\ta.approver_active == true\n", "", probeInactive},
		"ignores deny votes":         {`a.decision == "deny"`, `a.decision == "deny"; false`, probeVeto},
		"counts the requester":       {"\ta.approver_id != input.request.requester\n", "", probeRequester},
		"counts approvals":           {"count(counted_approvers) < cfg.min_approvals", "count(counted) < cfg.min_approvals", probeTwice},
		"no approval window":         {"> cfg.approval_window_hours * hour_ns", "> 100000 * hour_ns", probeStale},
	} {
		text := strings.Replace(string(orig), c.old, c.new, 1)
		if text == string(orig) {
			t.Fatalf("%s: the edit did not apply", name)
		}
		for loader, load := range map[string]func(context.Context, string) (*Engine, error){"Load": Load, "LoadRelease": LoadRelease} {
			dir := policyDir(t)
			if err := os.WriteFile(filepath.Join(dir, "release.rego"), []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := load(ctx, dir)
			var pe *ProbeError
			if !errors.As(err, &pe) || !slices.Equal(pe.Probes, []string{c.probe}) {
				t.Errorf("%s, %s: %v, want a ProbeError naming only %q", name, loader, err, c.probe)
			}
		}
	}
}

// TestProbesAreNearMisses: for the shipped data and for stricter data (more
// approvers than roles, more roles than approvers, one role), the shipped
// policy allows the release the probes are built from and denies every
// probe with a reason; so a probe is refused for the one condition it breaks.
func TestProbesAreNearMisses(t *testing.T) {
	ctx := context.Background()
	orig, _ := embedded.ReadFile("data.json")
	for name, edit := range map[string]func(string) string{
		"shipped":          func(s string) string { return s },
		"three approvers":  func(s string) string { return strings.Replace(s, `"min_approvals": 2`, `"min_approvals": 3`, 1) },
		"three roles":      func(s string) string { return strings.Replace(s, `"security"]`, `"security", "oversight"]`, 1) },
		"one role":         func(s string) string { return strings.Replace(s, `["legal", "security"]`, `["legal"]`, 1) },
		"one jurisdiction": func(s string) string { return strings.Replace(s, `"EU": [`, `"XX": [`, 1) },
	} {
		dir := policyDir(t)
		text := edit(string(orig))
		if err := os.WriteFile(filepath.Join(dir, "data.json"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		e, err := LoadRelease(ctx, dir)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var data map[string]any
		dec := json.NewDecoder(strings.NewReader(text))
		dec.UseNumber()
		if err := dec.Decode(&data); err != nil {
			t.Fatal(err)
		}
		// Random choices differ between runs; a few runs cover them.
		for range 5 {
			set := releaseProbes(data, time.Now().UTC())
			if d, err := e.DecideRelease(ctx, set.allowed); err != nil || !d.Allow {
				t.Fatalf("%s: the release the probes are built from is denied: %+v %v", name, d, err)
			}
			for _, p := range set.probes {
				if d, err := e.DecideRelease(ctx, p.in); err != nil || d.Allow || len(d.Reasons) == 0 {
					t.Errorf("%s: probe %q: %+v %v", name, p.name, d, err)
				}
			}
		}
	}
}

// TestProbesBoundedByAbsurdData: data that no release can meet, or whose
// window and scope bind nothing, still loads with the shipped policy: the
// probes are built to bounded sizes (not min_approvals² approvals) and
// never overflow a time.Duration.
func TestProbesBoundedByAbsurdData(t *testing.T) {
	orig, _ := embedded.ReadFile("data.json")
	text := strings.NewReplacer(`"min_approvals": 2`, `"min_approvals": 1000000`,
		`"approval_window_hours": 72`, `"approval_window_hours": 1000000000000`,
		`"max_scope_days": 90`, `"max_scope_days": 1000000000000000000`).Replace(string(orig))
	dir := policyDir(t)
	if err := os.WriteFile(filepath.Join(dir, "data.json"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadRelease(context.Background(), dir); err != nil {
		t.Fatal(err)
	}
}

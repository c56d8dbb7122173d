// Package policy embeds Open Policy Agent and evaluates the mediator's Rego
// policies. Policies are compiled once when an Engine is loaded and evaluated
// per request against a small, documented input document; the engine knows
// nothing about storage or HTTP.
//
// The policies ship inside the binary (authz.rego). An operator may replace
// them with a directory of their own (--policy-dir); the directory must hold
// the same packages. Files ending in _test.rego are Rego unit tests and are
// never loaded into a serving engine.
package policy

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/rego"
)

//go:embed authz.rego
var embedded embed.FS

// authzQuery is the rule every API call is decided by.
const authzQuery = "data.mediator.authz.allow"

// AuthzInput is the input document of data.mediator.authz.allow.
type AuthzInput struct {
	// Authenticated is true only when a bearer token was verified.
	Authenticated bool `json:"authenticated"`
	// Subject is the verified token's sub claim, empty when unauthenticated.
	Subject string `json:"subject"`
	// Roles are the verified token's roles claim.
	Roles []string `json:"roles"`
	// Method is the HTTP method.
	Method string `json:"method"`
	// Route is the route pattern the router matched, such as /v1/whoami;
	// never the raw request path, so ids in a path cannot change the decision.
	Route string `json:"route"`
}

// Engine holds prepared policy queries. It is safe for concurrent use.
type Engine struct {
	authz    rego.PreparedEvalQuery
	modules  map[string]string
	revision string
}

// Load compiles the policies from dir, or the embedded ones when dir is empty.
// It returns an error, and no engine, if any module fails to parse or compile,
// so a broken policy never serves.
func Load(ctx context.Context, dir string) (*Engine, error) {
	var fsys fs.FS = embedded
	if dir != "" {
		fsys = os.DirFS(dir)
	}
	modules, err := readModules(fsys)
	if err != nil {
		return nil, err
	}
	if len(modules) == 0 {
		return nil, fmt.Errorf("policy: no .rego files in %q", dir)
	}
	opts := []func(*rego.Rego){rego.Query(authzQuery)}
	for _, name := range sortedKeys(modules) {
		opts = append(opts, rego.Module(name, modules[name]))
	}
	authz, err := rego.New(opts...).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("policy: compile: %w", err)
	}
	return &Engine{authz: authz, modules: modules, revision: revision(modules)}, nil
}

// Revision identifies the loaded policy text: "sha256:" and the hex SHA-256
// over every module's name and source in name order. Decision records carry
// it so that a decision can be tied to the exact policy that made it.
func (e *Engine) Revision() string { return e.revision }

// Authorize reports whether the call described by in is allowed. It returns
// false and an error when the policy cannot be evaluated; callers must treat
// that as a denial.
func (e *Engine) Authorize(ctx context.Context, in AuthzInput) (bool, error) {
	if in.Roles == nil {
		in.Roles = []string{}
	}
	rs, err := e.authz.Eval(ctx, rego.EvalInput(in))
	if err != nil {
		return false, fmt.Errorf("policy: evaluate authz: %w", err)
	}
	return rs.Allowed(), nil
}

// AuthzRoutes returns the "METHOD pattern" keys the authz policy mentions,
// public or role-guarded, so a test can check that every route the router
// serves is decided by a rule written for it.
func (e *Engine) AuthzRoutes(ctx context.Context) ([]string, error) {
	opts := []func(*rego.Rego){rego.Query("keys := {k | data.mediator.authz.routes[k]} | data.mediator.authz.public")}
	for _, name := range sortedKeys(e.modules) {
		opts = append(opts, rego.Module(name, e.modules[name]))
	}
	rs, err := rego.New(opts...).Eval(ctx)
	if err != nil {
		return nil, fmt.Errorf("policy: list routes: %w", err)
	}
	if len(rs) != 1 {
		return nil, errors.New("policy: list routes: no result")
	}
	raw, ok := rs[0].Bindings["keys"].([]any)
	if !ok {
		return nil, errors.New("policy: list routes: unexpected result type")
	}
	keys := make([]string, 0, len(raw))
	for _, k := range raw {
		s, ok := k.(string)
		if !ok {
			return nil, errors.New("policy: list routes: non-string key")
		}
		keys = append(keys, s)
	}
	sort.Strings(keys)
	return keys, nil
}

func readModules(fsys fs.FS) (map[string]string, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("policy: read policy directory: %w", err)
	}
	modules := make(map[string]string)
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || path.Ext(name) != ".rego" || strings.HasSuffix(name, "_test.rego") {
			continue
		}
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("policy: read %s: %w", name, err)
		}
		modules[name] = string(b)
	}
	return modules, nil
}

func revision(modules map[string]string) string {
	h := sha256.New()
	for _, name := range sortedKeys(modules) {
		fmt.Fprintf(h, "%d:%s%d:%s", len(name), name, len(modules[name]), modules[name])
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

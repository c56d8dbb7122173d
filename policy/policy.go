// Package policy embeds Open Policy Agent and evaluates the mediator's Rego
// policies. Policies are compiled once when an Engine is loaded and evaluated
// per request against a small, documented input document; the engine knows
// nothing about storage or HTTP.
//
// The policies ship inside the binary: authz.rego (who may call which
// route), release.rego (dual control over key releases) and data.json (the
// numbers and lists release.rego uses, at data.release). An operator may
// replace them with a directory of their own (--policy-dir) holding the same
// packages and a data.json; Reloader picks up edits without a restart.
// Files ending in _test.rego are Rego unit tests and are never loaded into a
// serving engine.
package policy

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
)

//go:embed authz.rego release.rego data.json
var embedded embed.FS

// The rules the service evaluates.
const (
	// authzQuery decides every API call.
	authzQuery = "data.mediator.authz.allow"
	// releaseQuery decides every key release.
	releaseQuery = "data.mediator.release.decision"
)

// dataFile is the data document of a policy directory, loaded at the root
// of data (so {"release": {...}} is data.release), as `opa` loads a
// data.json at the root of a bundle.
const dataFile = "data.json"

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
	release  rego.PreparedEvalQuery
	hasAuthz bool
	modules  map[string]string
	revision string
	// minApprovals and requiredRoles are data.release's approval rule.
	minApprovals  int
	requiredRoles []string
}

// ReleaseRule is the release policy's approval rule from its data: how
// many distinct approvers and which roles between them.
func (e *Engine) ReleaseRule() (minApprovals int, requiredRoles []string) {
	return e.minApprovals, slices.Clone(e.requiredRoles)
}

// Load compiles the policies and data document from dir, or the embedded
// ones when dir is empty. It returns an error, and no engine, if any module
// fails to parse or compile, if the data document fails CheckReleaseData,
// or if the policy fails its probes (ProbeRelease, and an anonymous call
// to the release route must be denied): a broken or permissive policy
// never serves.
func Load(ctx context.Context, dir string) (*Engine, error) {
	return load(ctx, dir, true)
}

// LoadRelease is Load for a custodian: only the release policy (and
// data.json) of dir, or the embedded ones, with the same checks and
// probes. Authorize is not available on the engine it returns.
func LoadRelease(ctx context.Context, dir string) (*Engine, error) {
	return load(ctx, dir, false)
}

func load(ctx context.Context, dir string, withAuthz bool) (*Engine, error) {
	var fsys fs.FS = embedded
	if dir != "" {
		fsys = os.DirFS(dir)
	}
	files, err := readFiles(fsys)
	if err != nil {
		return nil, err
	}
	if !withAuthz {
		delete(files, "authz.rego")
	}
	modules := make(map[string]string, len(files))
	for name, text := range files {
		if name != dataFile {
			modules[name] = text
		}
	}
	if len(modules) == 0 {
		return nil, fmt.Errorf("policy: no .rego files in %q", dir)
	}
	data := map[string]any{}
	if text, ok := files[dataFile]; ok {
		dec := json.NewDecoder(strings.NewReader(text))
		dec.UseNumber()
		if err := dec.Decode(&data); err != nil {
			return nil, fmt.Errorf("policy: %s: %w", dataFile, err)
		}
	}
	if err := CheckReleaseData(data); err != nil {
		return nil, err
	}
	prepare := func(query string) (rego.PreparedEvalQuery, error) {
		opts := []func(*rego.Rego){rego.Query(query), rego.Store(inmem.NewFromObject(data))}
		for _, name := range sortedKeys(modules) {
			opts = append(opts, rego.Module(name, modules[name]))
		}
		return rego.New(opts...).PrepareForEval(ctx)
	}
	e := &Engine{modules: modules, revision: revision(files), hasAuthz: withAuthz}
	rel := data["release"].(map[string]any) // CheckReleaseData checked its shape
	n, _ := rel["min_approvals"].(json.Number).Int64()
	e.minApprovals = int(n)
	for _, r := range rel["required_roles"].([]any) {
		e.requiredRoles = append(e.requiredRoles, r.(string))
	}
	if withAuthz {
		if e.authz, err = prepare(authzQuery); err != nil {
			return nil, fmt.Errorf("policy: compile: %w", err)
		}
	}
	if e.release, err = prepare(releaseQuery); err != nil {
		return nil, fmt.Errorf("policy: compile: %w", err)
	}
	if err := e.probe(ctx, data); err != nil {
		return nil, err
	}
	return e, nil
}

// ErrNoAuthz is returned by Authorize on an engine from LoadRelease.
var ErrNoAuthz = errors.New("policy: this engine holds only the release policy")

// DataError is a release data document that would weaken dual control or
// leave it undefined; Problems lists every fault.
type DataError struct{ Problems []string }

func (e *DataError) Error() string {
	return "policy: refused: data.json: " + strings.Join(e.Problems, "; ")
}

// CheckReleaseData checks data.release, the numbers and lists the release
// policy uses: every setting present with the right type, min_approvals at
// least 2, at least one required role, a positive approval window and scope
// bound, and at least one jurisdiction with a legal basis. It returns a
// *DataError listing every fault.
func CheckReleaseData(data map[string]any) error {
	var probs []string
	rel, ok := data["release"].(map[string]any)
	if !ok {
		return &DataError{Problems: []string{"release is missing or not an object"}}
	}
	number := func(key string, least int64) {
		v, present := rel[key]
		if !present {
			probs = append(probs, "release."+key+" is missing")
			return
		}
		n, ok := v.(json.Number)
		i, err := n.Int64()
		if !ok || err != nil {
			probs = append(probs, "release."+key+" must be a whole number")
		} else if i < least {
			probs = append(probs, fmt.Sprintf("release.%s must be at least %d", key, least))
		}
	}
	number("min_approvals", 2)
	number("approval_window_hours", 1)
	number("max_scope_days", 1)
	roles, ok := rel["required_roles"].([]any)
	switch {
	case !ok:
		probs = append(probs, "release.required_roles must be a list of roles")
	case len(roles) == 0:
		probs = append(probs, "release.required_roles must name at least one role")
	}
	for _, r := range roles {
		if s, ok := r.(string); !ok || s == "" {
			probs = append(probs, "release.required_roles must hold role names")
			break
		}
	}
	bases, ok := rel["legal_bases"].(map[string]any)
	if !ok || len(bases) == 0 {
		probs = append(probs, "release.legal_bases must map at least one jurisdiction to its legal bases")
	}
	for j, v := range bases {
		list, ok := v.([]any)
		if !ok {
			probs = append(probs, "release.legal_bases."+j+" must be a list")
			continue
		}
		for _, b := range list {
			if _, ok := b.(string); !ok {
				probs = append(probs, "release.legal_bases."+j+" must hold names")
				break
			}
		}
	}
	if len(probs) > 0 {
		sort.Strings(probs)
		return &DataError{Problems: probs}
	}
	return nil
}

// Revision identifies the loaded policy files: "sha256:" and the hex
// SHA-256 over every file's name and text (modules and data.json) in name
// order. Decision records carry
// it so that a decision can be tied to the exact policy that made it.
func (e *Engine) Revision() string { return e.revision }

// Authorize reports whether the call described by in is allowed. It returns
// false and an error when the policy cannot be evaluated; callers must treat
// that as a denial.
func (e *Engine) Authorize(ctx context.Context, in AuthzInput) (bool, error) {
	if !e.hasAuthz {
		return false, ErrNoAuthz
	}
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

// readFiles reads the .rego files (not _test.rego) and data.json of fsys.
func readFiles(fsys fs.FS) (map[string]string, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("policy: read policy directory: %w", err)
	}
	files := make(map[string]string)
	for _, e := range entries {
		name := e.Name()
		rego := path.Ext(name) == ".rego" && !strings.HasSuffix(name, "_test.rego")
		if e.IsDir() || !(rego || name == dataFile) {
			continue
		}
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("policy: read %s: %w", name, err)
		}
		files[name] = string(b)
	}
	return files, nil
}

// revision hashes every file's name and text, the data document included,
// so that an edit to either changes it.
func revision(files map[string]string) string {
	h := sha256.New()
	for _, name := range sortedKeys(files) {
		fmt.Fprintf(h, "%d:%s%d:%s", len(name), name, len(files[name]), files[name])
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

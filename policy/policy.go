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
	"sort"
	"strings"
	"time"

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
	modules  map[string]string
	revision string
}

// Load compiles the policies and data document from dir, or the embedded
// ones when dir is empty. It returns an error, and no engine, if any module
// fails to parse or compile, if the data document is not a JSON object, or
// if the policy fails its sanity probes (an anonymous call to a protected
// route must be denied; a release with no approvals must be denied, with a
// reason): a broken or permissive policy never serves.
func Load(ctx context.Context, dir string) (*Engine, error) {
	var fsys fs.FS = embedded
	if dir != "" {
		fsys = os.DirFS(dir)
	}
	files, err := readFiles(fsys)
	if err != nil {
		return nil, err
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
	prepare := func(query string) (rego.PreparedEvalQuery, error) {
		opts := []func(*rego.Rego){rego.Query(query), rego.Store(inmem.NewFromObject(data))}
		for _, name := range sortedKeys(modules) {
			opts = append(opts, rego.Module(name, modules[name]))
		}
		return rego.New(opts...).PrepareForEval(ctx)
	}
	authz, err := prepare(authzQuery)
	if err != nil {
		return nil, fmt.Errorf("policy: compile: %w", err)
	}
	release, err := prepare(releaseQuery)
	if err != nil {
		return nil, fmt.Errorf("policy: compile: %w", err)
	}
	e := &Engine{authz: authz, release: release, modules: modules, revision: revision(files)}
	if err := e.probe(ctx); err != nil {
		return nil, err
	}
	return e, nil
}

// probe refuses a policy that would let an anonymous caller release keys,
// or release keys without any approval.
func (e *Engine) probe(ctx context.Context) error {
	allowed, err := e.Authorize(ctx, AuthzInput{Method: "POST", Route: "/v1/access-requests/{id}/release"})
	if err != nil {
		return fmt.Errorf("policy: probe: %w", err)
	}
	if allowed {
		return errors.New("policy: refused: it lets an unauthenticated caller release keys")
	}
	now := time.Now().UTC()
	d, err := e.DecideRelease(ctx, ReleaseInput{
		Now: now,
		Request: ReleaseRequest{ID: "probe", Requester: "probe", CaseID: "probe", LegalBasis: "probe", Jurisdiction: "probe",
			Scope:     ReleaseScope{ConversationIDs: []string{"probe"}, From: now.Add(-time.Hour), To: now},
			CreatedAt: now, ExpiresAt: now.Add(time.Hour)},
	})
	if err != nil {
		return fmt.Errorf("policy: probe: %w", err)
	}
	if d.Allow || len(d.Reasons) == 0 {
		return errors.New("policy: refused: it releases keys with no approvals, or denies without a reason")
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

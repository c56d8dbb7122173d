// Package deploy_test checks the deployment files against the service: the
// Prometheus rules pass promtool, the Grafana dashboard is a valid dashboard
// model, and every query names a metric the service exports; the container,
// Kubernetes, compose and systemd files have the essentials.
package deploy_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/yaml"

	"github.com/mediatorhq/mediator/access"
	"github.com/mediatorhq/mediator/api"
	"github.com/mediatorhq/mediator/escrow"
	"github.com/mediatorhq/mediator/pgmetrics"
	"github.com/mediatorhq/mediator/policy"
	"github.com/mediatorhq/mediator/vaultclient"
)

// promtool finds Prometheus's promtool: on PATH, or where
// scripts/ensure-toolchain.sh unpacks it.
func promtool(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("promtool"); err == nil {
		return p
	}
	cache := os.Getenv("MEDIATOR_CACHE_DIR")
	if cache == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			t.Fatal(err)
		}
		cache = filepath.Join(dir, "mediator")
	}
	p := filepath.Join(cache, "promtool")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("promtool not found on PATH or at %s: run `make toolchain` (it unpacks Debian's promtool)", p)
	}
	return p
}

type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert"`
			Record      string            `json:"record"`
			Expr        string            `json:"expr"`
			For         string            `json:"for"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

func readRules(t *testing.T) ruleFile {
	t.Helper()
	b, err := os.ReadFile("prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var f ruleFile
	if err := yaml.UnmarshalStrict(b, &f); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	return f
}

func TestAlertRulesPassPromtool(t *testing.T) {
	out, err := exec.Command(promtool(t), "check", "rules", "prometheus/alerts.yml").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "SUCCESS") {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}

// anchors are the heading anchors of a Markdown file, as GitHub makes them.
func anchors(t *testing.T, path string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	drop := regexp.MustCompile(`[^a-z0-9 _-]`)
	for _, line := range strings.Split(string(b), "\n") {
		if h, ok := strings.CutPrefix(line, "#"); ok {
			h = strings.TrimSpace(strings.TrimLeft(h, "#"))
			out[strings.ReplaceAll(drop.ReplaceAllString(strings.ToLower(h), ""), " ", "-")] = true
		}
	}
	return out
}

func TestAlertRulesCoverTheIncidents(t *testing.T) {
	f := readRules(t)
	runbooks := anchors(t, "../docs/operations.md")
	var names []string
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			names = append(names, r.Alert)
			if sev := r.Labels["severity"]; sev != "critical" && sev != "warning" {
				t.Errorf("%s: severity %q", r.Alert, sev)
			}
			if r.Annotations["summary"] == "" {
				t.Errorf("%s: no summary", r.Alert)
			}
			doc, anchor, _ := strings.Cut(r.Annotations["runbook"], "#")
			if doc != "docs/operations.md" || !runbooks[anchor] {
				t.Errorf("%s: runbook %q is not a heading of docs/operations.md", r.Alert, r.Annotations["runbook"])
			}
		}
	}
	for _, want := range []string{"MediatorCheckpointStale", "MediatorAuditVerificationFailure", "MediatorRejectionSpike",
		"MediatorContentRefusedSpike", "MediatorReleaseDenials", "MediatorDependencyDown"} {
		if !slices.Contains(names, want) {
			t.Errorf("no alert %s", want)
		}
	}
}

func readDashboard(t *testing.T) dashboard.Dashboard {
	t.Helper()
	b, err := os.ReadFile("grafana/mediator.json")
	if err != nil {
		t.Fatal(err)
	}
	plugins.RegisterDefaultPlugins()
	var d dashboard.Dashboard
	if err := noErrors(d.UnmarshalJSONStrict(b)); err != nil {
		t.Fatalf("mediator.json is not a Grafana dashboard model: %v", err)
	}
	if err := noErrors(d.Validate()); err != nil {
		t.Fatalf("mediator.json: %v", err)
	}
	return d
}

// noErrors turns the SDK's empty cog.BuildErrors (a typed nil) into nil.
func noErrors(err error) error {
	var be cog.BuildErrors
	if errors.As(err, &be) && len(be) == 0 {
		return nil
	}
	return err
}

// dashboardQueries returns panel title → PromQL expressions.
func dashboardQueries(t *testing.T) map[string][]string {
	t.Helper()
	b, _ := os.ReadFile("grafana/mediator.json")
	var raw struct {
		Panels []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, p := range raw.Panels {
		if p.Type == "row" {
			continue
		}
		for _, tg := range p.Targets {
			out[p.Title] = append(out[p.Title], tg.Expr)
		}
		if len(out[p.Title]) == 0 || slices.Contains(out[p.Title], "") {
			t.Errorf("panel %q has a target without a query", p.Title)
		}
	}
	return out
}

func TestDashboardIsAGrafanaModelWithTheSOCPanels(t *testing.T) {
	d := readDashboard(t)
	if d.Title == nil || *d.Title != "mediator" || d.Uid == nil {
		t.Fatalf("dashboard title/uid: %v %v", d.Title, d.Uid)
	}
	queries := dashboardQueries(t)
	for _, want := range []string{"Ingest rate", "Rejections by reason", "E2EE coverage", "Downgrade ratio", "Checkpoint age",
		"Tree size", "Deposits by outcome", "Requests by status", "Policy denials (24h)"} {
		if len(queries[want]) == 0 {
			t.Errorf("no panel %q", want)
		}
	}
	// Every query parses as PromQL: promtool checks them as recording rules.
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	i := 0
	for _, exprs := range queries {
		for _, e := range exprs {
			i++
			q, _ := json.Marshal(e)
			rules.WriteString("      - record: dashboard:query_" + strings.Repeat("x", i%3+1) + ":" + string(rune('a'+i%26)) + "\n        expr: " + string(q) + "\n")
		}
	}
	path := filepath.Join(t.TempDir(), "dashboard-rules.yml")
	os.WriteFile(path, []byte(rules.String()), 0o644)
	out, err := exec.Command(promtool(t), "check", "rules", path).CombinedOutput()
	if err != nil {
		t.Fatalf("dashboard queries do not parse: %v\n%s", err, out)
	}
}

// descRecorder is a Registerer that keeps the metric names it is given.
type descRecorder struct{ names map[string]bool }

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (r *descRecorder) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 64)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			r.names[m[1]] = true
		}
	}
	return nil
}

func (r *descRecorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = r.Register(c)
	}
}

func (r *descRecorder) Unregister(prometheus.Collector) bool { return false }

type noCounts struct{}

func (noCounts) CountByStatus(context.Context) (map[access.Status]int, error) {
	return nil, errors.New("not counted")
}

// exported lists every metric family `mediator serve` registers.
func exported() map[string]bool {
	rec := &descRecorder{names: map[string]bool{}}
	rec.MustRegister(api.NewMetrics("test").Collectors()...)
	escrow.NewMetrics(rec)
	access.NewMetrics(rec, noCounts{})
	policy.ReloadMetrics(rec, "sha256:test")
	vaultclient.NewMetrics(rec)
	pgmetrics.New(rec)
	rec.MustRegister(pgmetrics.NewPoolCollector(nil))
	return rec.names
}

// metricNames finds the metric names a PromQL expression uses.
var metricName = regexp.MustCompile(`\b(?:mediator|process|go)_[a-z0-9_]+\b`)

func TestQueriesNameExportedMetrics(t *testing.T) {
	names := exported()
	if !names["mediator_escrow_deposits_total"] || !names["mediator_postgres_query_seconds"] || !names["process_resident_memory_bytes"] {
		t.Fatalf("the exported families were not all found: %d names", len(names))
	}
	known := func(n string) bool {
		if names[n] {
			return true
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(n, suffix); ok && names[base] {
				return true
			}
		}
		return false
	}
	check := func(where, expr string) {
		found := metricName.FindAllString(expr, -1)
		for _, n := range found {
			if !known(n) {
				t.Errorf("%s: %s is not a metric the service exports", where, n)
			}
		}
		if len(found) == 0 && !strings.Contains(expr, "kube_job_status_failed") && !strings.Contains(expr, "up{") {
			t.Errorf("%s: names no metric: %s", where, expr)
		}
	}
	for title, exprs := range dashboardQueries(t) {
		for _, e := range exprs {
			check("dashboard panel "+title, e)
		}
	}
	for _, g := range readRules(t).Groups {
		for _, r := range g.Rules {
			check("alert "+r.Alert, r.Expr)
		}
	}
}

// Package deploy_test checks the deployment files against the service: the
// Prometheus rules pass promtool, the Grafana dashboard is a valid dashboard
// model, and every query names a metric the service exports; the container,
// Kubernetes, compose and systemd files have the essentials.
package deploy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	"github.com/mediatorhq/mediator/audit"
	"github.com/mediatorhq/mediator/custodian"
	"github.com/mediatorhq/mediator/escrow"
	"github.com/mediatorhq/mediator/governance"
	"github.com/mediatorhq/mediator/ingest"
	"github.com/mediatorhq/mediator/notify"
	"github.com/mediatorhq/mediator/pgmetrics"
	"github.com/mediatorhq/mediator/policy"
	"github.com/mediatorhq/mediator/pseudonymservice"
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
	// The rules' own unit tests: each alert fires when it must, and not
	// before.
	out, err = exec.Command(promtool(t), "test", "rules", "prometheus/alerts_test.yml").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "SUCCESS") {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
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
		"MediatorContentRefusedSpike", "MediatorReleaseDenials", "MediatorDependencyDown",
		"MediatorApproverQuorumNotLive", "MediatorRosterProposalWaiting", "MediatorRosterChainInvalid",
		"MediatorCustodiansDifferFromRoster", "MediatorCheckpointRowRefused", "MediatorCheckpointUnwitnessed",
		"MediatorWitnessRefusedCheckpoint", "MediatorCustodiansDisagreeOnRoster", "MediatorAuditHalted",
		"MediatorNoSequencerOwner", "MediatorDatabaseNotSynchronous", "MediatorReplicationLag"} {
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
	audit.NewMetrics(rec)
	ingest.NewMetrics(rec)
	access.NewMetrics(rec, noCounts{})
	governance.NewMetrics(rec)
	if _, err := notify.New(notify.Config{Registerer: rec}); err != nil {
		panic(err)
	}
	policy.ReloadMetrics(rec, "sha256:test")
	// The pseudonym service runs apart too, with its own registry.
	rec.MustRegister(pseudonymservice.NewMetrics().Collectors()...)
	vaultclient.NewMetrics(rec)
	pgmetrics.New(rec)
	rec.MustRegister(pgmetrics.NewPoolCollector(nil), pgmetrics.NewReplicationCollector(nil))
	// A custodian's registry is its own (each runs apart); its plain
	// counters and gauges, such as the roster version, gather at zero.
	fams, err := custodian.NewMetrics().Registry.Gather()
	if err != nil {
		panic(err)
	}
	for _, f := range fams {
		rec.names[f.GetName()] = true
	}
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

// documents splits a multi-document YAML file and decodes each document.
func documents(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
		if strings.TrimSpace(regexp.MustCompile(`(?m)^#.*$`).ReplaceAllString(doc, "")) == "" {
			continue
		}
		var m map[string]any
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, m)
	}
	return out
}

// dig walks nested maps by keys.
func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// secretName: an environment variable that must never have a literal
// value in a deployment file.
var secretName = regexp.MustCompile(`(?i)(password|secret|token|database_url|dsn|pin)$`)

func TestKubernetesManifestsHaveTheEssentials(t *testing.T) {
	docs := documents(t, "kubernetes/mediator.yaml")
	kinds := map[string]map[string]any{}
	for _, d := range docs {
		kind, _ := d["kind"].(string)
		if kind == "ConfigMap" && dig(d, "metadata", "name") != "mediator" {
			continue // the files ConfigMap: checked by TestKubernetesReachesWhatItNeeds
		}
		kinds[kind] = d
		if kind == "Secret" {
			t.Error("a Secret is written in the manifests; secrets come from Vault")
		}
	}
	for _, want := range []string{"ServiceAccount", "ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy", "CronJob", "Job"} {
		if kinds[want] == nil {
			t.Errorf("no %s", want)
		}
	}
	checkPod := func(name string, pod any, needProbes bool) {
		if dig(pod, "securityContext", "runAsNonRoot") != true {
			t.Errorf("%s: pod securityContext.runAsNonRoot is not true", name)
		}
		var containers []any
		for _, k := range []string{"initContainers", "containers"} {
			cs, _ := dig(pod, k).([]any)
			containers = append(containers, cs...)
		}
		for _, c := range containers {
			cn := dig(c, "name")
			if dig(c, "securityContext", "allowPrivilegeEscalation") != false || dig(c, "securityContext", "readOnlyRootFilesystem") != true {
				t.Errorf("%s/%v: allowPrivilegeEscalation false and readOnlyRootFilesystem true are required", name, cn)
			}
			if dig(c, "resources", "limits", "memory") == nil || dig(c, "resources", "limits", "cpu") == nil {
				t.Errorf("%s/%v: no resource limits", name, cn)
			}
			envs, _ := dig(c, "env").([]any)
			for _, e := range envs {
				if n, _ := dig(e, "name").(string); secretName.MatchString(n) && dig(e, "value") != nil && !strings.HasPrefix(dig(e, "value").(string), "/") {
					t.Errorf("%s/%v: %s has a literal value", name, cn, n)
				}
			}
		}
		if needProbes {
			c := dig(pod, "containers").([]any)[0]
			for _, probe := range []string{"readinessProbe", "livenessProbe"} {
				if dig(c, probe, "httpGet", "path") == nil {
					t.Errorf("%s: no %s", name, probe)
				}
			}
			if dig(c, "readinessProbe", "httpGet", "path") != "/readyz" || dig(c, "livenessProbe", "httpGet", "path") != "/healthz" {
				t.Errorf("%s: readiness must probe /readyz and liveness /healthz", name)
			}
		}
	}
	checkPod("Deployment", dig(kinds["Deployment"], "spec", "template", "spec"), true)
	// The serving pods never hold the schema owner's URL: migrations run
	// in a Job of their own identity, and Vault Agent renders secrets only
	// into the serving container, from the runtime role's path.
	deployment := kinds["Deployment"]
	text := fmt.Sprint(deployment)
	for _, owner := range []string{"database-owner", "migrate_url", "database-migrate"} {
		if strings.Contains(text, owner) {
			t.Errorf("the Deployment mentions %s: the serving pods must not reach the owner's URL", owner)
		}
	}
	if ics, _ := dig(deployment, "spec", "template", "spec", "initContainers").([]any); len(ics) > 0 {
		t.Error("the Deployment has init containers: migrations belong to the Job")
	}
	ann := dig(deployment, "spec", "template", "metadata", "annotations").(map[string]any)
	if ann["vault.hashicorp.com/agent-inject-containers"] != "mediator" || ann["vault.hashicorp.com/role"] != "mediator" {
		t.Error("Vault Agent must inject into the serving container only, with the serving role")
	}
	// What the serving container may be given: the runtime URL, the
	// custodians' tokens for the mediator and the webhook secret.
	injectable := []any{"mediator-config/data/database-runtime", "mediator-config/data/custodian-tokens", "mediator-config/data/webhook-secret"}
	for k, v := range ann {
		if strings.HasPrefix(k, "vault.hashicorp.com/agent-inject-secret-") && !slices.Contains(injectable, v) {
			t.Errorf("the Deployment injects %s from %v", k, v)
		}
	}
	job := kinds["Job"]
	if dig(job, "spec", "template", "spec", "serviceAccountName") == "mediator" ||
		dig(job, "spec", "template", "metadata", "annotations", "vault.hashicorp.com/role") != "mediator-migrate" ||
		!strings.Contains(fmt.Sprint(job), "migrate") {
		t.Error("the migration Job must run migrate as its own service account and Vault role")
	}
	checkPod("Job", dig(job, "spec", "template", "spec"), false)
	// Metrics: a private port for Prometheus, open only to monitoring.
	if dig(kinds["ConfigMap"], "data", "MEDIATOR_METRICS_ADDR") == nil || ann["prometheus.io/port"] != "9090" {
		t.Error("the pods must serve metrics on the private listener Prometheus scrapes")
	}

	checkPod("CronJob", dig(kinds["CronJob"], "spec", "jobTemplate", "spec", "template", "spec"), false)
	if args := fmt.Sprint(dig(kinds["CronJob"], "spec", "jobTemplate", "spec", "template", "spec", "containers")); !strings.Contains(args, "audit verify") {
		t.Errorf("the CronJob does not run audit verify: %s", args)
	}
	if dig(kinds["Deployment"], "spec", "template", "metadata", "annotations", "vault.hashicorp.com/agent-inject") != "true" {
		t.Error("the Deployment does not get its Vault token from Vault Agent")
	}
	for k, v := range dig(kinds["ConfigMap"], "data").(map[string]any) {
		if secretName.MatchString(k) {
			t.Errorf("ConfigMap holds %s = %v", k, v)
		}
	}
}

func TestComposeHasNoSecretsAndRunsNonRoot(t *testing.T) {
	docs := documents(t, "compose.yaml")
	services, _ := dig(docs[0], "services").(map[string]any)
	for _, want := range []string{"postgres", "vault-mediator", "setup-mediator", "migrate", "mediator", "genesis", "ceremony", "pseudonym", "agent"} {
		if services[want] == nil {
			t.Errorf("no service %s", want)
		}
	}
	literal := regexp.MustCompile(`^[^$]`)
	for name, svc := range services {
		env, _ := dig(svc, "environment").(map[string]any)
		for k, v := range env {
			s := fmt.Sprint(v)
			// A value of a path, or @path (a file the setting reads), is no
			// secret.
			if (secretName.MatchString(k) || strings.Contains(s, "@")) && literal.MatchString(s) && !strings.Contains(s, "${") && !strings.HasPrefix(s, "/") && !strings.HasPrefix(s, "@/") {
				t.Errorf("%s: %s has a literal secret value", name, k)
			}
		}
	}
	m := services["mediator"]
	if u := fmt.Sprint(dig(m, "user")); u == "" || strings.HasPrefix(u, "0") || u == "root" || u == "<nil>" {
		t.Errorf("mediator runs as %q", u)
	}
	if dig(m, "read_only") != true {
		t.Error("mediator's filesystem is not read-only")
	}
}

func TestDockerfileIsStaticNonRootWithoutShell(t *testing.T) {
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	froms := regexp.MustCompile(`(?m)^FROM\s+(\S+)`).FindAllStringSubmatch(text, -1)
	if len(froms) < 2 {
		t.Fatal("not a multi-stage build")
	}
	final := froms[len(froms)-1][1]
	if !strings.HasPrefix(final, "gcr.io/distroless/static") && final != "scratch" {
		t.Errorf("final stage %s may have a shell; use distroless/static or scratch", final)
	}
	last := text[strings.LastIndex(text, "\nFROM"):]
	user := regexp.MustCompile(`(?m)^USER\s+(\S+)`).FindStringSubmatch(last)
	if user == nil || strings.HasPrefix(user[1], "0") || user[1] == "root" {
		t.Errorf("final stage USER %v: must be non-root", user)
	}
	if !strings.Contains(text, "CGO_ENABLED=0") {
		t.Error("the binary is not built static (CGO_ENABLED=0)")
	}
	if !regexp.MustCompile(`(?m)^ENTRYPOINT \[`).MatchString(last) {
		t.Error("ENTRYPOINT is not in exec form (no shell to run it)")
	}
	// The Dockerfile's build command works on this tree: static, no cgo.
	build := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(t.TempDir(), "mediator"), "../cmd/mediator")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
}

// unitSettings reads a systemd unit's key=value lines (the last of each
// key wins).
func unitSettings(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			settings[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return settings
}

func TestSystemdUnitsAreHardened(t *testing.T) {
	units, _ := filepath.Glob("systemd/*.service")
	for _, want := range []string{"mediator.service", "mediator-migrate.service", "mediator-custodian@.service",
		"mediator-pseudonym.service", "mediator-agent.service", "mediator-audit-verify.service"} {
		if !slices.Contains(units, filepath.Join("systemd", want)) {
			t.Errorf("no unit %s", want)
		}
	}
	for _, u := range units {
		settings := unitSettings(t, u)
		for k, want := range map[string]string{"NoNewPrivileges": "yes", "ProtectSystem": "strict",
			"PrivateTmp": "yes", "LimitCORE": "0", "CapabilityBoundingSet": ""} {
			if got, ok := settings[k]; !ok || got != want {
				t.Errorf("%s: %s = %q, want %q", u, k, got, want)
			}
		}
		if user := settings["User"]; user == "" || user == "root" {
			t.Errorf("%s: runs as %q", u, user)
		}
		if _, ok := settings["Environment"]; ok {
			t.Errorf("%s: Environment= in the unit: configuration belongs in the EnvironmentFile", u)
		}
	}
	serve := unitSettings(t, "systemd/mediator.service")
	if serve["ExecReload"] != "/bin/kill -HUP $MAINPID" {
		t.Errorf("mediator.service: ExecReload = %q", serve["ExecReload"])
	}
	// The serving process never holds the owner's URL: migrations are a
	// unit of their own, as another user, with another environment file.
	migrate := unitSettings(t, "systemd/mediator-migrate.service")
	b, _ := os.ReadFile("systemd/mediator.service")
	if strings.Contains(string(b), "ExecStartPre") || !strings.Contains(serve["Wants"], "mediator-migrate.service") ||
		!strings.Contains(serve["After"], "mediator-migrate.service") {
		t.Error("mediator.service must leave migrations to mediator-migrate.service, started before it")
	}
	if migrate["ExecStart"] != "/usr/local/bin/mediator migrate" || migrate["User"] == serve["User"] ||
		migrate["EnvironmentFile"] == serve["EnvironmentFile"] || migrate["Type"] != "oneshot" {
		t.Errorf("mediator-migrate.service must migrate as its own user with its own environment file: %v", migrate)
	}
	if c := unitSettings(t, "systemd/mediator-custodian@.service"); !strings.Contains(c["ExecStart"], "custodian serve --config /etc/mediator-custodian/%i.json") {
		t.Errorf("mediator-custodian@.service runs %q", c["ExecStart"])
	}
	verify := unitSettings(t, "systemd/mediator-audit-verify.service")
	timer := unitSettings(t, "systemd/mediator-audit-verify.timer")
	if !strings.HasSuffix(verify["ExecStart"], "mediator audit verify --state /var/lib/mediator-audit-verify/state.json") || verify["EnvironmentFile"] != serve["EnvironmentFile"] || timer["OnCalendar"] == "" {
		t.Error("the audit verify timer must run audit verify daily, incrementally, with the service's configuration (its witnesses and origin)")
	}
	if verify["StateDirectory"] != "mediator-audit-verify" {
		t.Error("mediator-audit-verify.service must keep its --state in its StateDirectory, writable under ProtectSystem=strict")
	}
}

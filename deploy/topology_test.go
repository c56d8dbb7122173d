package deploy_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/mediatorhq/mediator/roster"
)

// runbookTopology is what docs/deploy.md, the runbook test/e2e runs,
// starts: how many custodians, how many of them on an HSM, and whether it
// starts each other process.
type runbookTopology struct {
	custodians, hsm int
	has             map[string]bool
}

func readRunbook(t *testing.T) (string, runbookTopology) {
	t.Helper()
	b, err := os.ReadFile("../docs/deploy.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	var top runbookTopology
	m := regexp.MustCompile(`(?m)^CUSTODIANS=\(([^)]*)\)`).FindStringSubmatch(text)
	if m == nil {
		t.Fatal("docs/deploy.md names no CUSTODIANS")
	}
	top.custodians = len(strings.Fields(m[1]))
	top.hsm = strings.Count(text, "vault bootstrap --custodian \"$name\" --hsm")
	top.has = map[string]bool{}
	for _, p := range []string{"mediator migrate", "mediator serve", "mediator custodian serve", "mediator pseudonym serve",
		"mediator agent --config", "mediator roster propose", "mediator roster sign", "mediator roster custodians-file",
		"mediator roster witnesses-file", "mediator roster witness-config", "mediator audit verify"} {
		top.has[p] = strings.Contains(text, p)
	}
	return text, top
}

// TestComposeIsTheRunbookTopology: deploy/compose.yaml starts what the
// runbook starts, as the same parties: the same number of custodians,
// each with its own Vault, one on an HSM; the pseudonym service; the
// agent; the genesis written and adopted by one-shots; migrations as the
// owner and the service as the runtime role, not the superuser; Vault
// with a file backend, never in dev mode.
func TestComposeIsTheRunbookTopology(t *testing.T) {
	_, top := readRunbook(t)
	for p, ok := range top.has {
		if !ok {
			t.Errorf("docs/deploy.md does not run %s", p)
		}
	}
	if top.custodians != 3 || top.hsm != 1 {
		t.Fatalf("docs/deploy.md runs %d custodians, %d on an HSM; want 3 and 1", top.custodians, top.hsm)
	}
	services, _ := dig(documents(t, "compose.yaml")[0], "services").(map[string]any)
	command := func(name string) string {
		var parts []string
		for _, k := range []string{"entrypoint", "command"} {
			if l, ok := dig(services[name], k).([]any); ok {
				for _, p := range l {
					parts = append(parts, fmt.Sprint(p))
				}
			}
		}
		return strings.Join(parts, " ")
	}
	envOf := func(name string) map[string]any {
		e, _ := dig(services[name], "environment").(map[string]any)
		return e
	}
	var custodians, hsm int
	vaults := map[string]bool{}
	for name := range services {
		cmd := command(name)
		if strings.HasPrefix(cmd, "custodian serve") {
			custodians++
			if envOf(name)["SOFTHSM2_CONF"] != nil {
				hsm++
			}
		}
		if strings.Contains(cmd, "setup-custodian.sh") {
			addr := fmt.Sprint(envOf(name)["VAULT_ADDR"])
			if vaults[addr] {
				t.Errorf("%s shares the Vault %s with another custodian", name, addr)
			}
			vaults[addr] = true
		}
		if strings.Contains(cmd, "server") && strings.Contains(cmd, "-dev") {
			t.Errorf("%s runs Vault in dev mode", name)
		}
	}
	if custodians != top.custodians || hsm != top.hsm || len(vaults) != top.custodians {
		t.Errorf("compose runs %d custodians (%d on an HSM, %d with a Vault of their own); the runbook %d (%d)", custodians, hsm, len(vaults), top.custodians, top.hsm)
	}
	for name, want := range map[string]string{"mediator": "serve", "migrate": "migrate", "pseudonym": "pseudonym serve",
		"agent": "agent --config", "genesis": "genesis.sh", "ceremony": "ceremony.sh"} {
		if !strings.Contains(command(name), want) {
			t.Errorf("service %s runs %q, want %q", name, command(name), want)
		}
	}
	// The mediator pins the genesis and knows its custodians and witnesses.
	env := envOf("mediator")
	for _, v := range []string{"MEDIATOR_ROSTER_GENESIS", "MEDIATOR_CUSTODIANS", "MEDIATOR_WITNESSES", "MEDIATOR_LOG_ORIGIN"} {
		if env[v] == nil {
			t.Errorf("the mediator service sets no %s", v)
		}
	}
	userOf := func(raw any) string {
		// The password is the shell's ${VAR}: not part of what is checked.
		u, err := url.Parse(regexp.MustCompile(`\$\{[^}]*\}`).ReplaceAllString(fmt.Sprint(raw), "password"))
		if err != nil || u.User == nil {
			t.Fatalf("not a database URL: %v", raw)
		}
		return u.User.Username()
	}
	superuser := fmt.Sprint(envOf("postgres")["POSTGRES_USER"])
	serveUser, migrateUser := userOf(env["MEDIATOR_DATABASE_URL"]), userOf(envOf("migrate")["MEDIATOR_DATABASE_URL"])
	if serveUser == superuser || migrateUser == superuser || serveUser == migrateUser {
		t.Errorf("the service connects as %q and migrations as %q (superuser %q): want the runtime role and the owner", serveUser, migrateUser, superuser)
	}
	// The one-shots do what the runbook does, with the same commands.
	scripts := map[string]string{}
	files, _ := filepath.Glob("compose/*.sh")
	for _, f := range files {
		b, _ := os.ReadFile(f)
		scripts[filepath.Base(f)] = string(b)
	}
	for script, wants := range map[string][]string{
		"genesis.sh":         {"mediator roster genesis --file", "mediator roster witness-config", "mediator roster custodians-file", "mediator roster witnesses-file"},
		"ceremony.sh":        {"mediator roster propose", "mediator roster sign", "mediator roster verify"},
		"setup-custodian.sh": {"mediator vault bootstrap --custodian", "--hsm", "mediator custodian init"},
		"setup-mediator.sh":  {"mediator vault bootstrap", "mediator audit verifier-key"},
		"postgres-roles.sh":  {"GRANT mediator_runtime TO", "NOCREATEROLE"},
	} {
		for _, w := range wants {
			if !strings.Contains(scripts[script], w) {
				t.Errorf("compose/%s lacks %q", script, w)
			}
		}
	}
}

// TestKubernetesReachesWhatItNeeds: the mediator's manifests configure a
// roster pin, custodians and witnesses, the NetworkPolicy lets the service
// reach every URL its configuration names (identity provider, custodians,
// witnesses, webhooks), the daily verification checks the witnesses, and
// each custodian's manifest witnesses the same log.
func TestKubernetesReachesWhatItNeeds(t *testing.T) {
	byName := map[string]map[string]any{}
	for _, d := range documents(t, "kubernetes/mediator.yaml") {
		byName[fmt.Sprint(d["kind"], "/", dig(d, "metadata", "name"))] = d
	}
	config, _ := dig(byName["ConfigMap/mediator"], "data").(map[string]any)
	files, _ := dig(byName["ConfigMap/mediator-files"], "data").(map[string]any)
	if g := fmt.Sprint(config["MEDIATOR_ROSTER_GENESIS"]); !roster.ValidDigest(g) {
		t.Errorf("MEDIATOR_ROSTER_GENESIS = %q", g)
	}
	fileOf := func(v string) string {
		path := fmt.Sprint(config[v])
		name, ok := strings.CutPrefix(path, "/etc/mediator/")
		if !ok || files[name] == nil {
			t.Fatalf("%s = %q is not a file of the mediator-files ConfigMap mounted at /etc/mediator", v, path)
		}
		return fmt.Sprint(files[name])
	}
	var custodians struct {
		Threshold int `json:"threshold"`
	}
	var raw struct {
		Custodians []struct {
			Name      string `json:"name"`
			URL       string `json:"url"`
			TokenFile string `json:"token_file"`
		} `json:"custodians"`
		Witnesses []struct {
			Name string `json:"name"`
			URL  string `json:"url"`
		} `json:"witnesses"`
		Quorum   int `json:"quorum"`
		Webhooks []struct {
			URL string `json:"url"`
		} `json:"webhooks"`
	}
	for _, v := range []string{"MEDIATOR_CUSTODIANS", "MEDIATOR_WITNESSES", "MEDIATOR_WEBHOOKS"} {
		if err := json.Unmarshal([]byte(fileOf(v)), &raw); err != nil {
			t.Fatalf("%s: %v", v, err)
		}
	}
	if err := json.Unmarshal([]byte(fileOf("MEDIATOR_CUSTODIANS")), &custodians); err != nil {
		t.Fatal(err)
	}
	if len(raw.Custodians) < 3 || custodians.Threshold < 2 || raw.Quorum < 1 || raw.Quorum > len(raw.Witnesses) {
		t.Errorf("custodians %d, threshold %d, witnesses %d, quorum %d", len(raw.Custodians), custodians.Threshold, len(raw.Witnesses), raw.Quorum)
	}
	ann, _ := dig(byName["Deployment/mediator"], "spec", "template", "metadata", "annotations").(map[string]any)
	urls := []string{fmt.Sprint(config["MEDIATOR_JWT_JWKS"])}
	for _, c := range raw.Custodians {
		urls = append(urls, c.URL)
		secret := strings.TrimPrefix(c.TokenFile, "/vault/secrets/")
		if ann["vault.hashicorp.com/agent-inject-secret-"+secret] == nil {
			t.Errorf("custodian %s's token file %s is not rendered by Vault Agent", c.Name, c.TokenFile)
		}
	}
	for _, w := range raw.Witnesses {
		urls = append(urls, w.URL)
	}
	for _, w := range raw.Webhooks {
		urls = append(urls, w.URL)
	}
	egress, _ := dig(byName["NetworkPolicy/mediator"], "spec", "egress").([]any)
	for _, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil || u.Scheme != "https" {
			t.Errorf("%q is not an https URL", raw)
			continue
		}
		port := u.Port()
		if port == "" {
			port = "443"
		}
		allowed := false
		for _, rule := range egress {
			to, _ := dig(rule, "to").([]any)
			external := len(to) > 0 && dig(to[0], "ipBlock") != nil
			for _, p := range dig(rule, "ports").([]any) {
				if fmt.Sprint(dig(p, "port")) == port && external {
					allowed = true
				}
			}
		}
		if !allowed {
			t.Errorf("the NetworkPolicy lets the service reach no address on port %s, which %s needs", port, raw)
		}
	}
	// The daily verification checks the witnesses' cosignatures, from the
	// mounted file.
	cron := byName["CronJob/mediator-audit-verify"]
	args := fmt.Sprint(dig(cron, "spec", "jobTemplate", "spec", "template", "spec", "containers"))
	if !strings.Contains(args, "--witnesses /etc/mediator/witnesses.json") || !strings.Contains(args, "mountPath:/etc/mediator") {
		t.Errorf("the CronJob does not verify with the witnesses file: %s", args)
	}
	// Its root filesystem is read-only: its --state lives on a claim.
	if !strings.Contains(args, "--state /var/lib/mediator-audit-verify/state.json") || !strings.Contains(args, "mountPath:/var/lib/mediator-audit-verify") ||
		byName["PersistentVolumeClaim/mediator-audit-verify-state"] == nil {
		t.Errorf("the CronJob does not keep its --state on the mediator-audit-verify-state claim: %s", args)
	}

	// Each custodian's own manifest: it serves its configuration, pins a
	// genesis, witnesses the mediator's log, and admits the mediator.
	docs := map[string]map[string]any{}
	for _, d := range documents(t, "kubernetes/custodian.yaml") {
		docs[fmt.Sprint(d["kind"])] = d
		if d["kind"] == "Secret" {
			t.Error("a Secret is written in the custodian's manifests")
		}
	}
	var cfg struct {
		Name          string `json:"name"`
		RosterGenesis string `json:"roster_genesis"`
		Witness       struct {
			Logs []struct {
				Origin string `json:"origin"`
			} `json:"logs"`
		} `json:"witness"`
	}
	if err := json.Unmarshal([]byte(fmt.Sprint(dig(docs["ConfigMap"], "data", "custodian.json"))), &cfg); err != nil {
		t.Fatalf("custodian.json: %v", err)
	}
	if !roster.ValidDigest(cfg.RosterGenesis) || len(cfg.Witness.Logs) != 1 || cfg.Witness.Logs[0].Origin != config["MEDIATOR_LOG_ORIGIN"] {
		t.Errorf("the custodian must pin a genesis and witness the log %v: %+v", config["MEDIATOR_LOG_ORIGIN"], cfg)
	}
	pod := dig(docs["Deployment"], "spec", "template", "spec")
	c := dig(pod, "containers").([]any)[0]
	if dig(pod, "securityContext", "runAsNonRoot") != true || dig(c, "securityContext", "readOnlyRootFilesystem") != true ||
		dig(c, "readinessProbe", "httpGet", "path") != "/readyz" || !strings.Contains(fmt.Sprint(dig(c, "args")), "custodian serve") {
		t.Error("the custodian pod must run custodian serve non-root, read-only, with a /readyz readiness probe")
	}
	ingress := fmt.Sprint(dig(docs["NetworkPolicy"], "spec", "ingress"))
	egressC := fmt.Sprint(dig(docs["NetworkPolicy"], "spec", "egress"))
	if !strings.Contains(ingress, "port:8443") || !strings.Contains(egressC, "port:8200") {
		t.Errorf("the custodian's NetworkPolicy must admit calls on 8443 and reach its Vault: %s / %s", ingress, egressC)
	}
}

// TestDeployFilesUseOnlyWhatTheBinaryHas: every mediator command, flag and
// MEDIATOR_ variable the deployment files and the runbook use exists in
// the binary (its --help lists it), so a renamed flag cannot leave a
// manifest that fails at start.
func TestDeployFilesUseOnlyWhatTheBinaryHas(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "mediator")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/mediator").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	var mu sync.Mutex
	helps := map[string]string{}
	help := func(words []string) string {
		key := strings.Join(words, " ")
		mu.Lock()
		defer mu.Unlock()
		if h, ok := helps[key]; ok {
			return h
		}
		out, _ := exec.Command(bin, append(words, "--help")...).CombinedOutput()
		h := string(out)
		if !strings.Contains(h, "Usage:\n  mediator "+key) {
			t.Errorf("mediator %s is not a command: %s", key, h)
		}
		helps[key] = h
		return h
	}
	check := func(where string, words, flags, vars []string) {
		if len(words) == 0 {
			return
		}
		h := help(words)
		for _, f := range flags {
			if !strings.Contains(h, "  -"+f+" ") && !strings.Contains(h, "  -"+f+"\n") {
				t.Errorf("%s: mediator %s has no flag --%s", where, strings.Join(words, " "), f)
			}
		}
		for _, v := range vars {
			if !regexp.MustCompile(`\b` + v + `\b`).MatchString(h) {
				t.Errorf("%s: mediator %s reads no %s", where, strings.Join(words, " "), v)
			}
		}
	}
	// Shell: each "mediator VERB… [args]" up to the end of its command.
	word := regexp.MustCompile(`^[a-z][a-z-]*$`)
	flag := regexp.MustCompile(`^--?([a-z][a-z0-9-]*)(=.*)?$`)
	parse := func(tokens []string) (words, flags []string) {
		inWords := true
		for _, tok := range tokens {
			if slices.Contains([]string{"|", ">", "2>", ";", "&&", "||", "&", ")", "2>&1"}, tok) || strings.HasPrefix(tok, ">") || strings.HasPrefix(tok, "2>") {
				break
			}
			if inWords && word.MatchString(tok) {
				words = append(words, tok)
				continue
			}
			inWords = false
			if m := flag.FindStringSubmatch(tok); m != nil {
				flags = append(flags, m[1])
			}
		}
		return words, flags
	}
	shell := func(where, text string) {
		for _, line := range strings.Split(text, "\n") {
			if l := strings.TrimSpace(line); strings.HasPrefix(l, "#") || strings.HasPrefix(l, "--") {
				continue // a shell or an SQL comment
			}
			for _, m := range regexp.MustCompile(`(?:^|[\s(])mediator\s+(.*)`).FindAllStringSubmatch(line, -1) {
				words, flags := parse(strings.Fields(strings.TrimSuffix(m[1], "\\")))
				check(where, words, flags, nil)
			}
		}
	}
	runbook, _ := readRunbook(t)
	for _, b := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(runbook, -1) {
		shell("docs/deploy.md", b[1])
	}
	scripts, _ := filepath.Glob("compose/*.sh")
	for _, f := range scripts {
		b, _ := os.ReadFile(f)
		shell(f, string(b))
	}
	mediatorVars := regexp.MustCompile(`^MEDIATOR_[A-Z0-9_]+$`)
	varsOf := func(env map[string]any) (out []string) {
		for k := range env {
			if mediatorVars.MatchString(k) {
				out = append(out, k)
			}
		}
		return out
	}
	// Compose: the services that run the binary, with their variables.
	services, _ := dig(documents(t, "compose.yaml")[0], "services").(map[string]any)
	for name, svc := range services {
		env, _ := dig(svc, "environment").(map[string]any)
		cmd, _ := dig(svc, "command").([]any)
		if entry, _ := dig(svc, "entrypoint").([]any); len(entry) > 0 || len(cmd) == 0 || dig(svc, "build") == nil {
			continue // a script, checked above, or another image
		}
		var tokens []string
		for _, c := range cmd {
			tokens = append(tokens, fmt.Sprint(c))
		}
		words, flags := parse(tokens)
		check("compose.yaml service "+name, words, flags, varsOf(env))
	}
	// Kubernetes: the containers' args, and the ConfigMap the service
	// reads its settings from.
	for _, path := range []string{"kubernetes/mediator.yaml", "kubernetes/custodian.yaml"} {
		for _, d := range documents(t, path) {
			for _, c := range podContainers(d) {
				var tokens []string
				for _, a := range dig(c, "args").([]any) {
					tokens = append(tokens, fmt.Sprint(a))
				}
				words, flags := parse(tokens)
				var vars []string
				if words[0] == "serve" {
					for _, d := range documents(t, path) {
						if d["kind"] == "ConfigMap" && dig(d, "metadata", "name") == "mediator" {
							vars = varsOf(dig(d, "data").(map[string]any))
						}
					}
				}
				check(fmt.Sprint(path, " ", d["kind"]), words, flags, vars)
			}
		}
	}
	// systemd: each ExecStart.
	units, _ := filepath.Glob("systemd/*.service")
	for _, u := range units {
		if exec := unitSettings(t, u)["ExecStart"]; exec != "" {
			words, flags := parse(strings.Fields(exec)[1:])
			check(u, words, flags, nil)
		}
	}
	if len(helps) < 15 {
		t.Errorf("only %d commands were checked: the parsing lost them", len(helps))
	}
}

// podContainers are the containers of a Deployment, Job or CronJob.
func podContainers(d map[string]any) []any {
	for _, path := range [][]string{{"spec", "template", "spec", "containers"}, {"spec", "jobTemplate", "spec", "template", "spec", "containers"}} {
		if cs, ok := dig(d, path...).([]any); ok {
			return cs
		}
	}
	return nil
}

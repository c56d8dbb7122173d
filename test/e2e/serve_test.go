package e2e

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	vaultapi "github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5"

	vaultsetup "github.com/mediatorhq/mediator/deploy/vault"
	"github.com/mediatorhq/mediator/dev"
	"github.com/mediatorhq/mediator/dev/servers"
	"github.com/mediatorhq/mediator/roster"
)

// TestRealDependencies states, in the test output, which real servers this
// run talks to.
func TestRealDependencies(t *testing.T) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, env.PG.AdminURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var pgVersion string
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&pgVersion); err != nil {
		t.Fatal(err)
	}
	vc := adminVault(t, env.Vault)
	h, err := vc.Sys().Health()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(pgVersion, "PostgreSQL ") || h.Version == "" || h.Sealed {
		t.Fatalf("unexpected dependencies: %q, vault %+v", pgVersion, h)
	}
	t.Logf("PostgreSQL in use (%s): %s", env.PG.Source, pgVersion)
	t.Logf("Vault in use (%s): %s at %s", env.Vault.Source, h.Version, env.Vault.Addr)
}

func adminVault(t *testing.T, v *servers.Vault) *vaultapi.Client {
	t.Helper()
	c, err := vaultapi.NewClient(&vaultapi.Config{Address: v.Addr})
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(v.Token)
	return c
}

// instance is a `mediator serve` process with everything it was given.
type instance struct {
	proc    *process
	base    string
	issuer  *dev.Issuer
	state   string
	dsn     string
	environ []string // what serve was started with, for restarts
	// metrics is the URL of /metrics on the instance's private metrics
	// listener (no token needed there).
	metrics string
	// genesis is the roster genesis the instance pins (ensureRoster
	// adopts it).
	genesis roster.Roster
	// custodians says whether the instance was given custodians
	// (--custodians); without them it is never ready (waitReady).
	custodians bool
}

// waitReady waits until the instance is as ready as it can be: /readyz
// 200 with custodians; without them, 503 naming custodians as not
// configured and nothing else (every other dependency is fine).
func (in *instance) waitReady(t *testing.T, within time.Duration) {
	t.Helper()
	if in.custodians {
		waitStatus(t, in.proc, in.base+"/readyz", 200, within)
		return
	}
	waitNotReady(t, in.proc, in.base, within, "custodians")
}

// waitNotReady polls base's /readyz until it answers 503 naming exactly
// notConfigured as not configured and no dependency down.
func waitNotReady(t *testing.T, p *process, base string, within time.Duration, notConfigured ...string) {
	t.Helper()
	want := strings.Join(notConfigured, ", ") + " not configured"
	var last string
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		select {
		case <-p.exited:
			t.Fatalf("process exited (%v) before it was ready but for %s; output:\n%s", p.err, want, p.Output())
		default:
		}
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			last = err.Error()
			continue
		}
		var body struct{ Error struct{ Message string } }
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode == 503 && body.Error.Message == want {
			return
		}
		last = fmt.Sprintf("%d %q", resp.StatusCode, body.Error.Message)
	}
	t.Fatalf("%s/readyz did not answer 503 %q within %s (last: %s); output:\n%s", base, want, within, last, p.Output())
}

// restart starts serve again with the same configuration, after the old
// process is gone (killed or stopped), and waits until it is ready.
func (in *instance) restart(t *testing.T) {
	t.Helper()
	in.proc = start(t, in.environ, "serve")
	in.waitReady(t, 60*time.Second)
}

// serveOpts say how to start an instance.
type serveOpts struct {
	pg       *servers.Postgres // nil: a fresh database on the shared server
	vault    *servers.Vault    // nil: the shared Vault
	useToken bool              // authenticate to Vault with the root token instead of AppRole
	extraEnv []string
	migrate  *bool  // nil: migrate first
	dsn      string // a database to share with another instance; "" for a fresh one
	// custodians, if set, are the custodian services deposits go to, and
	// their genesis roster is the one the instance pins; else a genesis
	// of e2eApprovers and custodians that do not run.
	custodians *custodianProcs
}

// startServe prepares a database and Vault the way an operator would
// (`mediator migrate`, vault bootstrap) and starts `mediator serve`.
func startServe(t *testing.T, o serveOpts) *instance {
	t.Helper()
	ctx := context.Background()
	dsn := o.dsn
	switch {
	case dsn != "":
	case o.pg == nil:
		dsn = env.NewDatabase(t)
	default:
		var err error
		if dsn, err = o.pg.CreateDatabase(ctx, "mediator_e2e"); err != nil {
			t.Fatal(err)
		}
	}
	v := o.vault
	if v == nil {
		v = env.Vault
	}
	if o.migrate == nil || *o.migrate {
		if _, stderr, err := runCmd(t, []string{"DATABASE_URL=" + dsn}, "migrate"); err != nil {
			t.Fatalf("migrate: %v\n%s", err, stderr)
		}
	}
	state := t.TempDir()
	iss, err := dev.LoadOrCreateIssuer(state)
	if err != nil {
		t.Fatal(err)
	}
	addr, metricsAddr := freeAddr(t), freeAddr(t)
	environ := []string{
		"MEDIATOR_ADDR=" + addr,
		"MEDIATOR_METRICS_ADDR=" + metricsAddr,
		"MEDIATOR_DATABASE_URL=" + dsn,
		"MEDIATOR_VAULT_ADDR=" + v.Addr,
		"MEDIATOR_JWT_ISSUER=" + dev.IssuerName,
		"MEDIATOR_JWT_AUDIENCE=" + dev.Audience,
		"MEDIATOR_JWT_JWKS=" + dev.JWKSPath(state),
		"MEDIATOR_SHUTDOWN_TIMEOUT=5s",
	}
	if o.useToken {
		environ = append(environ, "MEDIATOR_VAULT_TOKEN="+v.Token)
	} else {
		creds, err := vaultsetup.Bootstrap(ctx, adminVault(t, v))
		if err != nil {
			t.Fatal(err)
		}
		environ = append(environ, "MEDIATOR_VAULT_ROLE_ID="+creds.RoleID, "MEDIATOR_VAULT_SECRET_ID="+creds.SecretID)
	}
	genesis := absentCustodiansGenesis(t)
	if o.custodians != nil {
		environ = append(environ, "MEDIATOR_CUSTODIANS="+o.custodians.file)
		genesis = o.custodians.cs[0].Genesis
	}
	digest, err := genesis.Digest()
	if err != nil {
		t.Fatal(err)
	}
	environ = append(environ, "MEDIATOR_ROSTER_GENESIS="+digest)
	environ = append(environ, o.extraEnv...)
	p := start(t, environ, "serve")
	return &instance{proc: p, base: "http://" + addr, issuer: iss, state: state, dsn: dsn, environ: environ, genesis: genesis,
		metrics: "http://" + metricsAddr + "/metrics", custodians: o.custodians != nil}
}

func TestWhoamiTokens(t *testing.T) {
	in := startServe(t, serveOpts{})
	in.waitReady(t, 60*time.Second)

	code, body, hdr := call(t, "GET", in.base+"/v1/whoami", "")
	if code != 401 || errorCode(body) != "unauthenticated" || hdr.Get("WWW-Authenticate") == "" {
		t.Fatalf("no token: %d %v", code, body)
	}

	// A token minted by the CLI from the state directory is accepted.
	stdout, stderr, err := runCmd(t, nil, "dev", "token", "--state-dir", in.state, "--sub", "alice", "--roles", "officer,auditor")
	if err != nil {
		t.Fatalf("dev token: %v\n%s", err, stderr)
	}
	tok := strings.TrimSpace(stdout)
	code, body, _ = call(t, "GET", in.base+"/v1/whoami", tok)
	if code != 200 || body["subject"] != "alice" || fmt.Sprint(body["roles"]) != "[officer auditor]" {
		t.Fatalf("dev token: %d %v", code, body)
	}

	devKey := readDevKey(t, in.state)
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Now()
	valid := jwt.Claims{Issuer: dev.IssuerName, Audience: jwt.Audience{dev.Audience}, Subject: "mallory",
		Expiry: jwt.NewNumericDate(now.Add(time.Hour)), IssuedAt: jwt.NewNumericDate(now)}
	bad := map[string]string{
		"signed by another key": signToken(t, jose.JSONWebKey{Key: otherKey, KeyID: devKey.KeyID}, valid),
		"expired": signToken(t, devKey, func() jwt.Claims {
			c := valid
			c.Expiry = jwt.NewNumericDate(now.Add(-time.Hour))
			return c
		}()),
		"wrong audience": signToken(t, devKey, func() jwt.Claims { c := valid; c.Audience = jwt.Audience{"someone-else"}; return c }()),
		"wrong issuer":   signToken(t, devKey, func() jwt.Claims { c := valid; c.Issuer = "https://evil.example"; return c }()),
		"alg none":       noneToken(devKey.KeyID, valid),
	}
	for name, tok := range bad {
		code, body, _ := call(t, "GET", in.base+"/v1/whoami", tok)
		if code != 401 || errorCode(body) != "unauthenticated" {
			t.Errorf("%s: %d %v", name, code, body)
		}
	}

	// SIGTERM drains and exits cleanly.
	if err := in.proc.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("serve exit after SIGTERM: %v\n%s", err, in.proc.Output())
	}
	if !strings.Contains(in.proc.Output(), "shut down cleanly") {
		t.Fatalf("no clean shutdown in log:\n%s", in.proc.Output())
	}
	// After the drain, every job serve started stops in the order
	// docs/architecture.md gives, each once it is done.
	var stopped []string
	drained := false
	for _, line := range strings.Split(strings.TrimSpace(in.proc.Output()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		switch m["msg"] {
		case "shut down cleanly":
			drained = true
		case "stopped":
			if !drained {
				t.Fatalf("job %v stopped before the HTTP server drained", m["job"])
			}
			stopped = append(stopped, fmt.Sprint(m["job"]))
		}
	}
	want := []string{"metrics listener", "approver liveness watch", "webhook delivery", "policy reload on SIGHUP", "policy watch",
		"SOC tally", "audit log", "vault token renewal", "database pool"}
	if !slices.Equal(stopped, want) {
		t.Fatalf("jobs stopped in the order %q, want %q", stopped, want)
	}
}

func readDevKey(t *testing.T, state string) jose.JSONWebKey {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(state, "dev-issuer.jwk"))
	if err != nil {
		t.Fatal(err)
	}
	var k jose.JSONWebKey
	if err := json.Unmarshal(b, &k); err != nil {
		t.Fatal(err)
	}
	return k
}

func signToken(t *testing.T, key jose.JSONWebKey, c jwt.Claims) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(c).Claims(map[string]any{"roles": []string{"admin"}}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func noneToken(kid string, c jwt.Claims) string {
	h, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT", "kid": kid})
	body, _ := json.Marshal(map[string]any{"iss": c.Issuer, "aud": []string(c.Audience), "sub": c.Subject,
		"exp": c.Expiry.Time().Unix(), "roles": []string{"admin"}})
	enc := base64.RawURLEncoding.EncodeToString
	return enc(h) + "." + enc(body) + "."
}

// TestReadyzNamesTheDependencyThatIsDown stops a real PostgreSQL and a real
// Vault under a running mediator.
func TestReadyzNamesTheDependencyThatIsDown(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pg, err := servers.StartPostgres(ctx, nil, servers.PostgresOptions{NoLocal: true, IgnoreEnv: true})
	if err != nil {
		t.Fatalf("private postgres: %v", err)
	}
	defer pg.Stop()
	vault, err := servers.StartVault(ctx, nil, servers.VaultOptions{IgnoreEnv: true})
	if err != nil {
		t.Fatalf("private vault: %v", err)
	}
	defer vault.Stop()

	in := startServe(t, serveOpts{pg: pg, vault: vault})
	in.waitReady(t, 60*time.Second)

	// While both are up, ingest works.
	gw, _ := in.issuer.Issue("gw", []string{"ingest"}, time.Hour)
	if code, body := post(t, in.base+"/v1/events", "application/json", gw, batch(event("before", "c", nil))); code != 200 {
		t.Fatalf("ingest while up: %d %v", code, body)
	}

	pg.Stop()
	// Ingest with the database gone: 503 with Retry-After, never a 500.
	code, body := post(t, in.base+"/v1/events", "application/json", gw, batch(event("during", "c", nil)))
	if code != 503 || errorCode(body) != "dependency_unavailable" || strings.Contains(fmt.Sprint(body), "127.0.0.1") {
		t.Fatalf("ingest with postgres down: %d %v", code, body)
	}
	code, body, hdr := call(t, "GET", in.base+"/readyz", "")
	msg := fmt.Sprint(body["error"])
	if code != 503 || errorCode(body) != "not_ready" || !strings.Contains(msg, "postgres") || strings.Contains(msg, "vault") || hdr.Get("Retry-After") == "" {
		t.Fatalf("postgres stopped: %d %v", code, body)
	}
	vault.Stop()
	code, body, _ = call(t, "GET", in.base+"/readyz", "")
	msg = fmt.Sprint(body["error"])
	if code != 503 || !strings.Contains(msg, "postgres") || !strings.Contains(msg, "vault") {
		t.Fatalf("both stopped: %d %v", code, body)
	}
	// Liveness is not readiness: the process is up.
	if code, _, _ := call(t, "GET", in.base+"/healthz", ""); code != 200 {
		t.Fatalf("healthz = %d", code)
	}
}

// TestReadyzNamesABlockedIdentityProvider: while the identity provider's
// JWKS URL answers nothing but refusals, every token is refused and
// /readyz says why (jwks); once it answers, the mediator is ready but for
// what it was not given (custodians) and the token works.
func TestReadyzNamesABlockedIdentityProvider(t *testing.T) {
	state := t.TempDir()
	iss, err := dev.LoadOrCreateIssuer(state)
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := os.ReadFile(dev.JWKSPath(state))
	if err != nil {
		t.Fatal(err)
	}
	var blocked atomic.Bool
	blocked.Store(true)
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if blocked.Load() {
			http.Error(w, "blocked by the egress proxy", http.StatusForbidden)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(jwks)
	}))
	defer idp.Close()
	in := startServe(t, serveOpts{extraEnv: []string{"MEDIATOR_JWT_JWKS=" + idp.URL}})
	in.issuer = iss
	waitStatus(t, in.proc, in.base+"/healthz", 200, 60*time.Second)
	tok, _ := iss.Issue("alice", []string{"auditor"}, time.Hour)
	if code, body, _ := call(t, "GET", in.base+"/v1/whoami", tok); code != 401 {
		t.Fatalf("whoami with the JWKS blocked: %d %v", code, body)
	}
	// Ready but for the key set (and the custodians it was not given).
	waitNotReadyDown(t, in, "jwks")

	blocked.Store(false)
	in.waitReady(t, 90*time.Second) // the refetch backs off 1 s, 2 s, 4 s… while blocked
	if code, body, _ := call(t, "GET", in.base+"/v1/whoami", tok); code != 200 {
		t.Fatalf("whoami once the JWKS is fetched: %d %v", code, body)
	}
}

// waitNotReadyDown polls /readyz until it names down as down and
// custodians as not configured, and nothing else.
func waitNotReadyDown(t *testing.T, in *instance, down string) {
	t.Helper()
	want := down + " unreachable; custodians not configured"
	var last string
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		code, body, _ := call(t, "GET", in.base+"/readyz", "")
		e, _ := body["error"].(map[string]any)
		if code == 503 && e["message"] == want {
			return
		}
		last = fmt.Sprintf("%d %v", code, body)
	}
	t.Fatalf("/readyz did not answer 503 %q (last: %s); output:\n%s", want, last, in.proc.Output())
}

// TestServeRefusesABehindSchema: a database that was never migrated is not
// served, and the message says what to do.
func TestServeRefusesABehindSchema(t *testing.T) {
	no := false
	in := startServe(t, serveOpts{migrate: &no})
	select {
	case <-in.proc.exited:
	case <-time.After(60 * time.Second):
		t.Fatal("serve did not refuse an unmigrated database")
	}
	if in.proc.err == nil {
		t.Fatal("serve exited 0 on an unmigrated database")
	}
	if out := in.proc.Output(); !strings.Contains(out, "mediator migrate") || !strings.Contains(out, "behind") {
		t.Fatalf("refusal does not explain itself:\n%s", out)
	}
}

// TestNoSecretsInLogs gives the service canary secrets through every
// channel it reads them from, exercises success and failure paths, and
// checks that none reaches the log.
func TestNoSecretsInLogs(t *testing.T) {
	ctx := context.Background()
	canaryPW := "pwcanary" + randomToken(t)
	dsn := env.NewDatabase(t)
	u, _ := url.Parse(dsn)
	u.User = url.UserPassword(u.User.Username(), canaryPW) // trust auth ignores it; the log must too
	withPW := u.String()
	if _, stderr, err := runCmd(t, []string{"DATABASE_URL=" + withPW}, "migrate"); err != nil {
		t.Fatalf("migrate: %v\n%s", err, stderr)
	}

	for _, useToken := range []bool{false, true} {
		t.Run(fmt.Sprintf("vault-token=%v", useToken), func(t *testing.T) {
			creds, err := vaultsetup.Bootstrap(ctx, adminVault(t, env.Vault))
			if err != nil {
				t.Fatal(err)
			}
			state := t.TempDir()
			iss, _ := dev.LoadOrCreateIssuer(state)
			addr := freeAddr(t)
			environ := []string{
				"MEDIATOR_ADDR=" + addr, "DATABASE_URL=" + withPW, "VAULT_ADDR=" + env.Vault.Addr,
				"MEDIATOR_JWT_ISSUER=" + dev.IssuerName, "MEDIATOR_JWT_AUDIENCE=" + dev.Audience,
				"MEDIATOR_JWT_JWKS=" + dev.JWKSPath(state), "MEDIATOR_LOG_LEVEL=debug",
			}
			secrets := []string{canaryPW}
			if useToken {
				environ = append(environ, "VAULT_TOKEN="+env.Vault.Token)
				secrets = append(secrets, env.Vault.Token)
			} else {
				environ = append(environ, "MEDIATOR_VAULT_ROLE_ID="+creds.RoleID, "MEDIATOR_VAULT_SECRET_ID="+creds.SecretID)
				secrets = append(secrets, creds.SecretID)
			}
			p := start(t, environ, "serve")
			base := "http://" + addr
			// Ready but for what it was not given.
			waitNotReady(t, p, base, 60*time.Second, "custodians", "roster")
			tok, _ := iss.Issue("alice", []string{"auditor"}, time.Hour)
			secrets = append(secrets, tok)
			call(t, "GET", base+"/v1/whoami", tok)
			call(t, "GET", base+"/v1/whoami", tok+"x") // refused: logs a failure
			call(t, "GET", base+"/v1/whoami?token="+tok, "")
			promTok, _ := iss.Issue("prometheus", []string{"metrics"}, time.Hour)
			secrets = append(secrets, promTok)
			_, metrics := getText(t, base+"/metrics", promTok)
			if !strings.Contains(metrics, "mediator_http_requests_total") {
				t.Fatal("metrics not served")
			}
			for _, s := range secrets {
				if strings.Contains(metrics, s) {
					t.Errorf("a secret appears in /metrics")
				}
			}
			if err := p.stop(t, syscall.SIGTERM); err != nil {
				t.Fatalf("serve: %v\n%s", err, p.Output())
			}
			logs := p.Output()
			if !strings.Contains(logs, `"route":"/v1/whoami"`) {
				t.Fatalf("requests were not logged; the check would prove nothing:\n%s", logs)
			}
			for _, s := range secrets {
				if strings.Contains(logs, s) {
					t.Errorf("a secret (%d chars, starting %q) appears in the log", len(s), s[:4])
				}
			}
		})
	}
}

func randomToken(t *testing.T) string {
	b := make([]byte, 9)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

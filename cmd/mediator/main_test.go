package main

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestMaskingHandler(t *testing.T) {
	var buf bytes.Buffer
	secret := "s3cr3t-canary-value"
	log := newLogger(&buf, "debug", []string{secret, "abc"}).With("fixed", "pre-"+secret)
	log.Info("connecting with "+secret,
		"plain", secret,
		"err", errors.New("dial: token "+secret+" refused"),
		slog.Group("g", "inner", secret))
	out := buf.String()
	if strings.Contains(out, secret) {
		t.Fatalf("secret leaked: %s", out)
	}
	if strings.Count(out, "[redacted]") != 5 {
		t.Fatalf("expected 5 masks: %s", out)
	}
	// Short values are not masked, so ordinary words survive.
	buf.Reset()
	newLogger(&buf, "info", []string{"abc"}).Info("abc")
	if !strings.Contains(buf.String(), `"msg":"abc"`) {
		t.Fatalf("short value masked: %s", buf.String())
	}
}

func TestListenAddr(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:8080":        "127.0.0.1:8080",
		"http://127.0.0.1:9090": "127.0.0.1:9090",
		":8080":                 ":8080",
	} {
		if got, err := listenAddr(in); err != nil || got != want {
			t.Errorf("listenAddr(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"https://x:1", "localhost", "http://x:1/path"} {
		if _, err := listenAddr(bad); err == nil {
			t.Errorf("listenAddr(%q) accepted", bad)
		}
	}
}

// TestServeConfigFromEnvironment: a flag wins over its variable,
// MEDIATOR_DATABASE_URL over DATABASE_URL, the shell's VAULT_TOKEN is not
// used when an AppRole is configured, and validate lists every missing
// setting at once.
func TestServeConfigFromEnvironment(t *testing.T) {
	c := testCall(map[string]string{
		"MEDIATOR_ADDR":            "127.0.0.1:9999",
		"DATABASE_URL":             "postgres://fallback",
		"MEDIATOR_DATABASE_URL":    "postgres://preferred",
		"VAULT_TOKEN":              "shell-token",
		"MEDIATOR_VAULT_ROLE_ID":   "role",
		"MEDIATOR_VAULT_SECRET_ID": "secret",
	})
	_, err := loadServeConfig(c, []string{"--addr", "127.0.0.1:7777"})
	if err == nil || !strings.Contains(err.Error(), "--vault-addr") || !strings.Contains(err.Error(), "--jwt-issuer") {
		t.Fatalf("validate should list every missing setting: %v", err)
	}
	var cfg serveConfig
	var vaultCLIToken string
	if err := c.newFlags(serveSettings(&cfg, &vaultCLIToken)...).Parse([]string{"--addr", "127.0.0.1:7777"}); err != nil {
		t.Fatal(err)
	}
	if err := cfg.resolve(vaultCLIToken); err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != "127.0.0.1:7777" {
		t.Errorf("flag should win: %q", cfg.Addr)
	}
	if cfg.DatabaseURL != "postgres://preferred" {
		t.Errorf("MEDIATOR_DATABASE_URL should win: %q", cfg.DatabaseURL)
	}
	if cfg.VaultToken != "" || cfg.VaultSecretID != "secret" {
		t.Errorf("with an AppRole configured, the shell's VAULT_TOKEN must not be used: token=%q", cfg.VaultToken)
	}
}

// TestVaultCLITokenWithoutAppRole: without an AppRole, the shell's
// VAULT_TOKEN is used, after MEDIATOR_VAULT_TOKEN and the token file.
func TestVaultCLITokenWithoutAppRole(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("file-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"VAULT_TOKEN": "shell-token"}, "shell-token"},
		{map[string]string{"VAULT_TOKEN": "shell-token", "MEDIATOR_VAULT_TOKEN_FILE": tokenFile}, "file-token"},
		{map[string]string{"VAULT_TOKEN": "shell-token", "MEDIATOR_VAULT_TOKEN_FILE": tokenFile, "MEDIATOR_VAULT_TOKEN": "own-token"}, "own-token"},
	} {
		var cfg serveConfig
		var vaultCLIToken string
		if err := testCall(tc.env).newFlags(serveSettings(&cfg, &vaultCLIToken)...).Parse(nil); err != nil {
			t.Fatal(err)
		}
		if err := cfg.resolve(vaultCLIToken); err != nil {
			t.Fatal(err)
		}
		if cfg.VaultToken != tc.want {
			t.Errorf("%v: token %q, want %q", tc.env, cfg.VaultToken, tc.want)
		}
	}
}

// testCall is a call of a command named test, reading env as its
// environment, its output discarded.
func testCall(env map[string]string) *call {
	return &call{stdout: io.Discard, stderr: io.Discard, getenv: func(k string) string { return env[k] },
		path: []*command{{name: "test"}}}
}

// TestReplaceFileKeepsSecretsPrivate: a re-run bootstrap replaces its
// secret file whole, at mode 0600, while writeNew never overwrites.
func TestReplaceFileKeepsSecretsPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secret-id")
	if err := writeNew(path, []byte("first\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := writeNew(path, []byte("second\n"), 0o600); err == nil {
		t.Fatal("writeNew overwrote a file")
	}
	if err := replaceFile(path, []byte("second\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	st, _ := os.Stat(path)
	if string(b) != "second\n" || st.Mode().Perm() != 0o600 {
		t.Fatalf("replaced file: %q %v", b, st.Mode())
	}
}

// TestBinaryLinksNoTestCode: the production binary links neither the
// testing package nor anything under test/ (dev orchestration lives in
// package dev, which is not test code).
func TestBinaryLinksNoTestCode(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if pkg == "testing" || strings.HasPrefix(pkg, "testing/") || strings.Contains(pkg, "mediatorhq/mediator/test/") {
			t.Errorf("cmd/mediator links %s", pkg)
		}
	}
}

package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
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

func TestServeConfigFromEnvironment(t *testing.T) {
	t.Setenv("MEDIATOR_ADDR", "127.0.0.1:9999")
	t.Setenv("DATABASE_URL", "postgres://fallback")
	t.Setenv("MEDIATOR_DATABASE_URL", "postgres://preferred")
	t.Setenv("VAULT_TOKEN", "shell-token")
	t.Setenv("MEDIATOR_VAULT_ROLE_ID", "role")
	t.Setenv("MEDIATOR_VAULT_SECRET_ID", "secret")
	var c serveConfig
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	bindServeFlags(fs, &c)
	if err := fs.Parse([]string{"--addr", "127.0.0.1:7777"}); err != nil {
		t.Fatal(err)
	}
	if err := c.resolve(); err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:7777" {
		t.Errorf("flag should win: %q", c.Addr)
	}
	if c.DatabaseURL != "postgres://preferred" {
		t.Errorf("MEDIATOR_DATABASE_URL should win: %q", c.DatabaseURL)
	}
	if c.VaultToken != "" || c.VaultSecretID != "secret" {
		t.Errorf("with an AppRole configured, the shell's VAULT_TOKEN must not be used: token=%q", c.VaultToken)
	}
	err := c.validate()
	if err == nil || !strings.Contains(err.Error(), "--vault-addr") || !strings.Contains(err.Error(), "--jwt-issuer") {
		t.Fatalf("validate should list every missing setting: %v", err)
	}
}

func TestHelpOnEveryCommand(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "--help"}, {"migrate", "--help"}, {"dev", "--help"}, {"dev", "token", "--help"},
		{"dev", "env", "--help"}, {"vault", "bootstrap", "--help"}, {"vault", "build", "--help"},
		{"audit", "verify", "--help"}, {"escrow", "destroy", "--help"}, {"escrow", "hold", "--help"},
	} {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), args, &stdout, &stderr)
		if !errors.Is(err, flag.ErrHelp) || !strings.Contains(stderr.String(), "Usage: mediator") {
			t.Errorf("%v: err=%v output=%q", args, err, stderr.String())
		}
	}
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"bogus"}, &stdout, &stderr); err == nil || !strings.Contains(stderr.String(), "unknown command") {
		t.Errorf("unknown command: %v %q", err, stderr.String())
	}
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

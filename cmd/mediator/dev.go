package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/mod/sumdb/note"

	vaultsetup "github.com/mediatorhq/mediator/deploy/vault"
	"github.com/mediatorhq/mediator/identity"
	"github.com/mediatorhq/mediator/test/harness"
	"github.com/mediatorhq/mediator/vaultclient"
)

// Files in the dev state directory.
const (
	devEnvFile = "dev.env" // export lines for `mediator dev env`, 0600
	devPidFile = "dev.pid" // the running dev instance's pid
	devDBName  = "mediator_dev"
)

// defaultStateDir is $XDG_STATE_HOME/mediator/dev or ~/.local/state/mediator/dev.
func defaultStateDir() string {
	if d := os.Getenv("MEDIATOR_DEV_STATE_DIR"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "mediator", "dev")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "mediator-dev")
	}
	return filepath.Join(home, ".local", "state", "mediator", "dev")
}

// devCmd runs the whole service locally: it finds or starts PostgreSQL and
// Vault, migrates, bootstraps Vault, creates the dev token issuer and serves.
// On Ctrl-C it stops everything it started.
func devCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("dev", "mediator dev [--addr 127.0.0.1:8080] [--state-dir DIR]", stderr)
	addr := fs.String("addr", "127.0.0.1:8080", "listen address")
	stateDir := fs.String("state-dir", defaultStateDir(), "where the dev issuer key, PostgreSQL data (if started here) and env file live [MEDIATOR_DEV_STATE_DIR]")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := os.MkdirAll(*stateDir, 0o700); err != nil {
		return fmt.Errorf("dev: state dir: %w", err)
	}
	if pid, alive := runningDevPid(*stateDir); alive {
		return fmt.Errorf("dev: another dev instance (pid %d) is running with state dir %s; stop it first", pid, *stateDir)
	}
	// Secrets are known only once the dependencies are up; a second logger
	// with them masked serves from then on.
	boot := newLogger(stderr, *level, nil)
	setGCPercent(boot)

	pg, err := harness.StartPostgres(ctx, boot, harness.PostgresOptions{DataDir: filepath.Join(*stateDir, "postgres")})
	if err != nil {
		return fmt.Errorf("dev: postgres: %w", err)
	}
	defer pg.Stop()
	dsn := pg.AdminURL
	if pg.Source != "DATABASE_URL" {
		if dsn, err = pg.CreateDatabase(ctx, devDatabase(*stateDir)); err != nil {
			return fmt.Errorf("dev: %w", err)
		}
	}

	vault, err := harness.StartVault(ctx, boot, harness.VaultOptions{})
	if err != nil {
		return fmt.Errorf("dev: vault: %w", err)
	}
	defer vault.Stop()
	admin, err := vaultclient.Connect(ctx, boot, vaultclient.Config{Addr: vault.Addr, Token: vault.Token})
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	creds, err := vaultsetup.Bootstrap(ctx, admin)
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}

	log := newLogger(stderr, *level, append([]string{vault.Token, creds.SecretID}, dsnSecrets(dsn)...))
	if err := migrate(ctx, dsn, log); err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	if _, err := identity.LoadOrCreateDevIssuer(*stateDir); err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	checkpointKey, err := devCheckpointKey(*stateDir)
	if err != nil {
		return err
	}
	skey, err := os.ReadFile(checkpointKey)
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	_, verifierKey, err := signerFromKey(strings.TrimSpace(string(skey)), defaultLogOrigin)
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}

	cfg := serveConfig{
		Addr:            *addr,
		DatabaseURL:     dsn,
		VaultAddr:       vault.Addr,
		VaultRoleID:     creds.RoleID,
		VaultSecretID:   creds.SecretID,
		JWTIssuer:       identity.DevIssuer,
		JWTAudience:     identity.DevAudience,
		JWKS:            identity.DevJWKSPath(*stateDir),
		LogLevel:        *level,
		ShutdownTimeout: 10 * time.Second,

		LogOrigin:          defaultLogOrigin,
		CheckpointInterval: time.Second,
		// The dev Vault lives in memory and forgets its keys on every
		// start, but the dev database keeps its log: checkpoints are signed
		// with a key kept beside the database so a restarted dev instance
		// can still verify what it wrote before.
		CheckpointKeyFile: checkpointKey,
		StatsMinGroup:     defaultStatsMinGroup,
		Limits:            defaultLimits,
	}
	ready := make(chan string, 1)
	errc := make(chan error, 1)
	go func() { errc <- serve(ctx, cfg, log, ready) }()
	select {
	case err := <-errc:
		return fmt.Errorf("dev: %w", err)
	case listening := <-ready:
		url := "http://" + listening
		if err := writeDevState(*stateDir, map[string]string{
			"DATABASE_URL":  dsn,
			"VAULT_ADDR":    vault.Addr,
			"VAULT_TOKEN":   vault.Token,
			"MEDIATOR_ADDR": url,
			// So `mediator audit verify` works after `eval "$(mediator dev env)"`.
			"MEDIATOR_VERIFIER_KEY": verifierKey,
		}); err != nil {
			return err
		}
		defer removeDevState(*stateDir)
		printDevBanner(stdout, url, *stateDir, pg.Source, vault.Source)
	}
	return <-errc
}

func printDevBanner(w io.Writer, url, stateDir, pgSource, vaultSource string) {
	self := "mediator"
	if len(os.Args) > 0 && strings.Contains(os.Args[0], "/") && !strings.Contains(os.Args[0], "go-build") {
		self = os.Args[0]
	}
	stateFlag := ""
	if stateDir != defaultStateDir() {
		stateFlag = " --state-dir " + stateDir
	}
	fmt.Fprintf(w, `
mediator dev is serving on %[1]s
  PostgreSQL: %[3]s; Vault: %[4]s (dev server, in memory)

Try:
  curl %[1]s/readyz
  TOKEN=$(%[2]s dev token%[5]s --sub alice --roles officer,auditor)
  curl -H "Authorization: Bearer $TOKEN" %[1]s/v1/whoami
  eval "$(%[2]s dev env%[5]s)"   # DATABASE_URL, VAULT_ADDR, VAULT_TOKEN, MEDIATOR_ADDR, MEDIATOR_VERIFIER_KEY
  %[2]s loadgen --duration 10s    # realistic events; then: %[2]s audit verify

Ctrl-C stops everything this command started.
`, url, self, pgSource, vaultSource, stateFlag)
}

// writeDevState records how to reach this dev instance: the env file
// (0600, it holds the dev Vault's root token) and the pid file.
func writeDevState(dir string, vars map[string]string) error {
	var b strings.Builder
	for _, k := range []string{"DATABASE_URL", "VAULT_ADDR", "VAULT_TOKEN", "MEDIATOR_ADDR", "MEDIATOR_VERIFIER_KEY"} {
		fmt.Fprintf(&b, "export %s=%s\n", k, shellQuote(vars[k]))
	}
	if err := os.WriteFile(filepath.Join(dir, devEnvFile), []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("dev: write env file: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, devPidFile), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		return fmt.Errorf("dev: write pid file: %w", err)
	}
	return nil
}

func removeDevState(dir string) {
	os.Remove(filepath.Join(dir, devEnvFile))
	os.Remove(filepath.Join(dir, devPidFile))
}

// runningDevPid returns the pid recorded in dir and whether it is alive.
func runningDevPid(dir string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(dir, devPidFile))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, syscall.Kill(pid, 0) == nil
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func devTokenCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("dev token", "mediator dev token --sub NAME --roles r1,r2 [--ttl 1h]", stderr)
	sub := fs.String("sub", "", "subject (the caller's id)")
	roles := fs.String("roles", "", "comma-separated roles: ingest, depositor, officer, approver, auditor, admin")
	ttl := fs.Duration("ttl", time.Hour, "lifetime, at most 24h")
	stateDir := fs.String("state-dir", defaultStateDir(), "the dev instance's state dir [MEDIATOR_DEV_STATE_DIR]")
	initIssuer := fs.Bool("init", false, "create the dev issuer key (and its JWKS) in --state-dir if there is none, as deploy/compose does")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *sub == "" {
		return errors.New("dev token: --sub is required")
	}
	load := identity.LoadDevIssuer
	if *initIssuer {
		load = identity.LoadOrCreateDevIssuer
	}
	iss, err := load(*stateDir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("dev token: no dev issuer key in %s: start `mediator dev` first", *stateDir)
		}
		return fmt.Errorf("dev token: %w", err)
	}
	var rs []string
	for _, r := range strings.Split(*roles, ",") {
		if r = strings.TrimSpace(r); r != "" {
			rs = append(rs, r)
		}
	}
	tok, err := iss.Issue(*sub, rs, *ttl)
	if err != nil {
		return fmt.Errorf("dev token: %w", err)
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

func devEnvCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("dev env", "mediator dev env [--state-dir DIR]", stderr)
	stateDir := fs.String("state-dir", defaultStateDir(), "the dev instance's state dir [MEDIATOR_DEV_STATE_DIR]")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if _, alive := runningDevPid(*stateDir); !alive {
		return fmt.Errorf("dev env: no running dev instance with state dir %s: start `mediator dev` first", *stateDir)
	}
	f, err := os.Open(filepath.Join(*stateDir, devEnvFile))
	if err != nil {
		return fmt.Errorf("dev env: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fmt.Fprintln(stdout, sc.Text())
	}
	return sc.Err()
}

// devCheckpointKey returns the path of the dev checkpoint signing key in
// dir, creating it (0600) on first use.
func devCheckpointKey(dir string) (string, error) {
	path := filepath.Join(dir, "dev-checkpoint.key")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	skey, _, err := note.GenerateKey(rand.Reader, defaultLogOrigin)
	if err != nil {
		return "", fmt.Errorf("dev: checkpoint key: %w", err)
	}
	if err := os.WriteFile(path, []byte(skey+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("dev: checkpoint key: %w", err)
	}
	return path, nil
}

// devDatabase names the dev database: mediator_dev for the default state
// dir, and one per other state dir, since each state dir has its own
// checkpoint key and the log in a database must match it.
func devDatabase(stateDir string) string {
	if stateDir == defaultStateDir() {
		return devDBName
	}
	sum := sha256.Sum256([]byte(stateDir))
	return devDBName + "_" + hex.EncodeToString(sum[:4])
}

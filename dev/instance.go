package dev

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/mediatorhq/mediator/audit"
	vaultsetup "github.com/mediatorhq/mediator/deploy/vault"
	"github.com/mediatorhq/mediator/dev/servers"
	"github.com/mediatorhq/mediator/migrations"
	"github.com/mediatorhq/mediator/vaultclient"
)

// LogOrigin is the dev instance's log origin (the service's default).
const LogOrigin = "mediator/audit"

// Files in a dev state directory.
const (
	envFile           = "dev.env"            // export lines for `mediator dev env`, 0600
	pidFile           = "dev.pid"            // the running dev instance's pid
	checkpointKeyFile = "dev-checkpoint.key" // the dev log's signing key, 0600
	databaseMarker    = "dev-database"       // the server and name of the database dev created
	databaseName      = "mediator_dev"
)

// DefaultStateDir is $MEDIATOR_DEV_STATE_DIR, else
// $XDG_STATE_HOME/mediator/dev, else ~/.local/state/mediator/dev.
func DefaultStateDir() string {
	if d := os.Getenv("MEDIATOR_DEV_STATE_DIR"); d != "" {
		return d
	}
	return homeStateDir()
}

// homeStateDir is the state dir of the user's own dev instance, under
// XDG_STATE_HOME or the home directory, whatever MEDIATOR_DEV_STATE_DIR
// says.
func homeStateDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "mediator", "dev")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "mediator-dev")
	}
	return filepath.Join(home, ".local", "state", "mediator", "dev")
}

// Instance is a dev instance's dependencies, up and prepared: PostgreSQL
// with a migrated database, a bootstrapped Vault, the token issuer and the
// checkpoint key, everything `mediator serve` needs to run locally.
type Instance struct {
	StateDir string
	Postgres *servers.Postgres
	Vault    *servers.Vault
	// DatabaseURL is the dev database, migrated.
	DatabaseURL string
	// AppRole is the service's Vault login.
	AppRole vaultsetup.Credentials
	// JWKSPath holds the issuer's public key; tokens name IssuerName and
	// Audience.
	JWKSPath string
	// CheckpointKeyFile signs the dev log's checkpoints; VerifierKey checks
	// them. The dev Vault lives in memory and forgets its keys on every
	// start, but the dev database keeps its log, so the checkpoint key is
	// kept beside the database.
	CheckpointKeyFile string
	VerifierKey       string
	// PseudonymURL and PseudonymTokenFile, once the caller started the
	// dev pseudonym service (PseudonymService), reach it as the dev
	// officer, whose CLI names conversations by their real ids; Publish
	// exports them. PseudonymGatewayTokenFile is the dev gateway's, for
	// its agent.
	PseudonymURL              string
	PseudonymTokenFile        string
	PseudonymGatewayTokenFile string
	// AgentURL, once the caller started the dev agent, is its loopback
	// URL; Publish exports it.
	AgentURL string
	// WitnessesFile, once the caller wrote it, is the service's witness
	// policy (the dev custodians, quorum 3); Publish exports it.
	WitnessesFile string

	keep        bool         // Options.Keep
	ownDatabase string       // the database dev created, which Stop drops unless keep
	log         *slog.Logger // for what Stop does
}

// Options tune Start.
type Options struct {
	// Keep leaves the dev database in place when the instance stops. By
	// default Stop drops the database dev created, on whatever server it
	// found (never one named by DATABASE_URL, nor one it did not create).
	Keep bool
}

// ErrRunning is returned by Start when another dev instance uses the state
// directory.
var ErrRunning = errors.New("dev: another dev instance is running with this state directory")

// Start finds or starts PostgreSQL (its data, if started here, in the state
// directory) and Vault, creates and migrates the dev database, bootstraps
// Vault, and makes the token issuer and checkpoint key if missing. Stop
// stops what it started and, unless opts.Keep, drops the database it
// created.
func Start(ctx context.Context, log *slog.Logger, stateDir string, opts Options) (*Instance, error) {
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("dev: state dir: %w", err)
	}
	if pid, alive := Running(stateDir); alive {
		return nil, fmt.Errorf("%w (pid %d, %s); stop it first", ErrRunning, pid, stateDir)
	}
	in := &Instance{StateDir: stateDir, JWKSPath: JWKSPath(stateDir), keep: opts.Keep, log: log}
	ok := false
	defer func() {
		if !ok {
			in.Stop()
		}
	}()
	var err error
	if in.Postgres, err = servers.StartPostgres(ctx, log, servers.PostgresOptions{DataDir: filepath.Join(stateDir, "postgres")}); err != nil {
		return nil, fmt.Errorf("dev: postgres: %w", err)
	}
	if err := in.openDatabase(ctx); err != nil {
		return nil, err
	}
	if in.Vault, err = servers.StartVault(ctx, log, servers.VaultOptions{}); err != nil {
		return nil, fmt.Errorf("dev: vault: %w", err)
	}
	admin, err := vaultclient.Connect(ctx, log, vaultclient.Config{Addr: in.Vault.Addr, Token: in.Vault.Token})
	if err != nil {
		return nil, fmt.Errorf("dev: %w", err)
	}
	if in.AppRole, err = vaultsetup.Bootstrap(ctx, admin); err != nil {
		return nil, fmt.Errorf("dev: %w", err)
	}
	if err := migrations.Apply(ctx, in.DatabaseURL, log); err != nil {
		return nil, fmt.Errorf("dev: %w", err)
	}
	if _, err := LoadOrCreateIssuer(stateDir); err != nil {
		return nil, err
	}
	if in.CheckpointKeyFile, in.VerifierKey, err = checkpointKey(stateDir); err != nil {
		return nil, err
	}
	ok = true
	return in, nil
}

// Stop stops what Start started, dropping first the database dev
// created unless Options.Keep.
func (in *Instance) Stop() {
	if in.Vault != nil {
		in.Vault.Stop()
	}
	if in.Postgres != nil {
		in.dropDatabase()
		in.Postgres.Stop()
	}
}

// openDatabase sets DatabaseURL: DATABASE_URL's database as it is, else
// the state dir's database on the server found, created if absent. A
// database it creates, or one the state dir's marker says dev created
// there before (kept, or left by a dev that did not stop cleanly), is dev's
// own, for Stop to drop.
func (in *Instance) openDatabase(ctx context.Context) error {
	in.DatabaseURL = in.Postgres.AdminURL
	if in.Postgres.Source == "DATABASE_URL" {
		return nil
	}
	name := databaseFor(in.StateDir)
	dsn, created, err := in.Postgres.EnsureDatabase(ctx, name)
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	in.DatabaseURL = dsn
	mark := databaseMark(in.Postgres.AdminURL, name)
	marker := filepath.Join(in.StateDir, databaseMarker)
	if created {
		if err := os.WriteFile(marker, []byte(mark+"\n"), 0o600); err != nil {
			return fmt.Errorf("dev: %w", err)
		}
	}
	if b, err := os.ReadFile(marker); err == nil && strings.TrimSpace(string(b)) == mark {
		in.ownDatabase = name
	}
	return nil
}

// dropDatabase drops the database dev created, unless keep, and forgets
// it. A failure is logged: the database is left for the next dev to drop.
func (in *Instance) dropDatabase() {
	name := in.ownDatabase
	if name == "" || in.keep {
		return
	}
	in.ownDatabase = ""
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := in.Postgres.DropDatabase(ctx, name); err != nil {
		in.logger().Warn("dev: the dev database is left behind", "database", name, "err", err)
		return
	}
	os.Remove(filepath.Join(in.StateDir, databaseMarker))
	in.logger().Info("dev: dropped the dev database (--keep keeps it)", "database", name)
}

func (in *Instance) logger() *slog.Logger {
	if in.log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return in.log
}

// databaseMark names database name on the server adminURL reaches
// (host:port/name) in the state dir's marker: a database of that name on
// another server is not the one dev created.
func databaseMark(adminURL, name string) string {
	host := adminURL
	if u, err := url.Parse(adminURL); err == nil {
		host = u.Host
	}
	return host + "/" + name
}

// Secrets lists the instance's secret values, for a log mask: the Vault
// root token, the AppRole secret id and any password in the database URL.
func (in *Instance) Secrets() []string {
	out := []string{in.AppRole.SecretID}
	if in.Vault != nil {
		out = append(out, in.Vault.Token)
	}
	if u, err := url.Parse(in.DatabaseURL); err == nil && u.User != nil {
		if p, ok := u.User.Password(); ok {
			out = append(out, p)
		}
	}
	return out
}

// Publish records how to reach the running instance, serving at addr (an
// http:// URL) with custodianSet the digest of its custodian set and
// rosterGenesis the digest of its genesis roster: the env file `mediator
// dev env` prints (0600: it holds the dev Vault's root token) and the pid
// file. Unpublish removes both.
func (in *Instance) Publish(addr, custodianSet, rosterGenesis string) error {
	vars := [][2]string{
		// So the CLI reaches the dev pseudonym service as the dev officer.
		{"MEDIATOR_PSEUDONYM_URL", in.PseudonymURL},
		{"MEDIATOR_PSEUDONYM_TOKEN_FILE", in.PseudonymTokenFile},
		// So gateways (and the README's curl examples) go through the agent.
		{"MEDIATOR_AGENT_URL", in.AgentURL},
		{"DATABASE_URL", in.DatabaseURL},
		{"VAULT_ADDR", in.Vault.Addr},
		{"VAULT_TOKEN", in.Vault.Token},
		{"MEDIATOR_ADDR", addr},
		// So `mediator audit verify` works after `eval "$(mediator dev env)"`.
		{"MEDIATOR_VERIFIER_KEY", in.VerifierKey},
		// So `mediator escrow deposit` seals to the dev custodians.
		{"MEDIATOR_CUSTODIAN_SET", custodianSet},
		// So depositors and approvers verify the roster chain from it.
		{"MEDIATOR_ROSTER_GENESIS", rosterGenesis},
		// So `mediator audit verify` checks the cosignatures too.
		{"MEDIATOR_WITNESSES", absPath(in.WitnessesFile)},
	}
	// So the dev approvers and officer sign with --key "$MEDIATOR_DEV_LEGAL_KEY"
	// and the like, whatever the state directory.
	for _, a := range devApprovers {
		vars = append(vars, [2]string{KeyVar(a.id), absPath(filepath.Join(in.StateDir, a.id+".key"))})
	}
	var b strings.Builder
	for _, kv := range vars {
		if kv[1] == "" {
			continue
		}
		fmt.Fprintf(&b, "export %s=%s\n", kv[0], shellQuote(kv[1]))
	}
	if err := os.WriteFile(filepath.Join(in.StateDir, envFile), []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("dev: write env file: %w", err)
	}
	if err := os.WriteFile(filepath.Join(in.StateDir, pidFile), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		return fmt.Errorf("dev: write pid file: %w", err)
	}
	return nil
}

// KeyVar is the variable `mediator dev env` exports with the path of the
// signing key of dev approver (or officer) id: MEDIATOR_DEV_LEGAL_KEY for
// dev-legal.
func KeyVar(id string) string {
	return "MEDIATOR_" + strings.ToUpper(strings.ReplaceAll(id, "-", "_")) + "_KEY"
}

// absPath is path made absolute, so an exported path holds from any
// directory; "" stays "".
func absPath(path string) string {
	if path == "" {
		return ""
	}
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return path
}

// Unpublish removes what Publish wrote.
func (in *Instance) Unpublish() {
	os.Remove(filepath.Join(in.StateDir, envFile))
	os.Remove(filepath.Join(in.StateDir, pidFile))
}

// Running returns the pid recorded in stateDir and whether it is alive.
func Running(stateDir string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(stateDir, pidFile))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, syscall.Kill(pid, 0) == nil
}

// EnvLines returns the export lines of the instance running with stateDir.
func EnvLines(stateDir string) ([]string, error) {
	if _, alive := Running(stateDir); !alive {
		return nil, fmt.Errorf("dev: no running dev instance with state dir %s: start `mediator dev` first", stateDir)
	}
	b, err := os.ReadFile(filepath.Join(stateDir, envFile))
	if err != nil {
		return nil, fmt.Errorf("dev: %w", err)
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines, sc.Err()
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// checkpointKey returns the path of the dev checkpoint signing key in dir,
// creating it (0600) on first use, and its verifier key.
func checkpointKey(dir string) (path, vkey string, err error) {
	path = filepath.Join(dir, checkpointKeyFile)
	skey, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		s, _, gerr := note.GenerateKey(rand.Reader, LogOrigin)
		if gerr != nil {
			return "", "", fmt.Errorf("dev: checkpoint key: %w", gerr)
		}
		skey = []byte(s + "\n")
		err = os.WriteFile(path, skey, 0o600)
	}
	if err != nil {
		return "", "", fmt.Errorf("dev: checkpoint key: %w", err)
	}
	key, err := audit.ParseCheckpointKey(string(skey), LogOrigin)
	if err != nil {
		return "", "", fmt.Errorf("dev: %w", err)
	}
	return path, key.VerifierKey(), nil
}

// databaseFor names the dev database: mediator_dev for the user's own
// state dir, and one per other state dir (MEDIATOR_DEV_STATE_DIR or
// --state-dir), since each state dir has its own checkpoint key and the
// log in a database must match it.
func databaseFor(stateDir string) string {
	if stateDir == homeStateDir() {
		return databaseName
	}
	sum := sha256.Sum256([]byte(stateDir))
	return databaseName + "_" + hex.EncodeToString(sum[:4])
}

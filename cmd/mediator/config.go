package main

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/mediatorhq/mediator/api"
	"github.com/mediatorhq/mediator/secretfile"
	"github.com/mediatorhq/mediator/stats"
	"github.com/mediatorhq/mediator/vaultclient"
)

// serveConfig is everything `mediator serve` is configured with. Each field
// has a flag and a MEDIATOR_* environment variable (README, "Configuration");
// a flag wins over the variable, which wins over the default.
type serveConfig struct {
	Addr            string
	DatabaseURL     string
	DatabaseURLFile string
	VaultAddr       string
	VaultToken      string
	VaultTokenFile  string
	VaultRoleID     string
	VaultRoleIDFile string
	VaultSecretID   string
	VaultSecretFile string
	JWTIssuer       string
	JWTAudience     string
	JWKS            string
	PolicyDir       string
	LogLevel        string
	ShutdownTimeout time.Duration

	LogOrigin         string
	CheckpointKeyFile string
	// CheckpointPreviousKeys are verifier keys that signed checkpoints
	// before a rotation of a key file.
	CheckpointPreviousKeys stringList
	CheckpointInterval     time.Duration
	RedactionProfile       string
	Custodians             string
	JWKSMaxAge             time.Duration
	Witnesses              string
	MetricsAddr            string
	RosterGenesis          string
	Webhooks               string
	LivenessWindow         time.Duration
	LivenessInterval       time.Duration
	ProposalWait           time.Duration
	EscrowRetention        time.Duration
	StatsMinGroup          int
	Limits                 api.Limits
	PseudonymKeyMaxAge     time.Duration
}

// defaultStatsMinGroup is k for the SOC stats: no group or count of fewer
// events is reported.
const defaultStatsMinGroup = 10

// defaultLogOrigin names the log in checkpoints and its verifier key. Give
// each deployment its own (e.g. "mediator.example.com/audit").
const defaultLogOrigin = "mediator/audit"

// env returns the first non-empty environment variable of names, or def.
func env(def string, names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return def
}

func envDuration(def time.Duration, name string) time.Duration {
	if v := os.Getenv(name); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return def
}

// databaseURL is dsn, or when it is empty the content of the file named
// by MEDIATOR_DATABASE_URL_FILE (how Vault Agent and Kubernetes hand it
// over): the operator commands take the URL the way serve does.
func databaseURL(dsn string) (string, error) {
	if dsn != "" {
		return dsn, nil
	}
	if f := os.Getenv("MEDIATOR_DATABASE_URL_FILE"); f != "" {
		return secretfile.Read(f)
	}
	return "", nil
}

// defaultLimits are the per-identity request rates. Ingest requests carry
// up to 10,000 events each, so 200 requests/s per gateway is far above any
// real gateway and still stops a flood of tiny requests; people file,
// approve and release a few times a minute.
//
// Ingest is also limited in bytes: per identity 64 MiB/s with bursts of
// 128 MiB (a loaded gateway sends about 35 MB/s), and service-wide 48 MiB
// of bodies in flight. A body costs the service several times its size
// until it is answered (decoded events, pseudonyms, leaves, the COPY), so
// the budget, not the number of gateways, bounds ingest memory
// (docs/reliability.md, "Memory").
var defaultLimits = api.Limits{
	Ingest:              api.Limit{Rate: 200, Burst: 400},
	IngestBytes:         api.Limit{Rate: 64 << 20, Burst: 128 << 20},
	IngestInFlightBytes: 48 << 20,
	Access:              api.Limit{Rate: 5, Burst: 20},
}

func envFloat(def float64, name string) float64 {
	if v := os.Getenv(name); v != "" {
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			return f
		}
	}
	return def
}

func envInt(def int, name string) int {
	if v := os.Getenv(name); v != "" {
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
	}
	return def
}

// bindServeFlags declares the serve flags on fs, with defaults from the
// environment.
func bindServeFlags(fs *flag.FlagSet, c *serveConfig) {
	fs.StringVar(&c.Addr, "addr", env("127.0.0.1:8080", "MEDIATOR_ADDR"), "listen address, host:port (an http:// URL is accepted) [MEDIATOR_ADDR]")
	fs.StringVar(&c.DatabaseURL, "database-url", env("", "MEDIATOR_DATABASE_URL", "DATABASE_URL"), "PostgreSQL URL [MEDIATOR_DATABASE_URL, DATABASE_URL]")
	fs.StringVar(&c.DatabaseURLFile, "database-url-file", env("", "MEDIATOR_DATABASE_URL_FILE"), "file holding the PostgreSQL URL, instead of --database-url (a Vault Agent or Kubernetes secret file) [MEDIATOR_DATABASE_URL_FILE]")
	fs.StringVar(&c.VaultAddr, "vault-addr", env("", "MEDIATOR_VAULT_ADDR", "VAULT_ADDR"), "Vault address [MEDIATOR_VAULT_ADDR, VAULT_ADDR]")
	fs.StringVar(&c.VaultToken, "vault-token", "", "Vault token; prefer the environment or --vault-token-file, since flags are visible to other users [MEDIATOR_VAULT_TOKEN, VAULT_TOKEN]")
	fs.StringVar(&c.VaultTokenFile, "vault-token-file", env("", "MEDIATOR_VAULT_TOKEN_FILE"), "file holding the Vault token [MEDIATOR_VAULT_TOKEN_FILE]")
	fs.StringVar(&c.VaultRoleID, "vault-role-id", env("", "MEDIATOR_VAULT_ROLE_ID"), "Vault AppRole role id [MEDIATOR_VAULT_ROLE_ID]")
	fs.StringVar(&c.VaultRoleIDFile, "vault-role-id-file", env("", "MEDIATOR_VAULT_ROLE_ID_FILE"), "file holding the AppRole role id, instead of --vault-role-id [MEDIATOR_VAULT_ROLE_ID_FILE]")
	fs.StringVar(&c.VaultSecretFile, "vault-secret-id-file", env("", "MEDIATOR_VAULT_SECRET_ID_FILE"), "file holding the Vault AppRole secret id [MEDIATOR_VAULT_SECRET_ID_FILE; or the secret itself in MEDIATOR_VAULT_SECRET_ID]")
	fs.StringVar(&c.JWTIssuer, "jwt-issuer", env("", "MEDIATOR_JWT_ISSUER"), "required JWT iss [MEDIATOR_JWT_ISSUER]")
	fs.StringVar(&c.JWTAudience, "jwt-audience", env("", "MEDIATOR_JWT_AUDIENCE"), "required JWT aud [MEDIATOR_JWT_AUDIENCE]")
	fs.StringVar(&c.JWKS, "jwt-jwks", env("", "MEDIATOR_JWT_JWKS"), "JWKS file path or https:// URL with the token signing keys [MEDIATOR_JWT_JWKS]")
	fs.StringVar(&c.PolicyDir, "policy-dir", env("", "MEDIATOR_POLICY_DIR"), "directory of Rego policies replacing the embedded ones [MEDIATOR_POLICY_DIR]")
	fs.StringVar(&c.LogLevel, "log-level", env("info", "MEDIATOR_LOG_LEVEL"), "debug, info, warn or error [MEDIATOR_LOG_LEVEL]")
	fs.StringVar(&c.LogOrigin, "log-origin", env(defaultLogOrigin, "MEDIATOR_LOG_ORIGIN"), "the audit log's origin line in checkpoints, also the checkpoint key name [MEDIATOR_LOG_ORIGIN]")
	fs.StringVar(&c.CheckpointKeyFile, "checkpoint-key-file", env("", "MEDIATOR_CHECKPOINT_KEY_FILE"), "note signer key file for checkpoints; default: the Vault Transit key mediator-checkpoint [MEDIATOR_CHECKPOINT_KEY_FILE]")
	_ = c.CheckpointPreviousKeys.Set(env("", "MEDIATOR_CHECKPOINT_PREVIOUS_KEYS"))
	fs.Var(&c.CheckpointPreviousKeys, "checkpoint-previous-keys", "comma-separated note verifier keys that signed this log's checkpoints before the key file was rotated (Transit rotations are found by themselves) [MEDIATOR_CHECKPOINT_PREVIOUS_KEYS]")
	fs.DurationVar(&c.CheckpointInterval, "checkpoint-interval", envDuration(time.Second, "MEDIATOR_CHECKPOINT_INTERVAL"), "how often to sign a checkpoint when the log grew [MEDIATOR_CHECKPOINT_INTERVAL]")
	fs.StringVar(&c.RedactionProfile, "redaction-profile", env("", "MEDIATOR_REDACTION_PROFILE"), "JSON minimization profile file; default: docs/redaction.md defaults [MEDIATOR_REDACTION_PROFILE]")
	fs.StringVar(&c.Custodians, "custodians", env("", "MEDIATOR_CUSTODIANS"), "custodians file: the custodian set (names, URLs, token files, public keys) deposits are sealed to (docs/custodians.md); without it, escrow answers 503 [MEDIATOR_CUSTODIANS]")
	fs.DurationVar(&c.JWKSMaxAge, "jwks-max-age", envDuration(time.Hour, "MEDIATOR_JWKS_MAX_AGE"), "with a JWKS URL: how old the last good key set may grow while the provider fails before no token verifies (fail closed); it is refreshed in the background every 5 min [MEDIATOR_JWKS_MAX_AGE]")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", env("", "MEDIATOR_METRICS_ADDR"), "a separate listener serving only /metrics without a token; bind it to a private address (otherwise /metrics needs a token of the metrics role) [MEDIATOR_METRICS_ADDR]")
	fs.StringVar(&c.Witnesses, "witnesses", env("", "MEDIATOR_WITNESSES"), "witnesses file: the quorum and the witnesses (name, URL, cosignature verifier key) that must cosign a checkpoint before it is published (docs/audit.md) [MEDIATOR_WITNESSES]")
	fs.StringVar(&c.RosterGenesis, "roster-genesis", env("", "MEDIATOR_ROSTER_GENESIS"), "the sha256: digest of the roster's first version; only a chain that verifies from it names approvers (docs/access.md) [MEDIATOR_ROSTER_GENESIS]")
	fs.StringVar(&c.Webhooks, "webhooks", env("", "MEDIATOR_WEBHOOKS"), "webhooks file: URLs and secret files that receive signed workflow events (docs/operations.md) [MEDIATOR_WEBHOOKS]")
	fs.DurationVar(&c.LivenessWindow, "liveness-window", envDuration(7*24*time.Hour, "MEDIATOR_LIVENESS_WINDOW"), "an approver who checked in within this window counts as live [MEDIATOR_LIVENESS_WINDOW]")
	fs.DurationVar(&c.LivenessInterval, "liveness-interval", envDuration(time.Minute, "MEDIATOR_LIVENESS_INTERVAL"), "how often approver liveness is computed [MEDIATOR_LIVENESS_INTERVAL]")
	fs.DurationVar(&c.ProposalWait, "roster-proposal-wait", envDuration(72*time.Hour, "MEDIATOR_ROSTER_PROPOSAL_WAIT"), "a roster proposal waiting longer than this for signatures is notified [MEDIATOR_ROSTER_PROPOSAL_WAIT]")
	fs.DurationVar(&c.EscrowRetention, "escrow-retention", envDuration(0, "MEDIATOR_ESCROW_RETENTION"), "destroy escrowed keys this long after deposit, hourly, except under legal hold; 0 keeps them [MEDIATOR_ESCROW_RETENTION]")
	fs.IntVar(&c.StatsMinGroup, "stats-min-group", envInt(defaultStatsMinGroup, "MEDIATOR_STATS_MIN_GROUP"), "k: the SOC stats never report a group or count of fewer events [MEDIATOR_STATS_MIN_GROUP]")
	fs.Float64Var(&c.Limits.Ingest.Rate, "rate-ingest", envFloat(defaultLimits.Ingest.Rate, "MEDIATOR_RATE_INGEST"), "ingest requests per second per identity; 0 for no limit [MEDIATOR_RATE_INGEST]")
	fs.IntVar(&c.Limits.Ingest.Burst, "rate-ingest-burst", envInt(defaultLimits.Ingest.Burst, "MEDIATOR_RATE_INGEST_BURST"), "ingest requests one identity may send at once [MEDIATOR_RATE_INGEST_BURST]")
	fs.Float64Var(&c.Limits.IngestBytes.Rate, "rate-ingest-bytes", envFloat(defaultLimits.IngestBytes.Rate, "MEDIATOR_RATE_INGEST_BYTES"), "ingest body bytes per second per identity; 0 for no limit [MEDIATOR_RATE_INGEST_BYTES]")
	fs.IntVar(&c.Limits.IngestBytes.Burst, "rate-ingest-burst-bytes", envInt(defaultLimits.IngestBytes.Burst, "MEDIATOR_RATE_INGEST_BURST_BYTES"), "ingest body bytes one identity may send at once, at least one 8 MiB body [MEDIATOR_RATE_INGEST_BURST_BYTES]")
	fs.Int64Var(&c.Limits.IngestInFlightBytes, "ingest-inflight-bytes", int64(envInt(int(defaultLimits.IngestInFlightBytes), "MEDIATOR_INGEST_INFLIGHT_BYTES")), "service-wide budget of ingest body bytes being processed at once; a request finding no room within 2 s gets 503 overloaded; 0 for none [MEDIATOR_INGEST_INFLIGHT_BYTES]")
	fs.Float64Var(&c.Limits.Access.Rate, "rate-access", envFloat(defaultLimits.Access.Rate, "MEDIATOR_RATE_ACCESS"), "lawful-access writes (requests, approvals, releases, roster proposals, signatures and check-ins) per second per identity; 0 for no limit [MEDIATOR_RATE_ACCESS]")
	fs.IntVar(&c.Limits.Access.Burst, "rate-access-burst", envInt(defaultLimits.Access.Burst, "MEDIATOR_RATE_ACCESS_BURST"), "lawful-access writes one identity may send at once [MEDIATOR_RATE_ACCESS_BURST]")
	fs.DurationVar(&c.PseudonymKeyMaxAge, "pseudonym-key-max-age", envDuration(time.Hour, "MEDIATOR_PSEUDONYM_KEY_MAX_AGE"), "how long ingest keeps pseudonymizing with the cached key while Vault is unreachable, then refuses (503) [MEDIATOR_PSEUDONYM_KEY_MAX_AGE]")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", envDuration(30*time.Second, "MEDIATOR_SHUTDOWN_TIMEOUT"), "how long to drain in-flight requests on SIGTERM [MEDIATOR_SHUTDOWN_TIMEOUT]")
}

// resolve completes the configuration after flags are parsed: the
// database URL from its file, and the Vault credentials from the
// environment. Vault credentials in files are read by vaultclient.
func (c *serveConfig) resolve() error {
	if c.DatabaseURL == "" && c.DatabaseURLFile != "" {
		u, err := secretfile.Read(c.DatabaseURLFile)
		if err != nil {
			return fmt.Errorf("--database-url-file: %w", err)
		}
		c.DatabaseURL = u
	}
	if c.VaultToken == "" {
		c.VaultToken = env("", "MEDIATOR_VAULT_TOKEN")
	}
	if c.VaultSecretID == "" {
		c.VaultSecretID = env("", "MEDIATOR_VAULT_SECRET_ID")
	}
	// Secrets in files are read here, so the log mask knows them; the
	// token file is also handed on, for vaultclient to follow.
	for _, f := range []struct {
		value      *string
		file, flag string
	}{{&c.VaultToken, c.VaultTokenFile, "--vault-token-file"}, {&c.VaultRoleID, c.VaultRoleIDFile, "--vault-role-id-file"},
		{&c.VaultSecretID, c.VaultSecretFile, "--vault-secret-id-file"}} {
		if *f.value == "" && f.file != "" {
			v, err := secretfile.Read(f.file)
			if err != nil {
				return fmt.Errorf("%s: %w", f.flag, err)
			}
			*f.value = v
		}
	}
	// VAULT_TOKEN is the Vault CLI's own variable: used only when no AppRole
	// is configured, so an operator's shell token never overrides the role.
	if c.VaultToken == "" && c.VaultRoleID == "" {
		c.VaultToken = env("", "VAULT_TOKEN")
	}
	return nil
}

// vault is the Vault connection's configuration.
func (c *serveConfig) vault(metrics *vaultclient.Metrics) vaultclient.Config {
	vc := vaultclient.Config{Addr: c.VaultAddr, Token: c.VaultToken, RoleID: c.VaultRoleID, SecretID: c.VaultSecretID, Metrics: metrics}
	if c.VaultTokenFile != "" && c.VaultRoleID == "" {
		vc.TokenFile = c.VaultTokenFile
	}
	return vc
}

// validate reports every missing or malformed setting at once.
func (c *serveConfig) validate() error {
	var errs []error
	if c.DatabaseURL == "" {
		errs = append(errs, errors.New("--database-url (or MEDIATOR_DATABASE_URL / DATABASE_URL) is required"))
	}
	if c.VaultAddr == "" {
		errs = append(errs, errors.New("--vault-addr (or MEDIATOR_VAULT_ADDR / VAULT_ADDR) is required"))
	}
	if c.JWTIssuer == "" || c.JWTAudience == "" || c.JWKS == "" {
		errs = append(errs, errors.New("--jwt-issuer, --jwt-audience and --jwt-jwks are all required"))
	}
	if c.StatsMinGroup < stats.MinK {
		errs = append(errs, fmt.Errorf("--stats-min-group must be at least %d", stats.MinK))
	}
	if c.CheckpointInterval <= 0 {
		errs = append(errs, errors.New("--checkpoint-interval must be positive"))
	}
	if _, err := listenAddr(c.Addr); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// secrets lists the configured secret values, for the log mask.
func (c *serveConfig) secrets() []string {
	return append([]string{c.VaultToken, c.VaultSecretID}, dsnSecrets(c.DatabaseURL)...)
}

// listenAddr accepts host:port or an http:// URL (the form `mediator dev env`
// exports, so one MEDIATOR_ADDR serves clients and the server alike).
func listenAddr(s string) (string, error) {
	if strings.HasPrefix(s, "http://") {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return "", fmt.Errorf("bad listen address %q", s)
		}
		return u.Host, nil
	}
	if strings.Contains(s, "://") || !strings.Contains(s, ":") {
		return "", fmt.Errorf("bad listen address %q: want host:port", s)
	}
	return s, nil
}

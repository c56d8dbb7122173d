package main

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/mediatorhq/mediator/api"
	"github.com/mediatorhq/mediator/secretfile"
	"github.com/mediatorhq/mediator/stats"
	"github.com/mediatorhq/mediator/vaultclient"
)

// serveConfig is everything `mediator serve` is configured with. Its
// table, serveSettings, gives each field a flag and MEDIATOR_* environment
// variables (README, "Configuration"); a flag wins over the variables,
// which win over the default.
type serveConfig struct {
	Addr            string
	DatabaseURL     string
	DatabaseURLFile string
	// DatabaseReadURL, if set, serves the log's reads that may lag (a
	// standby); DatabaseURL serves everything else.
	DatabaseReadURL     string
	DatabaseReadURLFile string
	VaultAddr           string
	VaultToken          string
	VaultTokenFile      string
	VaultRoleID         string
	VaultRoleIDFile     string
	VaultSecretID       string
	VaultSecretFile     string
	JWTIssuer           string
	JWTAudience         string
	JWKS                string
	PolicyDir           string
	LogLevel            string
	ShutdownTimeout     time.Duration

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
	EscrowReconcile        time.Duration
	StatsMinGroup          int
	Limits                 api.Limits
}

// defaultStatsMinGroup is k for the SOC stats: no group or count of fewer
// events is reported.
const defaultStatsMinGroup = 10

// defaultLogOrigin names the log in checkpoints and its verifier key. Give
// each deployment its own (e.g. "mediator.example.com/audit").
const defaultLogOrigin = "mediator/audit"

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
	Deposit:             api.Limit{Rate: 50, Burst: 500},
	// Tile readers: 200 tiles a second for all of them kept four readers'
	// cost to ingest at 4–5 % on 2 cores (docs/performance.md); one
	// reader may have half of it, so a regulator's full download of a
	// 10 M-entry log (some 78,000 tiles and bundles) takes 13 minutes.
	Tiles:        api.Limit{Rate: 100, Burst: 200},
	TilesService: api.Limit{Rate: 200, Burst: 400},
}

// loadServeConfig reads serve's configuration from args and the
// environment, completes it (resolve) and checks it (validate): a
// configuration it returns is whole.
func loadServeConfig(c *call, args []string) (serveConfig, error) {
	var cfg serveConfig
	var vaultCLIToken string
	if err := c.newFlags(serveSettings(&cfg, &vaultCLIToken)...).Parse(args); err != nil {
		return serveConfig{}, err
	}
	if err := cfg.resolve(vaultCLIToken); err != nil {
		return serveConfig{}, err
	}
	if err := cfg.validate(); err != nil {
		return serveConfig{}, fmt.Errorf("configuration:\n%w", err)
	}
	return cfg, nil
}

// serveSettings is the table of serve's settings, bound to c. The Vault
// CLI's own VAULT_TOKEN goes to vaultCLIToken: resolve uses it only when
// no AppRole is configured.
func serveSettings(c *serveConfig, vaultCLIToken *string) []setting {
	return concat(serveConnectionSettings(c, vaultCLIToken), serveLogSettings(c), serveWorkflowSettings(c), serveLimitSettings(c))
}

// serveConnectionSettings are where serve listens and what it connects
// to: PostgreSQL, Vault, the token issuer.
func serveConnectionSettings(c *serveConfig, vaultCLIToken *string) []setting {
	return []setting{
		{flag: "addr", env: vars("MEDIATOR_ADDR"), value: listenAddress(&c.Addr, "127.0.0.1:8080"),
			usage: "listen address, host:port (an http:// URL is accepted)"},
		databaseURLSetting(&c.DatabaseURL, "PostgreSQL URL"),
		databaseURLFileSetting(&c.DatabaseURLFile),
		{flag: "database-read-url", env: vars("MEDIATOR_DATABASE_READ_URL"), value: text(&c.DatabaseReadURL, ""), secret: true,
			usage: "PostgreSQL URL for the log's reads that may lag: the published checkpoint, entries, searches, proofs, bundles, tiles, statistics (a standby: target_session_attrs=prefer-standby); empty: the database URL"},
		{flag: "database-read-url-file", env: vars("MEDIATOR_DATABASE_READ_URL_FILE"), value: text(&c.DatabaseReadURLFile, ""),
			usage: "file holding the read URL, instead of --database-read-url"},
		{flag: "vault-addr", env: vars("MEDIATOR_VAULT_ADDR", "VAULT_ADDR"), value: text(&c.VaultAddr, ""), usage: "Vault address"},
		{flag: "vault-token", env: vars("MEDIATOR_VAULT_TOKEN"), envNote: "then VAULT_TOKEN when no AppRole is configured", value: text(&c.VaultToken, ""), secret: true,
			usage: "Vault token; prefer the environment or --vault-token-file, since flags are visible to other users"},
		{env: vars("VAULT_TOKEN"), value: text(vaultCLIToken, ""), secret: true,
			usage: "the Vault CLI's token: used only when no other Vault token (flag, variable or file) and no AppRole is configured"},
		{flag: "vault-token-file", env: vars("MEDIATOR_VAULT_TOKEN_FILE"), value: text(&c.VaultTokenFile, ""), usage: "file holding the Vault token"},
		{flag: "vault-role-id", env: vars("MEDIATOR_VAULT_ROLE_ID"), value: text(&c.VaultRoleID, ""), usage: "Vault AppRole role id"},
		{flag: "vault-role-id-file", env: vars("MEDIATOR_VAULT_ROLE_ID_FILE"), value: text(&c.VaultRoleIDFile, ""),
			usage: "file holding the AppRole role id, instead of --vault-role-id"},
		{env: vars("MEDIATOR_VAULT_SECRET_ID"), value: text(&c.VaultSecretID, ""), secret: true,
			usage: "the Vault AppRole secret id itself, instead of --vault-secret-id-file"},
		{flag: "vault-secret-id-file", env: vars("MEDIATOR_VAULT_SECRET_ID_FILE"), envNote: "or the secret itself in MEDIATOR_VAULT_SECRET_ID",
			value: text(&c.VaultSecretFile, ""), usage: "file holding the Vault AppRole secret id"},
		{flag: "jwt-issuer", env: vars("MEDIATOR_JWT_ISSUER"), value: text(&c.JWTIssuer, ""), usage: "required JWT iss"},
		{flag: "jwt-audience", env: vars("MEDIATOR_JWT_AUDIENCE"), value: text(&c.JWTAudience, ""), usage: "required JWT aud"},
		{flag: "jwt-jwks", env: vars("MEDIATOR_JWT_JWKS"), value: text(&c.JWKS, ""), usage: "JWKS file path or https:// URL with the token signing keys"},
		{flag: "jwks-max-age", env: vars("MEDIATOR_JWKS_MAX_AGE"), value: duration(&c.JWKSMaxAge, time.Hour),
			usage: "with a JWKS URL: how old the last good key set may grow while the provider fails before no token verifies (fail closed); it is refreshed in the background every 5 min"},
		{flag: "metrics-addr", env: vars("MEDIATOR_METRICS_ADDR"), value: hostPort(&c.MetricsAddr, ""),
			usage: "a separate listener serving only /metrics without a token; bind it to a private address (otherwise /metrics needs a token of the metrics role)"},
		{flag: "shutdown-timeout", env: vars("MEDIATOR_SHUTDOWN_TIMEOUT"), value: duration(&c.ShutdownTimeout, 30*time.Second),
			usage: "how long to drain in-flight requests on SIGTERM"},
	}
}

// serveLogSettings are the service's own log and the audit log's
// checkpoints.
func serveLogSettings(c *serveConfig) []setting {
	return []setting{
		logLevelSetting(&c.LogLevel),
		logOriginSetting(&c.LogOrigin, "the audit log's origin line in checkpoints, also the checkpoint key name"),
		{flag: "checkpoint-key-file", env: vars("MEDIATOR_CHECKPOINT_KEY_FILE"), value: text(&c.CheckpointKeyFile, ""),
			usage: "note signer key file for checkpoints; default: the Vault Transit key mediator-checkpoint"},
		{flag: "checkpoint-previous-keys", env: vars("MEDIATOR_CHECKPOINT_PREVIOUS_KEYS"), value: verifierKeys(&c.CheckpointPreviousKeys),
			usage: "comma-separated note verifier keys that signed this log's checkpoints before the key file was rotated (Transit rotations are found by themselves)"},
		{flag: "checkpoint-interval", env: vars("MEDIATOR_CHECKPOINT_INTERVAL"), value: duration(&c.CheckpointInterval, time.Second),
			usage: "how often to sign a checkpoint when the log grew"},
		witnessesSetting(&c.Witnesses, "witnesses file: the quorum and the witnesses (name, URL, cosignature verifier key) that must cosign a checkpoint before it is published (docs/audit.md)"),
		{flag: "redaction-profile", env: vars("MEDIATOR_REDACTION_PROFILE"), value: text(&c.RedactionProfile, ""),
			usage: "JSON minimization profile file; default: docs/redaction.md defaults"},
		{flag: "stats-min-group", env: vars("MEDIATOR_STATS_MIN_GROUP"), value: integer(&c.StatsMinGroup, defaultStatsMinGroup),
			usage: "k: the SOC stats never report a group or count of fewer events"},
	}
}

// serveWorkflowSettings are escrow, the roster, policies and the
// workflow's timing.
func serveWorkflowSettings(c *serveConfig) []setting {
	return []setting{
		{flag: "policy-dir", env: vars("MEDIATOR_POLICY_DIR"), value: text(&c.PolicyDir, ""), usage: "directory of Rego policies replacing the embedded ones"},
		custodiansSetting(&c.Custodians),
		{flag: "roster-genesis", env: vars("MEDIATOR_ROSTER_GENESIS"), value: rosterDigest(&c.RosterGenesis),
			usage: "the sha256: digest of the roster's first version; only a chain that verifies from it names approvers (docs/access.md)"},
		{flag: "webhooks", env: vars("MEDIATOR_WEBHOOKS"), value: text(&c.Webhooks, ""),
			usage: "webhooks file: URLs and secret files that receive signed workflow events (docs/operations.md)"},
		{flag: "liveness-window", env: vars("MEDIATOR_LIVENESS_WINDOW"), value: duration(&c.LivenessWindow, 7*24*time.Hour),
			usage: "an approver who checked in within this window counts as live"},
		{flag: "liveness-interval", env: vars("MEDIATOR_LIVENESS_INTERVAL"), value: duration(&c.LivenessInterval, time.Minute),
			usage: "how often approver liveness is computed"},
		{flag: "roster-proposal-wait", env: vars("MEDIATOR_ROSTER_PROPOSAL_WAIT"), value: duration(&c.ProposalWait, 72*time.Hour),
			usage: "a roster proposal waiting longer than this for signatures is notified"},
		{flag: "escrow-reconcile", env: vars("MEDIATOR_ESCROW_RECONCILE"), value: duration(&c.EscrowReconcile, 15*time.Minute),
			usage: "how often to compare each custodian's signed inventory of the last 24h with the escrows recorded (orphans, silent aborts; 0 turns it off)"},
		{flag: "escrow-retention", env: vars("MEDIATOR_ESCROW_RETENTION"), value: duration(&c.EscrowRetention, 0),
			usage: "destroy escrowed keys this long after deposit, hourly, except under legal hold; 0 keeps them"},
	}
}

// serveLimitSettings are the request rates and the ingest byte budget.
func serveLimitSettings(c *serveConfig) []setting {
	l, d := &c.Limits, defaultLimits
	return []setting{
		{flag: "rate-ingest", env: vars("MEDIATOR_RATE_INGEST"), value: number(&l.Ingest.Rate, d.Ingest.Rate),
			usage: "ingest requests per second per identity; 0 for no limit"},
		{flag: "rate-ingest-burst", env: vars("MEDIATOR_RATE_INGEST_BURST"), value: integer(&l.Ingest.Burst, d.Ingest.Burst),
			usage: "ingest requests one identity may send at once"},
		{flag: "rate-ingest-bytes", env: vars("MEDIATOR_RATE_INGEST_BYTES"), value: number(&l.IngestBytes.Rate, d.IngestBytes.Rate),
			usage: "ingest body bytes per second per identity; 0 for no limit"},
		{flag: "rate-ingest-burst-bytes", env: vars("MEDIATOR_RATE_INGEST_BURST_BYTES"), value: integer(&l.IngestBytes.Burst, d.IngestBytes.Burst),
			usage: "ingest body bytes one identity may send at once, at least one 8 MiB body"},
		{flag: "ingest-inflight-bytes", env: vars("MEDIATOR_INGEST_INFLIGHT_BYTES"), value: integer64(&l.IngestInFlightBytes, d.IngestInFlightBytes),
			usage: "service-wide budget of ingest body bytes being processed at once; a request finding no room within 2 s gets 503 overloaded; 0 for none"},
		{flag: "rate-access", env: vars("MEDIATOR_RATE_ACCESS"), value: number(&l.Access.Rate, d.Access.Rate),
			usage: "lawful-access writes (requests, approvals, releases, roster proposals, signatures and check-ins) per second per identity; 0 for no limit"},
		{flag: "rate-access-burst", env: vars("MEDIATOR_RATE_ACCESS_BURST"), value: integer(&l.Access.Burst, d.Access.Burst),
			usage: "lawful-access writes one identity may send at once"},
		{flag: "rate-deposit", env: vars("MEDIATOR_RATE_DEPOSIT"), value: number(&l.Deposit.Rate, d.Deposit.Rate),
			usage: "key deposits per second per depositor; 0 for no limit"},
		{flag: "rate-deposit-burst", env: vars("MEDIATOR_RATE_DEPOSIT_BURST"), value: integer(&l.Deposit.Burst, d.Deposit.Burst),
			usage: "key deposits one depositor may send at once"},
		{flag: "rate-tiles", env: vars("MEDIATOR_RATE_TILES"), value: number(&l.Tiles.Rate, d.Tiles.Rate),
			usage: "tlog tiles and entry bundles per second per identity; 0 for no limit"},
		{flag: "rate-tiles-burst", env: vars("MEDIATOR_RATE_TILES_BURST"), value: integer(&l.Tiles.Burst, d.Tiles.Burst),
			usage: "tlog tiles and entry bundles one identity may fetch at once"},
		{flag: "rate-tiles-service", env: vars("MEDIATOR_RATE_TILES_SERVICE"), value: number(&l.TilesService.Rate, d.TilesService.Rate),
			usage: "tlog tiles and entry bundles per second for all readers together; 0 for no limit (docs/performance.md: 200 kept four readers' cost to ingest at 4–5 % on 2 cores)"},
		{flag: "rate-tiles-service-burst", env: vars("MEDIATOR_RATE_TILES_SERVICE_BURST"), value: integer(&l.TilesService.Burst, d.TilesService.Burst),
			usage: "tlog tiles and entry bundles all readers together may fetch at once"},
	}
}

// vars lists a setting's environment variables, in order of precedence.
func vars(names ...string) []string { return names }

// concat joins tables.
func concat(tables ...[]setting) []setting {
	var all []setting
	for _, t := range tables {
		all = append(all, t...)
	}
	return all
}

// The settings below are shared by several commands, each declared once.

// databaseURLSetting is the PostgreSQL URL, a secret; usage says what the
// command needs of it.
func databaseURLSetting(dst *string, usage string) setting {
	return setting{flag: "database-url", env: vars("MEDIATOR_DATABASE_URL", "DATABASE_URL"), value: text(dst, ""), usage: usage, secret: true}
}

// databaseURLFileSetting is a file holding the PostgreSQL URL, read when
// no URL is given (readDatabaseURL).
func databaseURLFileSetting(dst *string) setting {
	return setting{flag: "database-url-file", env: vars("MEDIATOR_DATABASE_URL_FILE"), value: text(dst, ""),
		usage: "file holding the PostgreSQL URL, instead of --database-url (a Vault Agent or Kubernetes secret file)"}
}

// logLevelSetting is the service log's level.
func logLevelSetting(dst *string) setting {
	return setting{flag: "log-level", env: vars("MEDIATOR_LOG_LEVEL"), value: logLevel(dst, "info"), usage: "debug, info, warn or error"}
}

// logOriginSetting is the audit log's origin; usage says what the
// command uses it for.
func logOriginSetting(dst *string, usage string) setting {
	return setting{flag: "log-origin", env: vars("MEDIATOR_LOG_ORIGIN"), value: text(dst, defaultLogOrigin), usage: usage}
}

// witnessesSetting is the witnesses file; usage says what the command
// does with it.
func witnessesSetting(dst *string, usage string) setting {
	return setting{flag: "witnesses", env: vars("MEDIATOR_WITNESSES"), value: text(dst, ""), usage: usage}
}

// custodiansSetting is the custodians file: the set deposits are sealed
// to and destruction reaches.
func custodiansSetting(dst *string) setting {
	return setting{flag: "custodians", env: vars("MEDIATOR_CUSTODIANS"), value: text(dst, ""),
		usage: "custodians file: the custodian set (names, URLs, token files, public keys) deposits are sealed to (docs/custodians.md); without it, escrow answers 503"}
}

// readDatabaseURL is dsn, or when it is empty the content of file (how
// Vault Agent and Kubernetes hand it over), or "" when neither is given.
func readDatabaseURL(dsn, file string) (string, error) {
	if dsn != "" || file == "" {
		return dsn, nil
	}
	u, err := secretfile.Read(file)
	if err != nil {
		return "", fmt.Errorf("--database-url-file: %w", err)
	}
	return u, nil
}

// resolve completes the configuration once its settings are applied: the
// database URL from its file, the Vault credentials from theirs, and the
// Vault CLI's token when no other token and no AppRole is configured.
// Vault credentials in files are also read by vaultclient.
func (c *serveConfig) resolve(vaultCLIToken string) error {
	u, err := readDatabaseURL(c.DatabaseURL, c.DatabaseURLFile)
	if err != nil {
		return err
	}
	c.DatabaseURL = u
	if c.DatabaseReadURL == "" && c.DatabaseReadURLFile != "" {
		if c.DatabaseReadURL, err = secretfile.Read(c.DatabaseReadURLFile); err != nil {
			return fmt.Errorf("--database-read-url-file: %w", err)
		}
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
		c.VaultToken = vaultCLIToken
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
	return append(append([]string{c.VaultToken, c.VaultSecretID}, dsnSecrets(c.DatabaseURL)...), dsnSecrets(c.DatabaseReadURL)...)
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

package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"golang.org/x/mod/sumdb/note"

	"github.com/mediatorhq/mediator/access"
	"github.com/mediatorhq/mediator/api"
	"github.com/mediatorhq/mediator/audit"
	vaultsetup "github.com/mediatorhq/mediator/deploy/vault"
	"github.com/mediatorhq/mediator/escrow"
	"github.com/mediatorhq/mediator/identity"
	"github.com/mediatorhq/mediator/migrations"
	"github.com/mediatorhq/mediator/pgmetrics"
	"github.com/mediatorhq/mediator/policy"
	"github.com/mediatorhq/mediator/redact"
	"github.com/mediatorhq/mediator/stats"
	"github.com/mediatorhq/mediator/vaultclient"
)

func serveCmd(ctx context.Context, args []string, stderr io.Writer) error {
	var cfg serveConfig
	fs := newFlagSet("serve", "mediator serve [flags]", stderr)
	bindServeFlags(fs, &cfg)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := cfg.resolveSecrets(); err != nil {
		return err
	}
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	log := newLogger(stderr, cfg.LogLevel, cfg.secrets())
	setGCPercent(log)
	if err := serve(ctx, cfg, log, nil); err != nil {
		log.Error("serve failed", "err", err)
		return err
	}
	return nil
}

// serve runs the service until ctx ends. If ready is not nil it receives the
// listening address once requests are being accepted.
func serve(ctx context.Context, cfg serveConfig, log *slog.Logger, ready chan<- string) error {
	addr, err := listenAddr(cfg.Addr)
	if err != nil {
		return err
	}
	metrics := api.NewMetrics(version)
	poolCfg, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		// pgx's parse errors can quote the URL; say only what is wrong.
		return fmt.Errorf("database url: cannot be parsed")
	}
	poolCfg.ConnConfig.Tracer = pgmetrics.New(metrics.Registry)
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	defer pool.Close()
	metrics.Registry.MustRegister(pgmetrics.NewPoolCollector(pool))
	vaultMetrics := vaultclient.NewMetrics(metrics.Registry)
	if err := checkSchema(ctx, pool); err != nil {
		return err
	}

	vault, err := vaultclient.Connect(ctx, log, vaultclient.Config{
		Addr: cfg.VaultAddr, Token: cfg.VaultToken, RoleID: cfg.VaultRoleID, SecretID: cfg.VaultSecretID,
		TokenFile: tokenFile(cfg), Metrics: vaultMetrics,
	})
	if err != nil {
		return err
	}

	profile := redact.DefaultProfile()
	if cfg.RedactionProfile != "" {
		if profile, err = redact.LoadProfile(cfg.RedactionProfile); err != nil {
			return err
		}
	}
	signer, verifierKey, err := checkpointSigner(ctx, cfg, vault)
	if err != nil {
		return err
	}
	store := audit.NewStore(pool)
	// The batcher outlives the HTTP server's shutdown so that requests
	// being drained still get their appends committed and answered.
	batcherCtx, stopBatcher := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBatcher()
	batcher := audit.NewBatcher(store)
	go batcher.Run(batcherCtx)
	pseudonyms := vaultclient.NewPseudonymKeys(vault, vaultsetup.TransitMount, vaultsetup.PseudonymKey).WithMaxAge(cfg.PseudonymKeyMaxAge)
	if _, err := pseudonyms.Current(ctx); err != nil {
		return fmt.Errorf("pseudonym key: %w", err)
	}

	engine, err := policy.NewReloader(ctx, cfg.PolicyDir, log)
	if err != nil {
		return err
	}
	keys, err := identity.OpenKeySource(cfg.JWKS)
	if err != nil {
		return err
	}
	verifier, err := identity.NewVerifier(cfg.JWTIssuer, cfg.JWTAudience, keys)
	if err != nil {
		return err
	}

	engine.OnReload = policy.ReloadMetrics(metrics.Registry, engine.Revision())
	go engine.Watch(ctx, policyWatchInterval)
	go reloadOnHangup(ctx, engine)
	escrowSvc, err := newEscrowService(ctx, cfg, vault, pool, log, escrow.NewMetrics(metrics.Registry), vaultMetrics)
	if err != nil {
		return err
	}
	accessStore := access.NewPGStore(pool, store)
	accessSvc := access.New(access.Config{Store: accessStore, Decider: engine, Escrow: escrowSvc, Log: log,
		Metrics: access.NewMetrics(metrics.Registry, accessStore)})
	if cfg.EscrowRetention > 0 {
		go runRetention(ctx, escrowSvc, cfg.EscrowRetention, log)
	}
	checkpointer := &audit.Checkpointer{
		Store: store, Signer: signer, Origin: cfg.LogOrigin, Interval: cfg.CheckpointInterval, Log: log,
		OnCheckpoint:   func(c audit.Checkpoint) { metrics.CheckpointSigned(c.Size, c.CreatedAt) },
		OnInconsistent: func(error) { metrics.CheckpointInconsistent() },
	}
	go checkpointer.Run(ctx)
	// The SOC counts outlive the HTTP server's shutdown too, so a final
	// flush covers every request answered.
	tally := stats.NewTally(pool, log)
	tallyDone := make(chan struct{})
	go func() { tally.Run(batcherCtx, statsFlushInterval); close(tallyDone) }()
	defer func() { stopBatcher(); <-tallyDone }()
	router := api.NewRouter(api.Deps{
		AuditLog:      batchedLog{Store: store, batcher: batcher},
		Pseudonyms:    pseudonyms,
		Profile:       profile,
		VerifierKey:   verifierKey,
		Escrow:        escrowSvc,
		Access:        accessSvc,
		Stats:         stats.NewStore(pool),
		Tally:         tally,
		StatsMinGroup: cfg.StatsMinGroup,
		Limits:        cfg.Limits,
		Logger:        log,
		Authn:         verifier,
		Authz:         engine,
		Metrics:       metrics,
		Ready: []api.Check{
			{Name: "postgres", Probe: pool.Ping},
			{Name: "vault", Probe: func(ctx context.Context) error { return vaultclient.Ready(ctx, vault) }},
		},
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	log.Info("mediator serving", "addr", ln.Addr().String(), "version", version,
		"policy_revision", engine.Revision(), "jwt_issuer", cfg.JWTIssuer)
	if ready != nil {
		ready <- ln.Addr().String()
	}
	return api.Serve(ctx, api.NewServer(router, log), ln, cfg.ShutdownTimeout, log)
}

// statsFlushInterval is how often the SOC counts are written: often enough
// for a dashboard, rarely enough to cost nothing, and the most a crash can
// lose from that view (never from the log).
const statsFlushInterval = 5 * time.Second

// tokenFile is the file the Vault token came from, if it came from one
// (a flag or variable wins over the file).
func tokenFile(cfg serveConfig) string {
	if !cfg.tokenFromFile {
		return ""
	}
	return cfg.VaultTokenFile
}

// policyWatchInterval is how often the policy directory is checked for
// edits: fast enough that an operator sees a change take effect while
// watching, slow enough to cost nothing.
const policyWatchInterval = 5 * time.Second

// reloadOnHangup reloads the policy directory on every SIGHUP until ctx
// ends. A policy that fails to load is logged and the working one kept.
func reloadOnHangup(ctx context.Context, engine *policy.Reloader) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			_, _ = engine.Reload(ctx)
		}
	}
}

// schemaCheckTimeout bounds the start-up schema check.
const schemaCheckTimeout = 30 * time.Second

// checkSchema refuses to serve on a database whose schema is not exactly the
// one this binary was built for.
func checkSchema(ctx context.Context, pool *pgxpool.Pool) error {
	ctx, cancel := context.WithTimeout(ctx, schemaCheckTimeout)
	defer cancel()
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	if err := migrations.Check(ctx, db); err != nil {
		return fmt.Errorf("refusing to serve: %w", err)
	}
	return nil
}

// checkpointSigner returns the checkpoint signer and its note verifier key:
// from the key file if one is configured, else the Vault Transit key.
func checkpointSigner(ctx context.Context, cfg serveConfig, vault *vaultapi.Client) (note.Signer, string, error) {
	if cfg.CheckpointKeyFile != "" {
		b, err := os.ReadFile(cfg.CheckpointKeyFile)
		if err != nil {
			return nil, "", fmt.Errorf("checkpoint key file: %w", err)
		}
		return signerFromKey(strings.TrimSpace(string(b)), cfg.LogOrigin)
	}
	s, err := vaultclient.NewTransitSigner(ctx, vault, vaultsetup.TransitMount, vaultsetup.CheckpointKey, cfg.LogOrigin)
	if err != nil {
		return nil, "", err
	}
	return s, s.VerifierKey(), nil
}

// signerFromKey parses a note signer key ("PRIVATE+KEY+name+hash+data") and
// derives its verifier key. The key's name must be the log origin, since
// verifiers take the origin from the key name.
func signerFromKey(skey, origin string) (note.Signer, string, error) {
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, "", errors.New("checkpoint key file: not a note signer key")
	}
	if signer.Name() != origin {
		return nil, "", fmt.Errorf("checkpoint key file: key name %q must equal the log origin %q", signer.Name(), origin)
	}
	// "PRIVATE+KEY+<name>+<hash>+<keydata>": the key data is base64 and may
	// itself contain '+', so cut the fields off the front.
	rest, _ := strings.CutPrefix(skey, "PRIVATE+KEY+")
	_, rest, _ = strings.Cut(rest, "+")  // name (names cannot contain '+')
	_, data, _ := strings.Cut(rest, "+") // hash
	raw, err := base64.StdEncoding.DecodeString(data)
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return nil, "", errors.New("checkpoint key file: only Ed25519 note keys are supported")
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	clear(raw)
	vkey, err := note.NewEd25519VerifierKey(origin, pub)
	if err != nil {
		return nil, "", fmt.Errorf("checkpoint key file: %w", err)
	}
	return signer, vkey, nil
}

// batchedLog is the audit store with appends going through the group-commit
// batcher.
type batchedLog struct {
	*audit.Store
	batcher *audit.Batcher
}

// Append group-commits entries with concurrent requests' entries.
func (l batchedLog) Append(ctx context.Context, entries []audit.Entry) ([]audit.Appended, error) {
	return l.batcher.Append(ctx, entries)
}

// defaultGCPercent is the garbage collector target the service runs with
// unless GOGC says otherwise. Ingest allocates freely around a small live
// heap (tens of MiB), so Go's default of 100 collects many times a second;
// 400 measured 21,000 → 29,000 events/s on the 2-core reference machine for
// about 50 MiB more resident memory (docs/performance.md).
const defaultGCPercent = 400

// setGCPercent applies defaultGCPercent when GOGC is not set.
func setGCPercent(log *slog.Logger) {
	if os.Getenv("GOGC") != "" {
		return
	}
	debug.SetGCPercent(defaultGCPercent)
	log.Debug("garbage collector target set", "gc_percent", defaultGCPercent)
}

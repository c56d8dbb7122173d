package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediatorhq/mediator/access"
	"github.com/mediatorhq/mediator/api"
	"github.com/mediatorhq/mediator/audit"
	vaultsetup "github.com/mediatorhq/mediator/deploy/vault"
	"github.com/mediatorhq/mediator/escrow"
	"github.com/mediatorhq/mediator/identity"
	"github.com/mediatorhq/mediator/ingest"
	"github.com/mediatorhq/mediator/migrations"
	"github.com/mediatorhq/mediator/notify"
	"github.com/mediatorhq/mediator/pgmetrics"
	"github.com/mediatorhq/mediator/policy"
	"github.com/mediatorhq/mediator/redact"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/secretfile"
	"github.com/mediatorhq/mediator/stats"
	"github.com/mediatorhq/mediator/vaultclient"
)

// serveCmd runs the service with the configuration of its command line
// and environment; a malformed or missing setting stops it before it
// connects to anything.
func serveCmd(ctx context.Context, c *call, args []string) error {
	cfg, err := loadServeConfig(c, args)
	if err != nil {
		return err
	}
	log := newLogger(c.stderr, cfg.LogLevel, cfg.secrets())
	setGCPercent(log)
	if err := serve(ctx, cfg, log, nil); err != nil {
		log.Error("serve failed", "err", err)
		return err
	}
	return nil
}

// serve runs the service until ctx ends. If ready is not nil it receives the
// listening address once requests are being accepted. It only wires: each
// piece it makes owns its own work and shutdown, and the deferred closes
// run after the HTTP server has drained, newest first.
func serve(ctx context.Context, cfg serveConfig, log *slog.Logger, ready chan<- string) error {
	addr, err := listenAddr(cfg.Addr)
	if err != nil {
		return err
	}
	metrics := api.NewMetrics(version)
	pool, err := openPool(ctx, cfg.DatabaseURL, metrics)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := migrations.CheckPool(ctx, pool, schemaCheckTimeout); err != nil {
		return fmt.Errorf("refusing to serve: %w", err)
	}
	vaultMetrics := vaultclient.NewMetrics(metrics.Registry)
	vault, err := vaultclient.Connect(ctx, log, cfg.vault(vaultMetrics))
	if err != nil {
		return err
	}

	key, err := checkpointKey(ctx, cfg, vault)
	if err != nil {
		return err
	}
	var witnesses audit.WitnessPolicy
	if cfg.Witnesses != "" {
		b, err := os.ReadFile(cfg.Witnesses)
		if err != nil {
			return fmt.Errorf("--witnesses: %w", err)
		}
		if witnesses, err = audit.ParseWitnessPolicy(b); err != nil {
			return err
		}
	}
	auditLog, closeLog, err := audit.Open(ctx, audit.Config{Pool: pool, Origin: cfg.LogOrigin, Key: key, PreviousKeys: cfg.CheckpointPreviousKeys, Witnesses: witnesses,
		CheckpointInterval: cfg.CheckpointInterval, Logger: log, Metrics: audit.NewMetrics(metrics.Registry)})
	if err != nil {
		return err
	}
	defer closeLog(context.WithoutCancel(ctx))
	tally, stopTally := stats.StartTally(ctx, pool, log, statsFlushInterval)
	defer stopTally()
	profile, err := redactionProfile(cfg.RedactionProfile)
	if err != nil {
		return err
	}
	pseudonyms := vaultclient.NewPseudonymKeys(vault, vaultsetup.TransitMount, vaultsetup.PseudonymKey).WithMaxAge(cfg.PseudonymKeyMaxAge)
	if _, err := pseudonyms.Current(ctx); err != nil {
		return fmt.Errorf("pseudonym key: %w", err)
	}
	ingester := ingest.New(ingest.Config{Log: auditLog, Keys: pseudonyms, Profile: profile, Tally: tally, Logger: log,
		Metrics: ingest.NewMetrics(metrics.Registry)})

	engine, err := policy.NewReloader(ctx, cfg.PolicyDir, log)
	if err != nil {
		return err
	}
	engine.OnReload = policy.ReloadMetrics(metrics.Registry, engine.Revision())
	go engine.Watch(ctx, policyWatchInterval)
	go reloadOnHangup(ctx, engine)
	keys, err := identity.OpenKeySource(cfg.JWKS)
	if err != nil {
		return err
	}
	if u, ok := keys.(*identity.URLKeys); ok && cfg.JWKSMaxAge > 0 {
		u.MaxAge = cfg.JWKSMaxAge
	}
	verifier, err := identity.NewVerifier(cfg.JWTIssuer, cfg.JWTAudience, keys)
	if err != nil {
		return err
	}

	escrowSvc, err := newEscrowService(cfg, pool, auditLog.Store, log, escrow.NewMetrics(metrics.Registry))
	if err != nil {
		return err
	}
	if cfg.EscrowRetention > 0 {
		go escrowSvc.RunRetention(ctx, cfg.EscrowRetention)
	}
	var hooks []notify.Hook
	if cfg.Webhooks != "" {
		if hooks, err = notify.ParseFile(cfg.Webhooks); err != nil {
			return err
		}
	}
	notifier, err := notify.New(notify.Config{Hooks: hooks, Log: log, Registerer: metrics.Registry})
	if err != nil {
		return err
	}
	go notifier.Run(ctx)
	if cfg.RosterGenesis == "" {
		log.Warn("no roster genesis is pinned (--roster-genesis): no approver is trusted and no key can be released")
	} else if !roster.ValidDigest(cfg.RosterGenesis) {
		return fmt.Errorf("--roster-genesis must be a sha256: digest, not %q", cfg.RosterGenesis)
	}
	accessStore := access.NewPGStore(pool, auditLog.Store)
	accessSvc := access.New(access.Config{Store: accessStore, Decider: engine, Escrow: escrowSvc, Log: log,
		Metrics: access.NewMetrics(metrics.Registry, accessStore), RosterGenesis: cfg.RosterGenesis, Notifier: notifier,
		LogProof: auditLog})
	go accessSvc.WatchLiveness(ctx, cfg.LivenessInterval, cfg.LivenessWindow, cfg.ProposalWait)

	router := api.NewRouter(api.Deps{
		Logger:        log,
		Authn:         verifier,
		Authz:         engine,
		Metrics:       metrics,
		Ingest:        ingester,
		Log:           auditLog,
		Escrow:        escrowSvc,
		Access:        accessSvc,
		Stats:         stats.NewStore(pool),
		StatsMinGroup: cfg.StatsMinGroup,
		Limits:        cfg.Limits,
		Ready: []api.Check{
			{Name: "postgres", Probe: pool.Ping},
			{Name: "vault", Probe: func(ctx context.Context) error { return vaultclient.Ready(ctx, vault) }},
		},
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if cfg.MetricsAddr != "" {
		if err := serveMetrics(ctx, cfg.MetricsAddr, metrics, log); err != nil {
			return err
		}
	}
	log.Info("mediator serving", "addr", ln.Addr().String(), "version", version,
		"policy_revision", engine.Revision(), "jwt_issuer", cfg.JWTIssuer)
	if ready != nil {
		ready <- ln.Addr().String()
	}
	return api.Serve(ctx, api.NewServer(router, log), ln, cfg.ShutdownTimeout, log)
}

// openPool connects the pgx pool with call metrics.
func openPool(ctx context.Context, dsn string, metrics *api.Metrics) (*pgxpool.Pool, error) {
	poolCfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's parse errors can quote the URL; say only what is wrong.
		return nil, fmt.Errorf("database url: cannot be parsed")
	}
	poolCfg.ConnConfig.Tracer = pgmetrics.New(metrics.Registry)
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	metrics.Registry.MustRegister(pgmetrics.NewPoolCollector(pool))
	return pool, nil
}

// statsFlushInterval is how often the SOC counts are written: often enough
// for a dashboard, rarely enough to cost nothing, and the most a crash can
// lose from that view (never from the log).
const statsFlushInterval = 5 * time.Second

// policyWatchInterval is how often the policy directory is checked for
// edits: fast enough that an operator sees a change take effect while
// watching, slow enough to cost nothing.
const policyWatchInterval = 5 * time.Second

// schemaCheckTimeout bounds the start-up schema check.
const schemaCheckTimeout = 30 * time.Second

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

// checkpointKey is the key file's key if one is configured, else the Vault
// Transit key.
func checkpointKey(ctx context.Context, cfg serveConfig, vault *vaultapi.Client) (audit.CheckpointKey, error) {
	if cfg.CheckpointKeyFile != "" {
		skey, err := secretfile.Read(cfg.CheckpointKeyFile)
		if err != nil {
			return nil, fmt.Errorf("checkpoint key: %w", err)
		}
		return audit.ParseCheckpointKey(skey, cfg.LogOrigin)
	}
	return vaultclient.NewTransitSigner(ctx, vault, vaultsetup.TransitMount, vaultsetup.CheckpointKey, cfg.LogOrigin)
}

// redactionProfile reads the profile file, or gives the defaults.
func redactionProfile(path string) (redact.Profile, error) {
	if path == "" {
		return redact.DefaultProfile(), nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return redact.Profile{}, fmt.Errorf("redaction profile: %w", err)
	}
	return redact.ParseProfile(b)
}

// defaultGCPercent is the garbage collector target the service runs with
// unless GOGC says otherwise. Ingest allocates freely around a small live
// heap (tens of MiB), so Go's default of 100 collects many times a second;
// 400 measured 21,000 → 29,000 events/s on the 2-core reference machine for
// about 50 MiB more resident memory (docs/performance.md).
const defaultGCPercent = 400

// defaultMemoryLimit is the soft memory limit the service runs with unless
// GOMEMLIMIT says otherwise: near it the collector runs as often as it must,
// so the GC target above never lets garbage push the process past the
// 512 MiB that ingest's byte budget is sized for (docs/reliability.md).
const defaultMemoryLimit = 384 << 20

// setGCPercent applies defaultGCPercent when GOGC is not set, and
// defaultMemoryLimit when GOMEMLIMIT is not.
func setGCPercent(log *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
	if os.Getenv("GOGC") != "" {
		return
	}
	debug.SetGCPercent(defaultGCPercent)
	log.Debug("garbage collector target set", "gc_percent", defaultGCPercent)
}

// serveMetrics serves /metrics alone, without a token, on a listener of
// its own (which the operator binds to a private address), until ctx ends.
func serveMetrics(ctx context.Context, addr string, metrics *api.Metrics, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--metrics-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", api.MetricsHandler(metrics))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { <-ctx.Done(); srv.Close() }()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener stopped", "err", err)
		}
	}()
	log.Info("metrics served without a token on a separate listener", "addr", ln.Addr().String())
	return nil
}

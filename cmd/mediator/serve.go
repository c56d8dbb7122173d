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
	"github.com/mediatorhq/mediator/governance"
	"github.com/mediatorhq/mediator/identity"
	"github.com/mediatorhq/mediator/ingest"
	"github.com/mediatorhq/mediator/job"
	"github.com/mediatorhq/mediator/migrations"
	"github.com/mediatorhq/mediator/notify"
	"github.com/mediatorhq/mediator/pgmetrics"
	"github.com/mediatorhq/mediator/pgsession"
	"github.com/mediatorhq/mediator/policy"
	"github.com/mediatorhq/mediator/redact"
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
// piece it starts pushes its stop function onto one job.Stack, and once the
// HTTP server has drained the stack stops them newest first
// (docs/architecture.md, "Start-up and shutdown").
func serve(ctx context.Context, cfg serveConfig, log *slog.Logger, ready chan<- string) error {
	addr, err := listenAddr(cfg.Addr)
	if err != nil {
		return err
	}
	var owned job.Stack
	defer owned.Stop(log)
	metrics := api.NewMetrics(version)
	deps, engine, err := start(ctx, cfg, log, metrics, &owned)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if cfg.MetricsAddr != "" {
		stop, err := serveMetrics(ctx, cfg.MetricsAddr, metrics, log)
		if err != nil {
			return err
		}
		owned.Push("metrics listener", stop)
	}
	log.Info("mediator serving", "addr", ln.Addr().String(), "version", version,
		"policy_revision", engine.Revision(), "jwt_issuer", cfg.JWTIssuer)
	if ready != nil {
		ready <- ln.Addr().String()
	}
	return api.Serve(ctx, api.NewServer(api.NewRouter(deps), log), ln, cfg.ShutdownTimeout, log)
}

// start connects the service's dependencies and starts its jobs, pushing
// each one's stop onto owned, and returns what the router needs and the
// policy engine.
func start(ctx context.Context, cfg serveConfig, log *slog.Logger, metrics *api.Metrics, owned *job.Stack) (api.Deps, *policy.Reloader, error) {
	tracer := pgmetrics.New(metrics.Registry)
	pool, err := openPool(ctx, cfg.DatabaseURL, tracer)
	if err != nil {
		return api.Deps{}, nil, err
	}
	owned.Push("database pool", pool.Close)
	metrics.Registry.MustRegister(pgmetrics.NewPoolCollector(pool), pgmetrics.NewReplicationCollector(pool))
	readPool := pool
	if cfg.DatabaseReadURL != "" {
		if readPool, err = openPool(ctx, cfg.DatabaseReadURL, tracer); err != nil {
			return api.Deps{}, nil, fmt.Errorf("read %w", err)
		}
		owned.Push("database read pool", readPool.Close)
	}
	if err := migrations.CheckPool(ctx, pool, schemaCheckTimeout); err != nil {
		return api.Deps{}, nil, fmt.Errorf("refusing to serve: %w", err)
	}
	// The Vault token is renewed (or its file followed) until this
	// context ends, which is the last thing but the pool to stop.
	vaultCtx, stopVault := context.WithCancel(context.WithoutCancel(ctx))
	owned.Push("vault token renewal", stopVault)
	vault, err := vaultclient.Connect(vaultCtx, log, cfg.vault(vaultclient.NewMetrics(metrics.Registry)))
	if err != nil {
		return api.Deps{}, nil, err
	}
	auditLog, tally, err := startLog(ctx, cfg, log, metrics, pool, readPool, vault, owned)
	if err != nil {
		return api.Deps{}, nil, err
	}
	ingester, err := newIngester(cfg, log, metrics, auditLog, tally)
	if err != nil {
		return api.Deps{}, nil, err
	}
	engine, err := startPolicy(ctx, cfg, log, metrics, owned)
	if err != nil {
		return api.Deps{}, nil, err
	}
	verifier, err := newVerifier(cfg)
	if err != nil {
		return api.Deps{}, nil, err
	}
	d := api.Deps{Logger: log, Authn: verifier, Authz: engine, Metrics: metrics, Ingest: ingester, Log: auditLog,
		Stats: stats.NewStore(readPool), StatsMinGroup: cfg.StatsMinGroup, Limits: cfg.Limits,
		Ready: readiness(cfg, verifier, pool.Ping, func(ctx context.Context) error { return vaultclient.Ready(ctx, vault) }, auditLog.WitnessQuorum)}
	if err := startLawfulAccess(ctx, cfg, log, metrics, pool, auditLog, engine, owned, &d); err != nil {
		return api.Deps{}, nil, err
	}
	return d, engine, nil
}

// readiness is what /readyz checks (docs/operations.md): that PostgreSQL
// and Vault answer; that the token verifier holds a key set it may use
// (else every token is refused); that custodians and a roster genesis are
// configured (else no key can be deposited or released); and that the
// witness quorum cosigned in the checkpoint job's latest round (else no
// checkpoint is published). The witnesses are not asked here: the check
// reads what the checkpoint job found (audit.Log.WitnessQuorum).
func readiness(cfg serveConfig, verifier *identity.Verifier, postgres, vault, witnesses func(context.Context) error) []api.Check {
	return []api.Check{
		{Name: "postgres", Probe: postgres},
		{Name: "vault", Probe: vault},
		{Name: "jwks", Probe: verifier.KeysReady},
		{Name: "custodians", Probe: configured(cfg.Custodians, "--custodians")},
		{Name: "roster", Probe: configured(cfg.RosterGenesis, "--roster-genesis")},
		{Name: "witnesses", Probe: witnesses},
	}
}

// configured is a readiness probe that fails with api.ErrNotConfigured
// while the setting flag is empty.
func configured(value, flag string) func(context.Context) error {
	return func(context.Context) error {
		if value == "" {
			return fmt.Errorf("%w: %s is not set", api.ErrNotConfigured, flag)
		}
		return nil
	}
}

// startLog opens the audit log (its group commit and checkpoint job) and
// the SOC tally, and pushes their closes: the log's waits for every queued
// append and signs a last checkpoint.
func startLog(ctx context.Context, cfg serveConfig, log *slog.Logger, metrics *api.Metrics, pool, readPool *pgxpool.Pool,
	vault *vaultapi.Client, owned *job.Stack) (*audit.Log, *stats.Tally, error) {
	key, err := checkpointKey(ctx, cfg, vault)
	if err != nil {
		return nil, nil, err
	}
	var witnesses audit.WitnessPolicy
	if cfg.Witnesses != "" {
		b, err := os.ReadFile(cfg.Witnesses)
		if err != nil {
			return nil, nil, fmt.Errorf("--witnesses: %w", err)
		}
		if witnesses, err = audit.ParseWitnessPolicy(b); err != nil {
			return nil, nil, err
		}
	}
	auditLog, closeLog, err := audit.Open(ctx, audit.Config{Pool: pool, ReadPool: readPool, Origin: cfg.LogOrigin, Key: key, PreviousKeys: cfg.CheckpointPreviousKeys, Witnesses: witnesses,
		CheckpointInterval: cfg.CheckpointInterval, Logger: log, Metrics: audit.NewMetrics(metrics.Registry)})
	if err != nil {
		return nil, nil, err
	}
	owned.Push("audit log", func() {
		if err := closeLog(context.WithoutCancel(ctx)); err != nil {
			log.Error("audit log close", "err", err)
		}
	})
	tally, stopTally := stats.StartTally(ctx, pool, log, statsFlushInterval)
	owned.Push("SOC tally", stopTally)
	return auditLog, tally, nil
}

// newIngester returns the road of events into the log, with the redaction
// profile. It holds no pseudonym key: identifiers arrive as pseudonyms.
func newIngester(cfg serveConfig, log *slog.Logger, metrics *api.Metrics,
	auditLog *audit.Log, tally *stats.Tally) (*ingest.Service, error) {
	profile, err := redactionProfile(cfg.RedactionProfile)
	if err != nil {
		return nil, err
	}
	return ingest.New(ingest.Config{Log: auditLog, Profile: profile, Tally: tally, Logger: log,
		Metrics: ingest.NewMetrics(metrics.Registry)}), nil
}

// startPolicy compiles the policies and starts the jobs that reload them:
// the directory watch and SIGHUP.
func startPolicy(ctx context.Context, cfg serveConfig, log *slog.Logger, metrics *api.Metrics, owned *job.Stack) (*policy.Reloader, error) {
	engine, err := policy.NewReloader(ctx, cfg.PolicyDir, log)
	if err != nil {
		return nil, err
	}
	engine.OnReload = policy.ReloadMetrics(metrics.Registry, engine.Revision())
	owned.Push("policy watch", job.Start(ctx, func(ctx context.Context) { engine.Watch(ctx, policyWatchInterval) }))
	owned.Push("policy reload on SIGHUP", job.Start(ctx, func(ctx context.Context) { reloadOnHangup(ctx, engine) }))
	return engine, nil
}

// newVerifier returns the bearer token verifier on the configured JWKS.
func newVerifier(cfg serveConfig) (*identity.Verifier, error) {
	keys, err := identity.OpenKeySource(cfg.JWKS)
	if err != nil {
		return nil, err
	}
	if u, ok := keys.(*identity.URLKeys); ok && cfg.JWKSMaxAge > 0 {
		u.MaxAge = cfg.JWKSMaxAge
	}
	return identity.NewVerifier(cfg.JWTIssuer, cfg.JWTAudience, keys)
}

// startLawfulAccess wires escrow, the roster's governance and the
// lawful-access workflow into d, and starts their jobs: escrow retention,
// webhook delivery and the approvers' liveness watch.
func startLawfulAccess(ctx context.Context, cfg serveConfig, log *slog.Logger, metrics *api.Metrics, pool *pgxpool.Pool,
	auditLog *audit.Log, engine *policy.Reloader, owned *job.Stack, d *api.Deps) error {
	inTx := auditLog.TxAppender()
	escrowSvc, err := newEscrowService(cfg, pool, inTx, log, escrow.NewMetrics(metrics.Registry))
	if err != nil {
		return err
	}
	if cfg.EscrowReconcile > 0 && cfg.Custodians != "" {
		owned.Push("escrow reconcile", job.Start(ctx, func(ctx context.Context) {
			escrowSvc.RunReconcile(ctx, cfg.EscrowReconcile, 24*time.Hour, escrow.CustodianAbortWindow)
		}))
	}
	if cfg.EscrowRetention > 0 {
		owned.Push("escrow retention", job.Start(ctx, func(ctx context.Context) { escrowSvc.RunRetention(ctx, cfg.EscrowRetention) }))
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
	owned.Push("webhook delivery", job.Start(ctx, notifier.Run))
	if cfg.RosterGenesis == "" { // its form was checked with the rest of the configuration
		log.Warn("no roster genesis is pinned (--roster-genesis): no approver is trusted and no key can be released")
	}
	rosterStore := governance.NewPGStore(pool, inTx)
	gov := governance.New(governance.Config{Chain: rosterStore, Proposals: rosterStore, Checkins: rosterStore,
		RosterGenesis: cfg.RosterGenesis, Custodians: escrowSvc, ReleaseRule: engine, Log: log,
		Metrics: governance.NewMetrics(metrics.Registry), Notifier: notifier})
	owned.Push("approver liveness watch", job.Start(ctx, func(ctx context.Context) {
		gov.WatchLiveness(ctx, governance.LivenessWatch{Interval: cfg.LivenessInterval, Window: cfg.LivenessWindow, ProposalWait: cfg.ProposalWait})
	}))
	accessStore := access.NewPGStore(pool, inTx)
	d.Escrow, d.Governance = escrowSvc, gov
	d.Access = access.New(access.Config{Requests: accessStore, Approvals: accessStore, Releases: accessStore, Roster: gov,
		Decider: engine, Escrow: escrowSvc, Log: log, Metrics: access.NewMetrics(metrics.Registry, accessStore),
		Notifier: notifier, LogProof: auditLog.Primary()})
	return nil
}

// openPool connects a pgx pool whose calls tracer measures.
func openPool(ctx context.Context, dsn string, tracer *pgmetrics.Tracer) (*pgxpool.Pool, error) {
	poolCfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's parse errors can quote the URL; say only what is wrong.
		return nil, fmt.Errorf("database url: cannot be parsed")
	}
	poolCfg.ConnConfig.Tracer = tracer
	// No JIT, no parallel plans for the service's probes
	// (docs/decisions.md); a URL may still set either.
	pgsession.Configure(poolCfg.ConnConfig)
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
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
// its own (which the operator binds to a private address), and returns the
// function that closes it and waits for its server to return.
func serveMetrics(ctx context.Context, addr string, metrics *api.Metrics, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", api.MetricsHandler(metrics))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	stopServing := job.Start(ctx, func(context.Context) {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener stopped", "err", err)
		}
	})
	log.Info("metrics served without a token on a separate listener", "addr", ln.Addr().String())
	return func() { srv.Close(); stopServing() }, nil
}

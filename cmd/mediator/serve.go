package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/mediatorhq/mediator/api"
	"github.com/mediatorhq/mediator/identity"
	"github.com/mediatorhq/mediator/migrations"
	"github.com/mediatorhq/mediator/policy"
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
	poolCfg, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		// pgx's parse errors can quote the URL; say only what is wrong.
		return fmt.Errorf("database url: cannot be parsed")
	}
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	defer pool.Close()
	if err := checkSchema(ctx, pool); err != nil {
		return err
	}

	vault, err := vaultclient.Connect(ctx, log, vaultclient.Config{
		Addr: cfg.VaultAddr, Token: cfg.VaultToken, RoleID: cfg.VaultRoleID, SecretID: cfg.VaultSecretID,
	})
	if err != nil {
		return err
	}

	engine, err := policy.Load(ctx, cfg.PolicyDir)
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

	metrics := api.NewMetrics(version)
	router := api.NewRouter(api.Deps{
		Log:     log,
		Authn:   verifier,
		Authz:   engine,
		Metrics: metrics,
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

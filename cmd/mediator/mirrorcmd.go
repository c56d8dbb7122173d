package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/mod/sumdb/note"

	"github.com/mediatorhq/mediator/audit"
	"github.com/mediatorhq/mediator/migrations"
	"github.com/mediatorhq/mediator/mirror"
	"github.com/mediatorhq/mediator/pgsession"
	"github.com/mediatorhq/mediator/secretfile"
	"github.com/mediatorhq/mediator/witness"
)

// readMirrorConfig reads and loads a mirror's configuration file.
func readMirrorConfig(path string) (mirror.File, mirror.Loaded, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return mirror.File{}, mirror.Loaded{}, fmt.Errorf("mirror: %w", err)
	}
	f, err := mirror.ParseFile(b)
	if err != nil {
		return f, mirror.Loaded{}, err
	}
	l, err := f.Load()
	return f, l, err
}

// mirrorInitCmd creates the mirror's cosigning key and prints its line
// for the log's witness policy.
func mirrorInitCmd(ctx context.Context, c *call, args []string) error {
	var configFile, url string
	fs := c.newFlags(setting{flag: "config", env: vars("MEDIATOR_MIRROR_CONFIG"), value: text(&configFile, ""),
		usage: "the mirror's configuration file"},
		setting{flag: "url", value: text(&url, ""), usage: "the URL the log reaches the mirror's add-checkpoint and add-entries at (its submission prefix)"})
	if err := fs.Parse(args); err != nil {
		return err
	}
	if configFile == "" || url == "" {
		return errors.New("mirror init: --config and --url are required")
	}
	b, err := os.ReadFile(configFile)
	if err != nil {
		return fmt.Errorf("mirror init: %w", err)
	}
	f, err := mirror.ParseFile(b)
	if err != nil {
		return err
	}
	if err := mirror.GenerateKey(f.KeyFile); err != nil {
		return fmt.Errorf("mirror init: %w", err)
	}
	_, l, err := readMirrorConfig(configFile)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stderr, "mirror init: wrote the cosigning key to %s; give the log's operator this policy line:\n", f.KeyFile)
	fmt.Fprintf(c.stdout, "witness %s %s %s\n", f.Name, l.VerifierKey, url)
	return nil
}

// mirrorServeCmd runs the mirror until SIGTERM or ctx ends.
func mirrorServeCmd(ctx context.Context, c *call, args []string) error {
	var configFile, level string
	fs := c.newFlags(setting{flag: "config", env: vars("MEDIATOR_MIRROR_CONFIG"), value: text(&configFile, ""),
		usage: "the mirror's configuration file"}, logLevelSetting(&level))
	if err := fs.Parse(args); err != nil {
		return err
	}
	if configFile == "" {
		return errors.New("mirror serve: --config is required")
	}
	f, l, err := readMirrorConfig(configFile)
	if err != nil {
		return err
	}
	log := newLogger(c.stderr, level, append(dsnSecrets(l.DatabaseURL), l.Options.ReadToken))
	return serveMirror(ctx, f, l, log, nil)
}

// serveMirror runs the mirror of f and l; ready, if not nil, receives its
// address once it accepts calls.
func serveMirror(ctx context.Context, f mirror.File, l mirror.Loaded, log *slog.Logger, ready chan<- string) error {
	cfg, err := pgxpool.ParseConfig(l.DatabaseURL)
	if err != nil {
		return errors.New("mirror serve: the database URL does not parse")
	}
	pgsession.Configure(cfg.ConnConfig)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("mirror serve: %w", err)
	}
	defer pool.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	l.Options.Log, l.Options.Metrics = log, mirror.NewMetrics(reg)
	m, err := mirror.Open(ctx, pool, l.Options)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/", m.Handler())
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	ln, err := net.Listen("tcp", f.Listen)
	if err != nil {
		return fmt.Errorf("mirror serve: listen: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 2 * time.Minute,
		WriteTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute}
	log.Info("mirror serving", "addr", ln.Addr().String(), "origin", l.Options.Origin, "name", f.Name,
		"copy", "/"+mirror.OriginHash(l.Options.Origin)+"/", "public_reads", f.PublicReads, "tls", f.TLSCertFile != "")
	if ready != nil {
		ready <- ln.Addr().String()
	}
	return serveUntilStopped(ctx, srv, ln, f.TLSCertFile, f.TLSKeyFile)
}

// mirrorRestoreCmd rebuilds the log's entries table from a mirror's copy.
func mirrorRestoreCmd(ctx context.Context, c *call, args []string) error {
	var from, tokenFile, logKey, mirrorKey, dsn, dsnFile string
	fs := c.newFlags(
		setting{flag: "from", value: text(&from, ""), usage: "the mirror's copy: <monitoring URL>/<origin hash>"},
		setting{flag: "token-file", value: text(&tokenFile, ""), usage: "a file holding the mirror's read token"},
		setting{flag: "log-key", value: text(&logKey, ""), usage: "the log's checkpoint verifier key (its name is the origin)"},
		setting{flag: "mirror-key", value: text(&mirrorKey, ""), usage: "the mirror's cosignature verifier key, from the witness policy"},
		databaseURLSetting(&dsn, "PostgreSQL URL of the log's database, as a role that may create tables (the migrating role)"),
		databaseURLFileSetting(&dsnFile))
	g := declareGuard(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if from == "" || logKey == "" || mirrorKey == "" {
		return errors.New("mirror restore: --from, --log-key and --mirror-key are required")
	}
	logV, err := note.NewVerifier(logKey)
	if err != nil {
		return fmt.Errorf("mirror restore: --log-key: %w", err)
	}
	mirrorV, err := witness.NewVerifier(mirrorKey)
	if err != nil {
		return fmt.Errorf("mirror restore: --mirror-key: %w", err)
	}
	url, err := readDatabaseURL(dsn, dsnFile)
	if err != nil || url == "" {
		return errors.New("mirror restore: --database-url (or MEDIATOR_DATABASE_URL / DATABASE_URL / MEDIATOR_DATABASE_URL_FILE) is required")
	}
	cp := mirror.Copy{URL: from, HTTP: &http.Client{Timeout: time.Minute}}
	if tokenFile != "" {
		if cp.Token, err = secretfile.Read(tokenFile); err != nil {
			return fmt.Errorf("mirror restore: %w", err)
		}
	}
	signed, err := cp.Checkpoint(ctx)
	if err != nil {
		return fmt.Errorf("mirror restore: %w", err)
	}
	size, root, err := audit.OpenCheckpoint(signed, logV.Name(), logV)
	if err != nil {
		return fmt.Errorf("mirror restore: the mirror's checkpoint is not the log's: %w", err)
	}
	if _, err := note.Open(signed, note.VerifierList(mirrorV)); err != nil {
		return fmt.Errorf("mirror restore: the mirror's checkpoint lacks its cosignature: %w", err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("mirror restore: connect: %w", err)
	}
	defer conn.Close(ctx)
	var exists bool
	var newest string
	if err := conn.QueryRow(ctx, "SELECT to_regclass('audit_entries') IS NOT NULL, COALESCE((SELECT note FROM audit_checkpoints ORDER BY tree_size DESC LIMIT 1), '')").Scan(&exists, &newest); err != nil {
		return fmt.Errorf("mirror restore: read the log's tables: %w", err)
	}
	// The newest stored checkpoint counts only if the log's key signed it:
	// a row is the database's word.
	signedSize, _, newestErr := audit.OpenCheckpoint([]byte(newest), logV.Name(), logV)
	out := g.out(c)
	fmt.Fprintf(out, "mirror restore: the mirror holds %d entries of %s, cosigned by %s (root %x)\n", size, logV.Name(), mirrorV.Name(), root[:8])
	if !exists {
		fmt.Fprintln(out, "mirror restore: audit_entries is gone: it will be recreated as the migrations leave it")
	}
	if newest != "" && newestErr != nil {
		fmt.Fprintf(out, "mirror restore: WARNING: the newest row of audit_checkpoints is not a checkpoint the log's key signed (%v); audit verify will name it\n", newestErr)
	}
	if newestErr == nil && signedSize > size {
		fmt.Fprintf(out, "mirror restore: WARNING: the log signed a checkpoint of %d entries; entries %d to %d are not in the mirror and will be missing (audit verify will say so)\n", signedSize, size, signedSize-1)
	}
	if ok, err := c.proceed(g, "mirror restore", fmt.Sprintf("Write %d entries into the log's audit_entries?", size)); !ok {
		return err
	}
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if !exists {
			if err := migrations.RecreateAuditEntries(ctx, tx); err != nil {
				return err
			}
		}
		return audit.Restore(ctx, tx, size, root, cp.Entries(size))
	})
	if err != nil {
		return fmt.Errorf("mirror restore: nothing was written: %w", err)
	}
	fmt.Fprintf(c.stdout, "mirror restore: wrote %d entries; their tree has the mirror checkpoint's root. Run `mediator audit verify` next.\n", size)
	return nil
}

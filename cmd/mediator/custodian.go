package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mediatorhq/mediator/custodian"
	"github.com/mediatorhq/mediator/roster"
)

// custodianCmd runs the custodian service: one share holder, with its own
// credentials (docs/custodians.md).
func custodianCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "init" {
		return custodianInitCmd(ctx, args[1:], stdout, stderr)
	}
	if len(args) == 0 || args[0] != "serve" {
		fmt.Fprint(stderr, "usage: mediator custodian init|serve --config FILE\n")
		return exitCode(2)
	}
	fs := newFlagSet("custodian serve", "mediator custodian serve --config FILE", stderr)
	configFile := fs.String("config", env("", "MEDIATOR_CUSTODIAN_CONFIG"), "the custodian's configuration file [MEDIATOR_CUSTODIAN_CONFIG]")
	level := fs.String("log-level", env("info", "MEDIATOR_LOG_LEVEL"), "debug, info, warn or error [MEDIATOR_LOG_LEVEL]")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *configFile == "" {
		return errors.New("custodian serve: --config is required")
	}
	b, err := os.ReadFile(*configFile)
	if err != nil {
		return fmt.Errorf("custodian serve: %w", err)
	}
	cfg, err := custodian.ParseConfig(b)
	if err != nil {
		return err
	}
	log := newLogger(stderr, *level, nil)
	return serveCustodian(ctx, cfg, log, nil)
}

// serveCustodian runs one custodian until ctx ends; ready, if not nil,
// receives its address once it accepts requests.
func serveCustodian(ctx context.Context, cfg custodian.Config, log *slog.Logger, ready chan<- string) error {
	c, err := custodian.Open(ctx, cfg, log, custodian.NewMetrics())
	if err != nil {
		log.Error("custodian failed to start", "custodian", cfg.Name, "err", err)
		return err
	}
	defer c.Close()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("custodian: listen: %w", err)
	}
	srv := &http.Server{Handler: c.Handler(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 60 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 120 * time.Second, MaxHeaderBytes: 64 << 10}
	log.Info("custodian serving", "custodian", cfg.Name, "addr", ln.Addr().String(), "tls", cfg.TLSCertFile != "")
	if ready != nil {
		ready <- ln.Addr().String()
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGTERM)
	defer signal.Stop(hup)
	errc := make(chan error, 1)
	go func() {
		if cfg.TLSCertFile != "" {
			errc <- srv.ServeTLS(ln, cfg.TLSCertFile, cfg.TLSKeyFile)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	case <-hup:
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// custodianInitCmd creates the custodian's keys in its own store (if it
// has none) and prints its public keys as the roster lists a custodian,
// for the team founding the genesis roster. The URL is the operator's to
// fill in.
func custodianInitCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("custodian init", "mediator custodian init --config FILE [--url URL]", stderr)
	configFile := fs.String("config", env("", "MEDIATOR_CUSTODIAN_CONFIG"), "the custodian's configuration file; roster_genesis may still be empty [MEDIATOR_CUSTODIAN_CONFIG]")
	url := fs.String("url", "", "the URL the mediator reaches this custodian at, for the roster entry")
	if err := fs.Parse(args); err != nil {
		return err
	}
	b, err := os.ReadFile(*configFile)
	if err != nil {
		return fmt.Errorf("custodian init: %w", err)
	}
	cfg, err := custodian.ParseConfig(b)
	if err != nil {
		return err
	}
	info, err := custodian.Init(ctx, cfg, newLogger(stderr, "info", nil))
	if err != nil {
		return err
	}
	return printJSON(stdout, roster.Custodian{Name: info.Name, URL: *url, HPKEKey: info.HPKEKey, SigningKey: info.SigningKey})
}

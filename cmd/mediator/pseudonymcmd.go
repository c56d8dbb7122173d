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

	"github.com/mediatorhq/mediator/pseudonym"
	"github.com/mediatorhq/mediator/pseudonymservice"
)

// The pseudonym service evaluates the VOPRF that turns identifiers into
// pseudonyms. It is run by an organisation other than the mediator's
// operator (a custodian's, for example): the mediator alone cannot then
// compute a pseudonym, so it cannot test a phone number against what it
// stores (docs/pseudonyms.md).

// pseudonymKeygenCmd makes the service's key file and prints its public
// key, for the roster. With --config naming a transit section, the file
// holds the key encrypted under the service's Transit key, never the key.
func pseudonymKeygenCmd(ctx context.Context, c *call, args []string) error {
	fs := c.newFlags()
	outFile := fs.String("out", "", "the key file to create (0600, never overwritten)")
	configFile := fs.String("config", "", "the service's configuration file: with a transit section, the key is written encrypted under that Transit key")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *outFile == "" {
		fs.Usage()
		return exitCode(2)
	}
	key, err := pseudonym.GenerateKey()
	if err != nil {
		return err
	}
	text, err := key.MarshalText()
	if err != nil {
		return err
	}
	if *configFile != "" {
		b, err := os.ReadFile(*configFile)
		if err != nil {
			return fmt.Errorf("pseudonym keygen: %w", err)
		}
		f, err := pseudonymservice.ParseFile(b)
		if err != nil {
			return err
		}
		if f.Transit != nil {
			vault, err := f.Transit.Connect(ctx, newLogger(c.stderr, "warn", nil))
			if err != nil {
				return err
			}
			ct, err := pseudonymservice.WrapKey(ctx, vault, *f.Transit, key)
			if err != nil {
				return err
			}
			clear(text)
			text = []byte(ct)
		}
	}
	if err := writeNew(*outFile, append(text, '\n'), 0o600); err != nil {
		return fmt.Errorf("pseudonym keygen: %w", err)
	}
	pub := key.Public()
	fmt.Fprintf(c.stderr, "wrote %s (private, 0600); its public key, for the roster:\n", *outFile)
	fmt.Fprintf(c.stdout, "%s\n", pub)
	fmt.Fprintf(c.stderr, "key id %s\n", pub.ID())
	return nil
}

// pseudonymServeCmd runs the pseudonym service from its configuration
// file until it is stopped.
func pseudonymServeCmd(ctx context.Context, c *call, args []string) error {
	var configFile, level string
	fs := c.newFlags(setting{flag: "config", env: vars("MEDIATOR_PSEUDONYM_CONFIG"), value: text(&configFile, ""),
		usage: "the pseudonym service's configuration file"}, logLevelSetting(&level))
	if err := fs.Parse(args); err != nil {
		return err
	}
	if configFile == "" {
		return errors.New("pseudonym serve: --config is required")
	}
	b, err := os.ReadFile(configFile)
	if err != nil {
		return fmt.Errorf("pseudonym serve: %w", err)
	}
	f, err := pseudonymservice.ParseFile(b)
	if err != nil {
		return err
	}
	log := newLogger(c.stderr, level, nil)
	cfg, err := f.Load(ctx, log)
	if err != nil {
		return err
	}
	return servePseudonym(ctx, f, cfg, log, nil)
}

// servePseudonym runs the pseudonym service of f and cfg until ctx ends
// or SIGTERM; ready, if not nil, receives its address once it accepts
// calls.
func servePseudonym(ctx context.Context, f pseudonymservice.File, cfg pseudonymservice.ServiceConfig, log *slog.Logger, ready chan<- string) error {
	cfg.Log = log
	svc, err := pseudonymservice.NewService(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", f.Listen)
	if err != nil {
		return fmt.Errorf("pseudonym serve: listen: %w", err)
	}
	srv := &http.Server{Handler: svc.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	pub := cfg.Key.Public()
	log.Info("pseudonym service serving", "addr", ln.Addr().String(), "key_id", pub.ID(), "callers", len(cfg.Callers),
		"tls", f.TLSCertFile != "")
	if ready != nil {
		ready <- ln.Addr().String()
	}
	return serveUntilStopped(ctx, srv, ln, f.TLSCertFile, f.TLSKeyFile)
}

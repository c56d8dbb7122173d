package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mediatorhq/mediator/custodian"
	"github.com/mediatorhq/mediator/roster"
)

// custodianConfigSetting is the custodian's configuration file; usage
// says what the verb needs of it.
func custodianConfigSetting(dst *string, usage string) setting {
	return setting{flag: "config", env: vars("MEDIATOR_CUSTODIAN_CONFIG"), value: text(dst, ""), usage: usage}
}

// custodianServeCmd runs the custodian service: one share holder, with
// its own credentials (docs/custodians.md).
func custodianServeCmd(ctx context.Context, c *call, args []string) error {
	var configFile, level string
	fs := c.newFlags(custodianConfigSetting(&configFile, "the custodian's configuration file"), logLevelSetting(&level))
	if err := fs.Parse(args); err != nil {
		return err
	}
	if configFile == "" {
		return errors.New("custodian serve: --config is required")
	}
	b, err := os.ReadFile(configFile)
	if err != nil {
		return fmt.Errorf("custodian serve: %w", err)
	}
	cfg, err := custodian.ParseConfig(b)
	if err != nil {
		return err
	}
	log := newLogger(c.stderr, level, nil)
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
	srv := c.Server()
	log.Info("custodian serving", "custodian", cfg.Name, "addr", ln.Addr().String(), "tls", cfg.TLSCertFile != "",
		"client_certificates", cfg.ClientCAFile != "")
	if ready != nil {
		ready <- ln.Addr().String()
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGTERM)
	defer signal.Stop(hup)
	errc := make(chan error, 1)
	go func() { errc <- c.Serve(srv, ln) }()
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
// fill in. With a pkcs11 section it first makes the wrapping key on the
// token, unless the token has one with key_label, and says which on
// stderr.
func custodianInitCmd(ctx context.Context, c *call, args []string) error {
	var configFile string
	fs := c.newFlags(custodianConfigSetting(&configFile, "the custodian's configuration file; roster_genesis may still be empty"))
	url := fs.String("url", "", "the URL the mediator reaches this custodian at, for the roster entry")
	if err := fs.Parse(args); err != nil {
		return err
	}
	b, err := os.ReadFile(configFile)
	if err != nil {
		return fmt.Errorf("custodian init: %w", err)
	}
	cfg, err := custodian.ParseConfig(b)
	if err != nil {
		return err
	}
	if p := cfg.PKCS11; p != nil {
		created, err := custodian.InitPKCS11Key(cfg)
		if err != nil {
			return err
		}
		did := "using the existing key"
		if created {
			did = "created the key"
		}
		fmt.Fprintf(c.stderr, "custodian init: pkcs11: %s %q on token %q (AES-256, sensitive, not extractable)\n", did, p.KeyLabel, p.TokenLabel)
	}
	info, err := custodian.Init(ctx, cfg, newLogger(c.stderr, "info", nil))
	if err != nil {
		return err
	}
	return printJSON(c.stdout, roster.Custodian{Name: info.Name, URL: *url, HPKEKey: info.HPKEKey, SigningKey: info.SigningKey})
}

// custodianRotateHPKECmd makes a new HPKE key pair in the custodian's own
// store and prints its roster entry with the new key, for the admins'
// proposal. Nothing changes in service until a roster version listing the
// key is adopted and reaches the custodian (docs/custodians.md, "Rotating
// your HPKE key").
func custodianRotateHPKECmd(ctx context.Context, c *call, args []string) error {
	var configFile string
	fs := c.newFlags(custodianConfigSetting(&configFile, "the custodian's configuration file"))
	url := fs.String("url", "", "the URL the mediator reaches this custodian at, for the roster entry")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if configFile == "" {
		return errors.New("custodian rotate-hpke: --config is required")
	}
	b, err := os.ReadFile(configFile)
	if err != nil {
		return fmt.Errorf("custodian rotate-hpke: %w", err)
	}
	cfg, err := custodian.ParseConfig(b)
	if err != nil {
		return err
	}
	info, err := custodian.RotateHPKE(ctx, cfg, newLogger(c.stderr, "info", nil))
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stderr, "new hpke key %s stored; deposits still open with the key in force until a roster version lists this one "+
		"and reaches the custodian (docs/custodians.md, \"Rotating your HPKE key\")\n", info.HPKEKey.Fingerprint())
	return printJSON(c.stdout, roster.Custodian{Name: info.Name, URL: *url, HPKEKey: info.HPKEKey, SigningKey: info.SigningKey})
}

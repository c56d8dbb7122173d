package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"

	"github.com/mediatorhq/mediator/agent"
)

// agentCmd runs the gateway agent of a configuration file until SIGINT or
// SIGTERM, then stops it gracefully: gateways in any language hand it
// events and raw keys with raw identifiers over a unix socket or
// loopback, and it pseudonymises, seals and forwards them (package
// agent).
func agentCmd(ctx context.Context, c *call, args []string) error {
	var configFile, level string
	fs := c.newFlags(setting{flag: "config", env: vars("MEDIATOR_AGENT_CONFIG"), value: text(&configFile, ""),
		usage: "the agent's configuration file (JSON: listen, mediator_url, token_file, roster_genesis, pseudonym_token_file, state_file)"},
		logLevelSetting(&level))
	if err := fs.Parse(args); err != nil {
		return err
	}
	if configFile == "" {
		return errors.New("agent: --config is required")
	}
	cfg, err := agent.Load(configFile)
	if err != nil {
		return err
	}
	log := newLogger(c.stderr, level, cfg.Secrets())
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	a, err := agent.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	ln, err := agent.Listen(cfg.Listen)
	if err != nil {
		return err
	}
	return a.Serve(ctx, ln)
}

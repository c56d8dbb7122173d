package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/mediatorhq/mediator/agent"
	"github.com/mediatorhq/mediator/dev"
)

// The dev agent's files in the state dir, each 0600: its configuration,
// its token at the mediator (minted afresh at every start, for a day),
// and its state (the newest roster version it verified).
const (
	devAgentConfigFile = "agent.json"
	devAgentTokenFile  = "agent-mediator.token"
	devAgentStateFile  = "agent-state.json"
)

// devAgentSubject is who the dev agent is at the mediator: the dev
// gateway, with the ingest and depositor roles.
const devAgentSubject = "dev-gateway"

// startDevAgent runs a gateway agent in this process on a loopback port,
// as a gateway's host would run one beside it: it reaches the dev
// mediator at mediatorURL as the dev gateway and the dev pseudonym service
// with the gateway's credential there, and trusts the roster verified
// from genesis. It logs through newLog, given the agent's own tokens to
// mask with the instance's. It sets in.AgentURL.
func startDevAgent(ctx context.Context, in *dev.Instance, mediatorURL, genesis string, newLog func(secrets []string) *slog.Logger) error {
	iss, err := dev.LoadIssuer(in.StateDir)
	if err != nil {
		return fmt.Errorf("dev: agent: %w", err)
	}
	token, err := iss.Issue(devAgentSubject, []string{"ingest", "depositor"}, 24*time.Hour)
	if err != nil {
		return fmt.Errorf("dev: agent: %w", err)
	}
	tokenPath := filepath.Join(in.StateDir, devAgentTokenFile)
	if err := os.WriteFile(tokenPath, []byte(token+"\n"), 0o600); err != nil {
		return fmt.Errorf("dev: agent token: %w", err)
	}
	conf, err := json.MarshalIndent(map[string]any{
		"listen":               "127.0.0.1:0",
		"mediator_url":         mediatorURL,
		"token_file":           tokenPath,
		"roster_genesis":       genesis,
		"pseudonym_token_file": in.PseudonymGatewayTokenFile,
		"state_file":           filepath.Join(in.StateDir, devAgentStateFile),
	}, "", "  ")
	if err != nil {
		return err
	}
	confPath := filepath.Join(in.StateDir, devAgentConfigFile)
	if err := os.WriteFile(confPath, append(conf, '\n'), 0o600); err != nil {
		return fmt.Errorf("dev: agent config: %w", err)
	}
	cfg, err := agent.Load(confPath)
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	log := newLog(cfg.Secrets())
	a, err := agent.New(ctx, cfg, log)
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	ln, err := agent.Listen(cfg.Listen)
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	in.AgentURL = "http://" + ln.Addr().String()
	go func() {
		if err := a.Serve(ctx, ln); err != nil && ctx.Err() == nil {
			log.Error("dev agent stopped", "err", err)
		}
	}()
	return nil
}

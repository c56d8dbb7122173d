package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/client"
	"github.com/mediatorhq/mediator/custodian"
	"github.com/mediatorhq/mediator/dev"
	"github.com/mediatorhq/mediator/pseudonymservice"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/vaultclient"
)

// devCmd runs the whole service locally: package dev brings up and
// prepares PostgreSQL and Vault, then this serves on them. On Ctrl-C it
// stops everything it started.
func devCmd(ctx context.Context, c *call, args []string) error {
	var addr, stateDir, level string
	var limits serveConfig // the per-identity rates, as serve takes them
	fs := c.newFlags(append([]setting{
		{flag: "addr", value: listenAddress(&addr, "127.0.0.1:8080"), usage: "listen address"},
		devStateDirSetting(&stateDir, "where the dev issuer key, PostgreSQL data (if started here) and env file live"),
		{flag: "log-level", value: logLevel(&level, "info"), usage: "debug, info, warn or error"},
	}, serveLimitSettings(&limits)...)...)
	keep := fs.Bool("keep", false, "keep the dev database when dev exits; by default the database dev created is dropped on exit (one named by DATABASE_URL is never dropped)")
	withMirror := fs.Bool("mirror", false, "also run a regulator's mirror (C2SP tlog-mirror) of the log on a database of its own, and require its cosignature, beside the custodians', before a checkpoint is published")
	withHA := fs.Bool("ha", false, "run the mediator's database as a pg_auto_failover formation (a monitor, a primary and its synchronous standby; docs/operations.md), writing to the primary and reading from the standby; kill -USR1 dev for a failover. The formation lives in a temporary directory, even with --keep")
	cpuProfile := fs.String("cpu-profile", "", "write a Go CPU profile of this process (the mediator, the dev custodians and pseudonym service) to this file until dev stops (read it with go tool pprof); it holds code addresses and sample counts, never data")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cpuProfile != "" {
		stop, err := startCPUProfile(*cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	// Secrets are known only once the dependencies are up; a second logger
	// with them masked serves from then on.
	boot := newLogger(c.stderr, level, nil)
	setGCPercent(boot)
	in, err := dev.Start(ctx, boot, stateDir, dev.Options{Keep: *keep})
	if err != nil {
		return err
	}
	defer in.Stop()
	log := newLogger(c.stderr, level, in.Secrets())
	pseudonymEntry, err := startDevPseudonym(ctx, in, log)
	if err != nil {
		return err
	}
	custodiansFile, setDigest, approvers, genesis, err := startDevCustodians(ctx, in, pseudonymEntry, log)
	if err != nil {
		return err
	}
	genesisDigest, err := genesis.Digest()
	if err != nil {
		return err
	}
	if *withMirror {
		if _, err := startDevMirror(ctx, in, *keep, log); err != nil {
			return err
		}
	}
	var readURL string
	if *withHA {
		write, read, stopFormation, err := startDevFormation(ctx, log)
		if err != nil {
			return err
		}
		defer stopFormation()
		in.DatabaseURL, readURL = write, read
	}
	cfg := serveConfig{
		Addr:               addr,
		DatabaseURL:        in.DatabaseURL,
		DatabaseReadURL:    readURL,
		VaultAddr:          in.Vault.Addr,
		VaultRoleID:        in.AppRole.RoleID,
		VaultSecretID:      in.AppRole.SecretID,
		JWTIssuer:          dev.IssuerName,
		JWTAudience:        dev.Audience,
		JWKS:               in.JWKSPath,
		LogLevel:           level,
		ShutdownTimeout:    10 * time.Second,
		LogOrigin:          dev.LogOrigin,
		CheckpointInterval: time.Second,
		CheckpointKeyFile:  in.CheckpointKeyFile,
		StatsMinGroup:      defaultStatsMinGroup,
		Limits:             limits.Limits,
		Custodians:         custodiansFile,
		RosterGenesis:      genesisDigest,
		Witnesses:          in.WitnessesFile,
		LivenessWindow:     7 * 24 * time.Hour,
		LivenessInterval:   time.Minute,
		ProposalWait:       72 * time.Hour,
	}
	ready := make(chan string, 1)
	errc := make(chan error, 1)
	go func() { errc <- serve(ctx, cfg, log, ready) }()
	select {
	case err := <-errc:
		return fmt.Errorf("dev: %w", err)
	case listening := <-ready:
		url := "http://" + listening
		if err := adoptDevGenesis(ctx, url, stateDir, approvers, genesis); err != nil {
			return err
		}
		agentLog := func(secrets []string) *slog.Logger {
			return newLogger(c.stderr, level, append(in.Secrets(), secrets...))
		}
		if err := startDevAgent(ctx, in, url, genesisDigest, agentLog); err != nil {
			return err
		}
		if err := in.Publish(url, setDigest, genesisDigest); err != nil {
			return err
		}
		defer in.Unpublish()
		printDevBanner(c.stdout, url, in.AgentURL, stateDir, in.Postgres.Source, in.Vault.Source, *keep)
	}
	return <-errc
}

// startCPUProfile profiles this process into path until the returned
// function is called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("dev: cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("dev: cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

func printDevBanner(w io.Writer, url, agentURL, stateDir, pgSource, vaultSource string, keep bool) {
	self := "mediator"
	if len(os.Args) > 0 && strings.Contains(os.Args[0], "/") && !strings.Contains(os.Args[0], "go-build") {
		self = os.Args[0]
	}
	stateFlag := ""
	if stateDir != dev.DefaultStateDir() {
		stateFlag = " --state-dir " + stateDir
	}
	exit := "Ctrl-C stops everything this command started, and drops the database it created (--keep keeps it)."
	if keep {
		exit = "Ctrl-C stops everything this command started; the database is kept (--keep)."
	}
	fmt.Fprintf(w, `
mediator dev is serving on %[1]s
  PostgreSQL: %[3]s; Vault: %[4]s (dev server, in memory)
  custodians: custodian-1 … custodian-5 (threshold 3), each with its own AppRole and key;
              each witnesses the log, and a checkpoint is published once 3 cosigned it
  pseudonyms: a VOPRF pseudonym service on loopback, as another organisation would run it,
              named in the genesis roster; the mediator sees only pseudonyms (docs/pseudonyms.md)
  agent:      %[7]s, a gateway agent on loopback: raw events and keys in, no token,
              pseudonymised, split and sealed there (MEDIATOR_AGENT_URL)
  roster: genesis of the approvers dev-legal and dev-security, the officer dev-officer
          (keys in %[6]s) and the five custodians, proposed by the dev admin and
          signed by all three; mediator roster verify checks it

Try:
  curl %[1]s/readyz
  TOKEN=$(%[2]s dev token%[5]s --sub alice --roles officer,auditor)
  curl -H "Authorization: Bearer $TOKEN" %[1]s/v1/whoami
  eval "$(%[2]s dev env%[5]s)"   # DATABASE_URL, VAULT_ADDR, VAULT_TOKEN, MEDIATOR_ADDR, MEDIATOR_AGENT_URL, MEDIATOR_ROSTER_GENESIS,
                                 # MEDIATOR_DEV_LEGAL_KEY (and _SECURITY_, _OFFICER_), MEDIATOR_WITNESSES, …
  %[2]s loadgen --duration 10s    # realistic events; then: %[2]s audit verify

%[8]s
`, url, self, pgSource, vaultSource, stateFlag, stateDir, agentURL, exit)
}

// devStateDirSetting is the dev instance's state directory; usage says
// what the command keeps or finds there.
func devStateDirSetting(dst *string, usage string) setting {
	return setting{flag: "state-dir", env: vars("MEDIATOR_DEV_STATE_DIR"), value: text(dst, dev.DefaultStateDir()), usage: usage}
}

// devTokenCmd prints a bearer token the running dev instance accepts.
func devTokenCmd(ctx context.Context, c *call, args []string) error {
	var stateDir string
	fs := c.newFlags(devStateDirSetting(&stateDir, "the dev instance's state dir"))
	sub := fs.String("sub", "", "subject (the caller's id)")
	roles := fs.String("roles", "", "comma-separated roles: ingest, depositor, officer, approver, auditor, admin, metrics")
	ttl := fs.Duration("ttl", time.Hour, "lifetime, at most 24h")
	initIssuer := fs.Bool("init", false, "create the dev issuer key (and its JWKS) in --state-dir if there is none, as deploy/compose does")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *sub == "" {
		return errors.New("dev token: --sub is required")
	}
	load := dev.LoadIssuer
	if *initIssuer {
		load = dev.LoadOrCreateIssuer
	}
	iss, err := load(stateDir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("dev token: no dev issuer key in %s: start `mediator dev` first", stateDir)
		}
		return fmt.Errorf("dev token: %w", err)
	}
	var rs stringList
	_ = rs.Set(*roles)
	tok, err := iss.Issue(*sub, rs, *ttl)
	if err != nil {
		return fmt.Errorf("dev token: %w", err)
	}
	fmt.Fprintln(c.stdout, tok)
	return nil
}

// devEnvCmd prints export lines for reaching the running dev instance.
func devEnvCmd(ctx context.Context, c *call, args []string) error {
	var stateDir string
	if err := c.newFlags(devStateDirSetting(&stateDir, "the dev instance's state dir")).Parse(args); err != nil {
		return err
	}
	lines, err := dev.EnvLines(stateDir)
	if err != nil {
		return err
	}
	for _, l := range lines {
		fmt.Fprintln(c.stdout, l)
	}
	return nil
}

// startDevPseudonym runs the dev pseudonym service in this process on a
// free loopback port, as a custodian's organisation would run it, with
// its key kept in the state dir (dev.PseudonymService), and returns its
// roster entry. It records the URL and the dev gateway's token file in
// in, for `mediator dev env`.
func startDevPseudonym(ctx context.Context, in *dev.Instance, log *slog.Logger) (*roster.PseudonymService, error) {
	cfg, tokens, err := dev.PseudonymService(in.StateDir)
	if err != nil {
		return nil, err
	}
	ready := make(chan string, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- servePseudonym(ctx, pseudonymservice.File{Listen: "127.0.0.1:0"}, cfg, log, ready)
	}()
	select {
	case err := <-errc:
		return nil, fmt.Errorf("dev: pseudonym service: %w", err)
	case addr := <-ready:
		in.PseudonymURL, in.PseudonymTokenFile, in.PseudonymGatewayTokenFile = "http://"+addr, tokens.Officer, tokens.Gateway
	}
	go func() {
		if err := <-errc; err != nil && ctx.Err() == nil {
			log.Error("dev pseudonym service stopped", "err", err)
		}
	}()
	return &roster.PseudonymService{URL: in.PseudonymURL, PublicKeys: []string{cfg.Key.Public().String()}}, nil
}

// startDevCustodians prepares the five dev custodians, each pinning the
// genesis roster of the dev approvers and these custodians, runs each as a
// listener of this process, and writes the mediator's custodians file. It
// returns the file, the set's digest, the dev approvers and the genesis.
func startDevCustodians(ctx context.Context, in *dev.Instance, pseudonymEntry *roster.PseudonymService, log *slog.Logger) (string, string, []dev.Approver, roster.Roster, error) {
	approvers, err := dev.Approvers(in.StateDir)
	if err != nil {
		return "", "", nil, roster.Roster{}, err
	}
	admin, err := vaultclient.Connect(ctx, log, vaultclient.Config{Addr: in.Vault.Addr, Token: in.Vault.Token})
	if err != nil {
		return "", "", nil, roster.Roster{}, fmt.Errorf("dev: %w", err)
	}
	dir := filepath.Join(in.StateDir, "custodians")
	cs, err := dev.PrepareCustodians(ctx, admin, dev.CustodianOptions{Dir: dir, Approvers: dev.RosterApprovers(approvers),
		WitnessLogs: []custodian.WitnessLog{{Origin: dev.LogOrigin, VerifierKeys: []string{in.VerifierKey}}}, Pseudonym: pseudonymEntry})
	if err != nil {
		return "", "", nil, roster.Roster{}, err
	}
	for _, c := range cs {
		go func() {
			if err := serveCustodian(ctx, c.Config, log, nil); err != nil && ctx.Err() == nil {
				log.Error("dev custodian stopped", "custodian", c.Name, "err", err)
			}
		}()
	}
	file := filepath.Join(dir, "mediator-custodians.json")
	digest, err := dev.WaitCustodians(ctx, cs, file, time.Minute)
	if err != nil {
		return "", "", nil, roster.Roster{}, err
	}
	in.WitnessesFile = filepath.Join(dir, "mediator-witnesses.json")
	if err := dev.WriteWitnesses(ctx, cs, in.WitnessesFile); err != nil {
		return "", "", nil, roster.Roster{}, err
	}
	return file, digest, approvers, cs[0].Genesis, nil
}

// adoptDevGenesis has the running mediator adopt the dev genesis roster,
// as a team founding it would: the dev admin proposes it and each dev
// approver signs it with their key from the state directory.
func adoptDevGenesis(ctx context.Context, url, stateDir string, approvers []dev.Approver, genesis roster.Roster) error {
	iss, err := dev.LoadIssuer(stateDir)
	if err != nil {
		return err
	}
	as := func(sub, role string) (*client.Client, error) {
		tok, err := iss.Issue(sub, []string{role}, time.Minute)
		if err != nil {
			return nil, err
		}
		return client.New(url, tok, nil)
	}
	admin, err := as("dev-admin", "admin")
	if err != nil {
		return err
	}
	var signers []dev.Signer
	for _, a := range approvers {
		file, err := os.ReadFile(a.KeyFile)
		if err != nil {
			return fmt.Errorf("dev: %w", err)
		}
		key, err := approval.ParseSigningKey(file)
		if err != nil {
			return err
		}
		role := "approver"
		if slices.Contains(a.Roles, roster.RoleOfficer) {
			role = roster.RoleOfficer
		}
		c, err := as(a.ID, role)
		if err != nil {
			return err
		}
		signers = append(signers, dev.Signer{ID: a.ID, Key: key, Client: c})
	}
	return dev.AdoptGenesis(ctx, admin, genesis, signers)
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediatorhq/mediator/audit"
	"github.com/mediatorhq/mediator/escrow"
	"github.com/mediatorhq/mediator/migrations"
)

const escrowUsage = `usage: mediator escrow deposit|custodians|destroy|hold|release-hold [--help]

  deposit     split and seal a key on this machine and escrow it (depositor token)
  custodians  print the custodian set the mediator serves and its digest
  destroy     destroy escrowed keys past retention (operator: database and custodians)
  hold        put a conversation under a legal hold (operator)
  release-hold
              release a legal hold (operator)
`

// escrowCmd runs the escrow verbs: deposit and custodians are API clients;
// destroy and the legal holds are operator commands on the database and
// the custodians.
func escrowCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, escrowUsage)
		return exitCode(2)
	}
	switch args[0] {
	case "deposit":
		return escrowDeposit(ctx, args[1:], stdout, stderr)
	case "custodians":
		return escrowCustodians(ctx, args[1:], stdout, stderr)
	case "destroy", "hold", "release-hold":
		return escrowOperator(ctx, args, stdout, stderr)
	}
	fmt.Fprintf(stderr, "unknown escrow verb %q\n\n%s", args[0], escrowUsage)
	return exitCode(2)
}

func escrowDeposit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("escrow deposit", "mediator escrow deposit --conversation C --key-id K --key-file F [--roster-genesis DIGEST]", stderr)
	connect := bindClientFlags(fs)
	conversation := fs.String("conversation", "", "the conversation id")
	keyID := fs.String("key-id", "", "the key's id within the conversation (an epoch, a session)")
	keyFile := fs.String("key-file", "", "file holding the raw key bytes (16–64)")
	genesis := fs.String("roster-genesis", env("", "MEDIATOR_ROSTER_GENESIS"), "the digest of the roster genesis you trust; the key is sealed to the custodians of the roster version in force, verified from it [MEDIATOR_ROSTER_GENESIS]")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *genesis == "" {
		return errors.New("escrow deposit: --roster-genesis (or MEDIATOR_ROSTER_GENESIS) is required: the key is sealed only to custodians of a roster that verifies from a genesis you pinned")
	}
	c, err := connect()
	if err != nil {
		return err
	}
	key, err := os.ReadFile(*keyFile)
	if err != nil {
		return fmt.Errorf("escrow deposit: --key-file: %w", err)
	}
	defer clear(key)
	d, err := c.DepositByRoster(ctx, *genesis, *conversation, *keyID, key)
	if err != nil {
		return err
	}
	verb := "escrowed"
	if !d.Created {
		verb = "already escrowed"
	}
	fmt.Fprintf(stdout, "%s %s/%s as escrow %s: %d of %d custodians (%v), commitment %s, audit seq %d\n",
		verb, *conversation, *keyID, d.EscrowID, d.Threshold, d.Shares, d.Custodians, d.KeyCommitment, d.AuditSeq)
	return nil
}

func escrowCustodians(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("escrow custodians", "mediator escrow custodians", stderr)
	connect := bindClientFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := connect()
	if err != nil {
		return err
	}
	set, digest, err := c.FetchCustodianSet(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "threshold %d of %d\n", set.Threshold, len(set.Custodians))
	for i, cu := range set.Custodians {
		fmt.Fprintf(stdout, "%d %s hpke %s\n", i+1, cu.Name, cu.HPKEKey.Fingerprint())
	}
	fmt.Fprintf(stdout, "digest %s\n", digest)
	fmt.Fprintln(stderr, "Compare the digest with the one your custodians' operators publish before pinning it (MEDIATOR_CUSTODIAN_SET).")
	return nil
}

// escrowOperator runs destroy, hold and release-hold with the serve
// configuration (database and custodians).
func escrowOperator(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg serveConfig
	fs := newFlagSet("escrow "+args[0], "mediator escrow "+args[0]+" [flags] (plus the serve flags for the database and custodians)", stderr)
	bindServeFlags(fs, &cfg)
	var (
		before       = fs.String("before", "", "destroy: escrows deposited before this RFC 3339 time or YYYY-MM-DD date")
		conversation = fs.String("conversation", "", "hold: the conversation to hold")
		reason       = fs.String("reason", "", "hold: why (case, order); kept in the audit log")
		by           = fs.String("by", os.Getenv("USER"), "hold, release-hold: who acts")
		holdID       = fs.String("id", "", "release-hold: the hold id")
	)
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if err := cfg.resolve(); err != nil {
		return err
	}
	if cfg.DatabaseURL == "" {
		return errors.New("escrow: --database-url (or DATABASE_URL) is required")
	}
	log := newLogger(stderr, cfg.LogLevel, cfg.secrets())
	pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("escrow: database: %w", err)
	}
	defer pool.Close()
	if err := migrations.CheckPool(ctx, pool, schemaCheckTimeout); err != nil {
		return err
	}
	svc, err := newEscrowService(cfg, pool, audit.NewTxAppender(), log, nil)
	if err != nil {
		return err
	}
	switch args[0] {
	case "hold":
		id, err := svc.PlaceHold(ctx, *conversation, *reason, *by)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "legal hold %s placed on conversation %q\n", id, *conversation)
		return nil
	case "release-hold":
		if err := svc.ReleaseHold(ctx, *holdID, *by); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "legal hold %s released\n", *holdID)
		return nil
	}
	t, err := parseDate(*before)
	if err != nil {
		return err
	}
	rep, err := svc.Destroy(ctx, t)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "destroyed %d, kept under legal hold %d, failed %d\n", len(rep.Destroyed), len(rep.Held), len(rep.Failed))
	for id, why := range rep.Failed {
		fmt.Fprintf(stdout, "FAIL %s: %s\n", id, why)
	}
	if len(rep.Failed) > 0 {
		return exitCode(1)
	}
	return nil
}

// newEscrowService builds the escrow service on the custodians file, or
// without custodians (deposits answer 503) when there is none.
func newEscrowService(cfg serveConfig, pool *pgxpool.Pool, log audit.TxAppender, logger *slog.Logger, metrics *escrow.Metrics) (*escrow.Service, error) {
	rows := escrow.NewPGRows(pool, log)
	c := escrow.Config{Deposits: rows, Lifecycle: rows, Log: logger, Metrics: metrics}
	if cfg.Custodians != "" {
		b, err := os.ReadFile(cfg.Custodians)
		if err != nil {
			return nil, fmt.Errorf("custodians: %w", err)
		}
		f, err := escrow.ParseCustodians(b)
		if err != nil {
			return nil, err
		}
		if c.Remotes, err = f.Remotes(); err != nil {
			return nil, err
		}
		c.Set = f.Set()
	}
	return escrow.New(c)
}

func parseDate(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, errors.New("escrow destroy: --before must be an RFC 3339 time or a YYYY-MM-DD date")
}

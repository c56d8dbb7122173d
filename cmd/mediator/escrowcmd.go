package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediatorhq/mediator/audit"
	"github.com/mediatorhq/mediator/escrow"
	"github.com/mediatorhq/mediator/migrations"
	"github.com/mediatorhq/mediator/vaultclient"
)

// escrowCmd runs the escrow lifecycle commands an operator needs.
func escrowCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, "usage: mediator escrow destroy|hold|release-hold|rewrap [--help]\n")
		return exitCode(2)
	}
	var cfg serveConfig
	fs := newFlagSet("escrow "+args[0], "mediator escrow "+args[0]+" [flags] (plus the serve flags for the database, Vault and custodians)", stderr)
	bindServeFlags(fs, &cfg)
	var (
		before       = fs.String("before", "", "destroy: escrows deposited before this RFC 3339 time or YYYY-MM-DD date")
		conversation = fs.String("conversation", "", "hold: the conversation to hold")
		reason       = fs.String("reason", "", "hold: why (case, order); kept in the audit log")
		by           = fs.String("by", os.Getenv("USER"), "hold, release-hold: who acts")
		holdID       = fs.String("id", "", "release-hold: the hold id")
		custodian    = fs.String("custodian", "", "rewrap: only this custodian's shares (default: all)")
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
	store := audit.NewStore(pool)
	rows := escrow.NewPGRows(pool, store)
	switch args[0] {
	case "hold":
		id, err := rows.PlaceHold(ctx, *conversation, *reason, *by)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "legal hold %s placed on conversation %q\n", id, *conversation)
		return nil
	case "release-hold":
		if err := rows.ReleaseHold(ctx, *holdID, *by); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "legal hold %s released\n", *holdID)
		return nil
	case "rewrap", "destroy":
		vault, err := vaultclient.Connect(ctx, log, cfg.vault(nil))
		if err != nil {
			return err
		}
		svc, err := newEscrowService(ctx, cfg, vault, pool, store, log, nil, nil)
		if err != nil {
			return err
		}
		if args[0] == "rewrap" {
			only := map[string]bool{}
			if *custodian != "" {
				only[*custodian] = true
			}
			rep, err := svc.Rewrap(ctx, only)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "rewrapped %d shares, %d already current, %d failed\n", rep.Rewrapped, rep.Unchanged, len(rep.Failed))
			for what, why := range rep.Failed {
				fmt.Fprintf(stdout, "FAIL %s: %s\n", what, why)
			}
			if len(rep.Failed) > 0 {
				return exitCode(1)
			}
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
	return fmt.Errorf("escrow: unknown command %q", args[0])
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

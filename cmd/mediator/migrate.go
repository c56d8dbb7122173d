package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"

	"github.com/mediatorhq/mediator/migrations"
)

func migrateCmd(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("migrate", "mediator migrate [--database-url URL]", stderr)
	dsn := fs.String("database-url", env("", "MEDIATOR_DATABASE_URL", "DATABASE_URL"), "PostgreSQL URL of a role that may create tables [MEDIATOR_DATABASE_URL, DATABASE_URL]")
	level := fs.String("log-level", env("info", "MEDIATOR_LOG_LEVEL"), "debug, info, warn or error [MEDIATOR_LOG_LEVEL]")
	if err := fs.Parse(args); err != nil {
		return err
	}
	url, err := databaseURL(*dsn)
	if err != nil {
		return err
	}
	if url == "" {
		return fmt.Errorf("--database-url (or MEDIATOR_DATABASE_URL / DATABASE_URL / MEDIATOR_DATABASE_URL_FILE) is required")
	}
	return migrate(ctx, url, newLogger(stderr, *level, dsnSecrets(url)))
}

// migrate applies every pending migration to dsn.
func migrate(ctx context.Context, dsn string, log *slog.Logger) error {
	db, err := migrations.Open(dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	applied, err := migrations.Up(ctx, db, log)
	if err != nil {
		return err
	}
	current, _, err := migrations.Versions(ctx, db)
	if err != nil {
		return err
	}
	log.Info("schema is current", "version", current, "applied_now", len(applied))
	return nil
}

// dsnSecrets returns the password in a PostgreSQL URL, for the log mask.
func dsnSecrets(dsn string) []string {
	u, err := url.Parse(dsn)
	if err != nil || u.User == nil {
		return nil
	}
	if p, ok := u.User.Password(); ok {
		return []string{p}
	}
	return nil
}

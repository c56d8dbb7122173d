package main

import (
	"context"
	"fmt"
	"io"
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
	return migrations.Apply(ctx, url, newLogger(stderr, *level, dsnSecrets(url)))
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

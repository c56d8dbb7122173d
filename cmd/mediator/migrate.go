package main

import (
	"context"
	"errors"
	"net/url"

	"github.com/mediatorhq/mediator/migrations"
)

// migrateCmd applies the embedded SQL migrations.
func migrateCmd(ctx context.Context, c *call, args []string) error {
	var dsn, dsnFile, level string
	fs := c.newFlags(
		databaseURLSetting(&dsn, "PostgreSQL URL of a role that may create tables"),
		databaseURLFileSetting(&dsnFile),
		logLevelSetting(&level))
	if err := fs.Parse(args); err != nil {
		return err
	}
	url, err := readDatabaseURL(dsn, dsnFile)
	if err != nil {
		return err
	}
	if url == "" {
		return errors.New("--database-url (or MEDIATOR_DATABASE_URL / DATABASE_URL / MEDIATOR_DATABASE_URL_FILE) is required")
	}
	return migrations.Apply(ctx, url, newLogger(c.stderr, level, dsnSecrets(url)))
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

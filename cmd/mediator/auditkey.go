package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/vaultclient"
)

// verifierKeySettingNames are the settings of serve that audit
// verifier-key reads: the log's origin, the checkpoint key file, and the
// Vault connection, so that it finds the key exactly as serve does.
var verifierKeySettingNames = []string{"log-origin", "checkpoint-key-file", "vault-addr", "vault-token", "VAULT_TOKEN",
	"vault-token-file", "vault-role-id", "vault-role-id-file", "MEDIATOR_VAULT_SECRET_ID", "vault-secret-id-file"}

// pickSettings returns the settings of all named (by flag, or by first
// variable for a setting without one), in all's order.
func pickSettings(all []setting, names ...string) []setting {
	var out []setting
	for _, s := range all {
		name := s.flag
		if name == "" && len(s.env) > 0 {
			name = s.env[0]
		}
		if slices.Contains(names, name) {
			out = append(out, s)
		}
	}
	return out
}

// auditVerifierKeyCmd prints the note verifier key of the log's
// checkpoints without a running mediator: from the checkpoint key file,
// or from the Vault Transit key mediator-checkpoint, with serve's own
// settings and serve's own code (checkpointKey). With --entry it prints
// the roster's log entry instead, {"origin","verifier_keys"}: the key in
// force, then the earlier versions of a Transit key.
func auditVerifierKeyCmd(ctx context.Context, c *call, args []string) error {
	var cfg serveConfig
	var vaultCLIToken string
	fs := c.newFlags(pickSettings(serveSettings(&cfg, &vaultCLIToken), verifierKeySettingNames...)...)
	entry := fs.Bool("entry", false, `print the roster's log entry {"origin","verifier_keys"} (the key in force, then a Transit key's earlier versions) for the genesis draft`)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return exitCode(2)
	}
	if err := cfg.resolve(vaultCLIToken); err != nil {
		return fmt.Errorf("audit verifier-key: %w", err)
	}
	var vault *vaultapi.Client
	if cfg.CheckpointKeyFile == "" {
		if cfg.VaultAddr == "" || (cfg.VaultToken == "" && cfg.VaultTokenFile == "" && cfg.VaultRoleID == "") {
			return errors.New("audit verifier-key: give --checkpoint-key-file, or the Vault serve reads the key from (--vault-addr with a token or an AppRole, or VAULT_ADDR and VAULT_TOKEN)")
		}
		var err error
		if vault, err = vaultclient.Connect(ctx, newLogger(io.Discard, "info", nil), cfg.vault(nil)); err != nil {
			return fmt.Errorf("audit verifier-key: %w", err)
		}
	}
	key, err := checkpointKey(ctx, cfg, vault)
	if err != nil {
		return fmt.Errorf("audit verifier-key: %w", err)
	}
	if !*entry {
		fmt.Fprintln(c.stdout, key.VerifierKey())
		return nil
	}
	l := roster.AuditLog{Origin: cfg.LogOrigin, VerifierKeys: []string{key.VerifierKey()}}
	if past, ok := key.(interface{ PastVerifierKeys() []string }); ok {
		old := past.PastVerifierKeys()
		for i := len(old) - 1; i >= 0; i-- { // newest first, after the key in force
			l.VerifierKeys = append(l.VerifierKeys, old[i])
		}
	}
	return printJSON(c.stdout, l)
}

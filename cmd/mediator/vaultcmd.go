package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	vaultsetup "github.com/mediatorhq/mediator/deploy/vault"
	"github.com/mediatorhq/mediator/dev/servers"
	"github.com/mediatorhq/mediator/vaultclient"
)

// vaultBootstrapCmd prepares a Vault server with an operator's token. The
// AppRole secret id goes to a file (0600), never to the terminal or a log.
func vaultBootstrapCmd(ctx context.Context, c *call, args []string) error {
	var addr, token string
	fs := c.newFlags(
		setting{flag: "vault-addr", env: vars("VAULT_ADDR"), value: text(&addr, ""), usage: "Vault address"},
		setting{env: vars("VAULT_TOKEN"), value: text(&token, ""), secret: true, usage: "a Vault token allowed to manage mounts, policies and auth methods"})
	custodianName := fs.String("custodian", "", "prepare this Vault for custodian NAME instead (its Transit key, KV prefix, policy and AppRole only; docs/custodians.md)")
	hsm := fs.Bool("hsm", false, "with --custodian: its wrapping key is on a PKCS#11 HSM (`mediator custodian init` makes it), so no Transit key and no Transit path in its policy")
	secretFile := fs.String("secret-id-file", "", "file to write the AppRole secret id to (created 0600)")
	roleFile := fs.String("role-id-file", "", "also write the AppRole role id to this file (for MEDIATOR_VAULT_ROLE_ID_FILE)")
	replace := fs.Bool("replace", false, "replace the files if they exist (a re-run of the bootstrap, as deploy/compose.yaml does on every start); without it they must not exist")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if addr == "" || token == "" {
		return errors.New("vault bootstrap: set VAULT_ADDR and VAULT_TOKEN (a token allowed to manage mounts, policies and auth methods)")
	}
	if *secretFile == "" {
		return errors.New("vault bootstrap: --secret-id-file is required")
	}
	if *hsm && *custodianName == "" {
		return errors.New("vault bootstrap: --hsm needs --custodian NAME")
	}
	client, err := vaultclient.Connect(ctx, newLogger(io.Discard, "info", nil), vaultclient.Config{Addr: addr, Token: token})
	if err != nil {
		return fmt.Errorf("vault bootstrap: %w", err)
	}
	var creds vaultsetup.Credentials
	if *custodianName != "" {
		bootstrap := vaultsetup.BootstrapCustodian
		if *hsm {
			bootstrap = vaultsetup.BootstrapHSMCustodian
		}
		setup, err := bootstrap(ctx, client, *custodianName)
		if err != nil {
			return err
		}
		creds = setup.Credentials
	} else if creds, err = vaultsetup.Bootstrap(ctx, client); err != nil {
		return err
	}
	write := writeNew
	if *replace {
		write = replaceFile
	}
	if err := write(*secretFile, []byte(creds.SecretID+"\n"), 0o600); err != nil {
		return fmt.Errorf("vault bootstrap: secret id file: %w", err)
	}
	if *roleFile != "" {
		if err := write(*roleFile, []byte(creds.RoleID+"\n"), 0o644); err != nil {
			return fmt.Errorf("vault bootstrap: role id file: %w", err)
		}
	}
	if *custodianName != "" {
		// The custodian's configuration file takes these (docs/custodians.md);
		// an HSM custodian writes its own pkcs11 section instead of transit.
		parts := map[string]any{
			"vault":   map[string]string{"addr": addr, "role_id": creds.RoleID, "secret_id_file": *secretFile},
			"transit": map[string]string{"mount": vaultsetup.TransitMount, "key": *custodianName},
			"kv":      map[string]string{"mount": vaultsetup.KVMount, "prefix": vaultsetup.CustodianPrefix(*custodianName)},
		}
		if *hsm {
			delete(parts, "transit")
		}
		b, _ := json.MarshalIndent(parts, "", "  ")
		fmt.Fprintf(c.stdout, "%s\n", b)
		return nil
	}
	fmt.Fprintf(c.stdout, "export MEDIATOR_VAULT_ADDR=%s\nexport MEDIATOR_VAULT_ROLE_ID=%s\nexport MEDIATOR_VAULT_SECRET_ID_FILE=%s\n",
		shellQuote(addr), shellQuote(creds.RoleID), shellQuote(*secretFile))
	return nil
}

// vaultBuildCmd prints the path of the pinned Vault binary, building it
// first if the cache lacks it. `make test` runs it before the tests so the
// one slow build never happens inside a test's timeout.
func vaultBuildCmd(ctx context.Context, c *call, args []string) error {
	if err := c.newFlags().Parse(args); err != nil {
		return err
	}
	bin, err := servers.EnsureVaultBinary(ctx, newLogger(c.stderr, "info", nil))
	if err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, bin)
	return nil
}

// replaceFile writes data to path through a new file renamed over it, so a
// reader never sees a half-written secret and the mode is perm from the
// start.
func replaceFile(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".new"
	_ = os.Remove(tmp)
	if err := writeNew(tmp, data, perm); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

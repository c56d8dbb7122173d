package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/mod/sumdb/note"

	"github.com/mediatorhq/mediator/access"
	"github.com/mediatorhq/mediator/audit"
	vaultsetup "github.com/mediatorhq/mediator/deploy/vault"
	"github.com/mediatorhq/mediator/vaultclient"
)

// auditVerifyOptions is what audit verify is configured with.
type auditVerifyOptions struct {
	databaseURL, databaseURLFile string
	keys                         []string
	origin, witnesses            string
	vault                        vaultclient.Config // Addr, Token and TokenFile only: to read the key from Transit
}

// auditVerifySettings is audit verify's table of settings, bound to o.
func auditVerifySettings(o *auditVerifyOptions) []setting {
	return []setting{
		databaseURLSetting(&o.databaseURL, "PostgreSQL URL"),
		databaseURLFileSetting(&o.databaseURLFile),
		{flag: "key", env: vars("MEDIATOR_VERIFIER_KEY"), value: verifierKeyOrFile(&o.keys),
			usage: "note verifier key (as GET /v1/audit/verifier-key returns it), or @FILE; repeat for the log's past keys; without it, read from Vault Transit with VAULT_ADDR/VAULT_TOKEN"},
		logOriginSetting(&o.origin, "the log's origin, when the key is read from Vault"),
		witnessesSetting(&o.witnesses, "a witnesses file (quorum and witness keys, as the service's --witnesses): check the checkpoints' cosignatures against it"),
		{env: vars("VAULT_ADDR", "MEDIATOR_VAULT_ADDR"), value: text(&o.vault.Addr, ""), usage: "Vault address, to read the verifier key from Transit without --key"},
		{env: vars("VAULT_TOKEN", "MEDIATOR_VAULT_TOKEN"), value: text(&o.vault.Token, ""), secret: true, usage: "Vault token, to read the verifier key from Transit"},
		{env: vars("MEDIATOR_VAULT_TOKEN_FILE"), value: text(&o.vault.TokenFile, ""), usage: "file holding the Vault token, when no token is set"},
	}
}

// auditVerifyCmd checks the log in the database, or an evidence bundle
// offline. It exits 1 on any mismatch, naming the first bad seq.
func auditVerifyCmd(ctx context.Context, c *call, args []string) error {
	var o auditVerifyOptions
	fs := c.newFlags(auditVerifySettings(&o)...)
	bundle := fs.String("bundle", "", "verify this NDJSON evidence bundle offline instead of the database")
	fs.Var(fs.Lookup("witnesses").Value, "witness", "the same as --witnesses")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var policy audit.WitnessPolicy
	if o.witnesses != "" {
		b, err := os.ReadFile(o.witnesses)
		if err != nil {
			return fmt.Errorf("audit verify: --witnesses: %w", err)
		}
		if policy, err = audit.ParseWitnessPolicy(b); err != nil {
			return err
		}
	}
	verifiers, err := loadVerifiers(ctx, o, *bundle != "")
	if err != nil {
		return err
	}
	var rep *audit.Report
	if *bundle != "" {
		f, err := os.Open(*bundle)
		if err != nil {
			return fmt.Errorf("audit verify: %w", err)
		}
		defer f.Close()
		if rep, err = audit.VerifyBundleWitnessed(f, policy, verifiers...); err != nil {
			fmt.Fprintln(c.stdout, "FAIL:", err)
			return exitCode(1)
		}
	} else if rep, err = verifyDatabase(ctx, o, policy, verifiers); err != nil {
		return err
	}
	for _, p := range rep.Problems {
		fmt.Fprintln(c.stdout, "FAIL:", p)
	}
	if !rep.OK() {
		if rep.FirstBadSeq >= 0 {
			fmt.Fprintf(c.stdout, "first bad seq: %d\n", rep.FirstBadSeq)
		}
		fmt.Fprintf(c.stdout, "verification FAILED: %d problems in %d entries and %d checkpoints\n", len(rep.Problems), rep.Entries, rep.Checkpoints)
		return exitCode(1)
	}
	if len(policy.Witnesses) > 0 && *bundle == "" {
		fmt.Fprintf(c.stdout, "witnesses: %d of %d checkpoints cosigned by the quorum of %d\n", rep.Witnessed, rep.Checkpoints, policy.Quorum)
	}
	fmt.Fprintf(c.stdout, "ok: %d entries and %d checkpoints verified\n", rep.Entries, rep.Checkpoints)
	return nil
}

// verifyDatabase checks the log in the database, the witnesses'
// cosignatures when policy names witnesses, and the access request rows
// against what was signed.
func verifyDatabase(ctx context.Context, o auditVerifyOptions, policy audit.WitnessPolicy, verifiers []note.Verifier) (*audit.Report, error) {
	url, err := readDatabaseURL(o.databaseURL, o.databaseURLFile)
	if err != nil {
		return nil, fmt.Errorf("audit verify: %w", err)
	}
	if url == "" {
		return nil, errors.New("audit verify: --database-url (or DATABASE_URL, MEDIATOR_DATABASE_URL_FILE) is required without --bundle")
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("audit verify: database: %w", err)
	}
	defer pool.Close()
	rep, err := audit.Verify(ctx, pool, verifiers...)
	if err != nil {
		return nil, fmt.Errorf("audit verify: %w", err)
	}
	if len(policy.Witnesses) > 0 {
		if err := audit.CheckWitnesses(ctx, pool, rep, policy, verifiers...); err != nil {
			return nil, fmt.Errorf("audit verify: %w", err)
		}
	}
	// Request rows are an index of the canonical requests approvers
	// signed, which the log holds as filed: name every row whose columns
	// or bytes say something else.
	mismatches, err := access.NewPGStore(pool, nil).Mismatches(ctx)
	if err != nil {
		return nil, fmt.Errorf("audit verify: access requests: %w", err)
	}
	for _, m := range mismatches {
		rep.Problems = append(rep.Problems, fmt.Sprintf("access request %s: the stored request differs from what was signed and logged: %s",
			m.RequestID, strings.Join(m.Fields, ", ")))
	}
	return rep, nil
}

// loadVerifiers reads the verifier keys given, or without any the key
// in Vault Transit (never for a bundle checked offline).
func loadVerifiers(ctx context.Context, o auditVerifyOptions, offline bool) ([]note.Verifier, error) {
	keys := o.keys
	if len(keys) == 0 {
		keys = []string{""}
	}
	var verifiers []note.Verifier
	for _, k := range keys {
		v, err := loadVerifier(ctx, k, o, offline)
		if err != nil {
			return nil, err
		}
		verifiers = append(verifiers, v)
	}
	return verifiers, nil
}

// loadVerifier reads a verifier key from the flag, a file, or Vault.
func loadVerifier(ctx context.Context, key string, o auditVerifyOptions, offline bool) (note.Verifier, error) {
	if strings.HasPrefix(key, "@") {
		b, err := os.ReadFile(key[1:])
		if err != nil {
			return nil, fmt.Errorf("audit verify: key file: %w", err)
		}
		key = string(b)
	}
	key = strings.TrimSpace(key)
	if key == "" {
		if offline {
			return nil, errors.New("audit verify: --key is required with --bundle: offline verification trusts only the key you give it")
		}
		vc := o.vault
		if vc.Addr == "" || (vc.Token == "" && vc.TokenFile == "") {
			return nil, errors.New("audit verify: give --key, or set VAULT_ADDR and VAULT_TOKEN (or MEDIATOR_VAULT_ADDR and MEDIATOR_VAULT_TOKEN_FILE) to read it from Vault")
		}
		if vc.Token != "" {
			vc.TokenFile = ""
		}
		client, err := vaultclient.Connect(ctx, newLogger(io.Discard, "info", nil), vc)
		if err != nil {
			return nil, fmt.Errorf("audit verify: %w", err)
		}
		s, err := vaultclient.NewTransitSigner(ctx, client, vaultsetup.TransitMount, vaultsetup.CheckpointKey, o.origin)
		if err != nil {
			return nil, fmt.Errorf("audit verify: %w", err)
		}
		key = s.VerifierKey()
	}
	v, err := note.NewVerifier(key)
	if err != nil {
		return nil, fmt.Errorf("audit verify: bad verifier key: %w", err)
	}
	return v, nil
}

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

// auditVerifyCmd checks the log in the database, or an evidence bundle
// offline. It exits 1 on any mismatch, naming the first bad seq.
func auditVerifyCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("audit verify", "mediator audit verify [--database-url URL] [--key VKEY] | --bundle FILE --key VKEY", stderr)
	dsn := fs.String("database-url", env("", "MEDIATOR_DATABASE_URL", "DATABASE_URL"), "PostgreSQL URL [MEDIATOR_DATABASE_URL, DATABASE_URL]")
	var keys keyList
	fs.Var(&keys, "key", "note verifier key (as GET /v1/audit/verifier-key returns it), or @FILE; repeat for the log's past keys; without it, $MEDIATOR_VERIFIER_KEY, else read from Vault Transit with VAULT_ADDR/VAULT_TOKEN")
	origin := fs.String("log-origin", env(defaultLogOrigin, "MEDIATOR_LOG_ORIGIN"), "the log's origin, when the key is read from Vault [MEDIATOR_LOG_ORIGIN]")
	bundle := fs.String("bundle", "", "verify this NDJSON evidence bundle offline instead of the database")
	witnessFile := fs.String("witnesses", env("", "MEDIATOR_WITNESSES"), "a witnesses file (quorum and witness keys, as the service's --witnesses): check the checkpoints' cosignatures against it [MEDIATOR_WITNESSES]")
	fs.StringVar(witnessFile, "witness", *witnessFile, "the same as --witnesses")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var policy audit.WitnessPolicy
	if *witnessFile != "" {
		b, err := os.ReadFile(*witnessFile)
		if err != nil {
			return fmt.Errorf("audit verify: --witnesses: %w", err)
		}
		if policy, err = audit.ParseWitnessPolicy(b); err != nil {
			return err
		}
	}
	if len(keys) == 0 && os.Getenv("MEDIATOR_VERIFIER_KEY") != "" {
		keys = keyList{os.Getenv("MEDIATOR_VERIFIER_KEY")}
	}
	if len(keys) == 0 {
		keys = keyList{""}
	}
	var verifiers []note.Verifier
	for _, k := range keys {
		v, err := loadVerifier(ctx, k, *origin, *bundle != "")
		if err != nil {
			return err
		}
		verifiers = append(verifiers, v)
	}
	var rep *audit.Report
	if *bundle != "" {
		f, err := os.Open(*bundle)
		if err != nil {
			return fmt.Errorf("audit verify: %w", err)
		}
		defer f.Close()
		if rep, err = audit.VerifyBundleWitnessed(f, policy, verifiers...); err != nil {
			fmt.Fprintln(stdout, "FAIL:", err)
			return exitCode(1)
		}
	} else {
		url, err := databaseURL(*dsn)
		if err != nil {
			return fmt.Errorf("audit verify: %w", err)
		}
		if url == "" {
			return errors.New("audit verify: --database-url (or DATABASE_URL, MEDIATOR_DATABASE_URL_FILE) is required without --bundle")
		}
		pool, err := pgxpool.New(ctx, url)
		if err != nil {
			return fmt.Errorf("audit verify: database: %w", err)
		}
		defer pool.Close()
		if rep, err = audit.Verify(ctx, pool, verifiers...); err != nil {
			return fmt.Errorf("audit verify: %w", err)
		}
		if len(policy.Witnesses) > 0 {
			if err := audit.CheckWitnesses(ctx, pool, rep, policy, verifiers...); err != nil {
				return fmt.Errorf("audit verify: %w", err)
			}
		}
		// Request rows are an index of the canonical requests approvers
		// signed: name every row whose columns say something else.
		mismatches, err := access.NewPGStore(pool, nil).Mismatches(ctx)
		if err != nil {
			return fmt.Errorf("audit verify: access requests: %w", err)
		}
		for _, m := range mismatches {
			rep.Problems = append(rep.Problems, fmt.Sprintf("access request %s: stored columns differ from the signed canonical request: %s",
				m.RequestID, strings.Join(m.Fields, ", ")))
		}
	}
	for _, p := range rep.Problems {
		fmt.Fprintln(stdout, "FAIL:", p)
	}
	if !rep.OK() {
		if rep.FirstBadSeq >= 0 {
			fmt.Fprintf(stdout, "first bad seq: %d\n", rep.FirstBadSeq)
		}
		fmt.Fprintf(stdout, "verification FAILED: %d problems in %d entries and %d checkpoints\n", len(rep.Problems), rep.Entries, rep.Checkpoints)
		return exitCode(1)
	}
	if len(policy.Witnesses) > 0 && *bundle == "" {
		fmt.Fprintf(stdout, "witnesses: %d of %d checkpoints cosigned by the quorum of %d\n", rep.Witnessed, rep.Checkpoints, policy.Quorum)
	}
	fmt.Fprintf(stdout, "ok: %d entries and %d checkpoints verified\n", rep.Entries, rep.Checkpoints)
	return nil
}

// loadVerifier reads a verifier key from the flag, a file, or Vault.
func loadVerifier(ctx context.Context, key, origin string, offline bool) (note.Verifier, error) {
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
		addr, tok := env("", "VAULT_ADDR", "MEDIATOR_VAULT_ADDR"), env("", "VAULT_TOKEN", "MEDIATOR_VAULT_TOKEN")
		tokFile := os.Getenv("MEDIATOR_VAULT_TOKEN_FILE")
		if addr == "" || (tok == "" && tokFile == "") {
			return nil, errors.New("audit verify: give --key, or set VAULT_ADDR and VAULT_TOKEN (or MEDIATOR_VAULT_ADDR and MEDIATOR_VAULT_TOKEN_FILE) to read it from Vault")
		}
		vc := vaultclient.Config{Addr: addr, Token: tok}
		if tok == "" {
			vc.TokenFile = tokFile
		}
		client, err := vaultclient.Connect(ctx, newLogger(io.Discard, "info", nil), vc)
		if err != nil {
			return nil, fmt.Errorf("audit verify: %w", err)
		}
		s, err := vaultclient.NewTransitSigner(ctx, client, vaultsetup.TransitMount, vaultsetup.CheckpointKey, origin)
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

// keyList collects repeated --key flags.
type keyList []string

func (k *keyList) String() string     { return strings.Join(*k, ",") }
func (k *keyList) Set(v string) error { *k = append(*k, v); return nil }

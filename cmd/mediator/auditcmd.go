package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
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
	// origin is the log's origin as configured (--log-origin,
	// MEDIATOR_LOG_ORIGIN), or "" when it is not: then the keys' name,
	// or for a key from Vault defaultLogOrigin.
	origin, witnesses string
	// state is the --state file: the last verified checkpoint, to
	// verify from (incremental verification); "" for a full run.
	state string
	vault vaultclient.Config // Addr, Token and TokenFile only: to read the key from Transit
}

// auditVerifySettings is audit verify's table of settings, bound to o.
func auditVerifySettings(o *auditVerifyOptions) []setting {
	origin := logOriginSetting(&o.origin, "the log's origin (the service's --log-origin): every checkpoint must name it, and the key read from Vault is named by it; default: the --key's name, else "+defaultLogOrigin)
	origin.value = text(&o.origin, "")
	return []setting{
		databaseURLSetting(&o.databaseURL, "PostgreSQL URL"),
		databaseURLFileSetting(&o.databaseURLFile),
		{flag: "key", env: vars("MEDIATOR_VERIFIER_KEY"), value: verifierKeyOrFile(&o.keys),
			usage: "note verifier key (as GET /v1/audit/verifier-key returns it), or @FILE; repeat for the log's past keys; without it, read from Vault Transit with VAULT_ADDR/VAULT_TOKEN (every version of the key)"},
		origin,
		witnessesSetting(&o.witnesses, "a witnesses file (quorum and witness keys, as the service's --witnesses): check the checkpoints' cosignatures against it"),
		{flag: "state", env: vars("MEDIATOR_AUDIT_VERIFY_STATE"), value: text(&o.state, ""),
			usage: "a state file: verify only the entries after the checkpoint it holds, with a consistency proof from it to the newest checkpoint, and save the new one there when all passed; missing, a full run that writes it (docs/audit.md)"},
		{env: vars("VAULT_ADDR", "MEDIATOR_VAULT_ADDR"), value: text(&o.vault.Addr, ""), usage: "Vault address, to read the verifier key from Transit without --key"},
		{env: vars("VAULT_TOKEN", "MEDIATOR_VAULT_TOKEN"), value: text(&o.vault.Token, ""), secret: true, usage: "Vault token, to read the verifier key from Transit"},
		{env: vars("MEDIATOR_VAULT_TOKEN_FILE"), value: text(&o.vault.TokenFile, ""), usage: "file holding the Vault token, when no token is set"},
	}
}

// auditVerifyAbout is audit verify's help after its forms.
const auditVerifyAbout = `It prints what it checked, a "not checked:" line for each thing it did not (witness cosignatures
without a witness policy, entries no verified checkpoint covers, ...) and "ok", or each problem and
"verification FAILED"; --output json prints one JSON object instead (docs/audit.md). On a terminal it
shows its progress on stderr. Exit status: 0 ok; 1 something is wrong (or it could not run: the
reason is on stderr); 2 bad flags; 3 the checkpoints or the key name another origin than the one
configured ("origin X expected, Y found"), a configuration error.
`

// Exit statuses of audit verify besides 0 (ok) and 2 (bad flags).
const (
	// exitVerifyFailed: the log, a checkpoint or the bundle is wrong
	// (treat as tampering), or verification could not run (then the
	// reason is on stderr and nothing on stdout).
	exitVerifyFailed exitCode = 1
	// exitVerifyMisconfigured: the configured origin or key is not the
	// log's (origin X expected, Y found); nothing was found wrong with
	// the log.
	exitVerifyMisconfigured exitCode = 3
)

// auditVerifyCmd checks the log in the database, or an evidence bundle
// offline, and prints what it checked and what it did not, as text or
// (--output json) one JSON object. It exits 1 on any mismatch, naming the
// first bad seq, and 3 when its configuration names another origin than
// the log's.
func auditVerifyCmd(ctx context.Context, c *call, args []string) error {
	var o auditVerifyOptions
	fs := c.newFlags(auditVerifySettings(&o)...)
	bundle := fs.String("bundle", "", "verify this NDJSON evidence bundle offline instead of the database")
	tlogProof := fs.String("tlog-proof", "", "verify this C2SP tlog-proof file offline, against --policy")
	policyFile := fs.String("policy", "", "with --tlog-proof: the C2SP tlog-policy file (logs, witnesses, quorum) to check it against")
	output := fs.String("output", "text", "text, or json: one JSON object with the result (docs/audit.md)")
	fs.Var(fs.Lookup("witnesses").Value, "witness", "the same as --witnesses")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *output != "text" && *output != "json" {
		fmt.Fprintf(c.stderr, "audit verify: --output %q: want text or json\n", *output)
		return exitCode(2)
	}
	if *tlogProof != "" {
		return verifyTlogProofFile(c, *tlogProof, *policyFile, *output)
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
	res := &verifyResult{Source: "database", WitnessesChecked: len(policy.Witnesses) > 0, Quorum: policy.MinCosigners(), StateFile: o.state}
	if *bundle != "" {
		res.Source = "bundle"
		if o.state != "" {
			fmt.Fprintln(c.stderr, "audit verify: --state verifies the database incrementally; it does not go with --bundle")
			return exitCode(2)
		}
	}
	keys, err := loadVerifierKeys(ctx, o, *bundle != "")
	var mismatch *audit.OriginMismatch
	if errors.As(err, &mismatch) {
		res.configured(mismatch, keys, "the --key")
		return res.write(c, *output)
	}
	if err != nil {
		return err
	}
	res.Origin, res.Keys, res.KeysFrom = keys.origin, len(keys.verifiers), keys.from
	var rep *audit.Report
	if *bundle != "" {
		f, err := os.Open(*bundle)
		if err != nil {
			return fmt.Errorf("audit verify: %w", err)
		}
		defer f.Close()
		if rep, err = audit.VerifyBundleWitnessed(f, policy, keys.verifiers...); errors.As(err, &mismatch) {
			res.configured(mismatch, keys, "the bundle's checkpoint")
			return res.write(c, *output)
		} else if err != nil {
			rep = &audit.Report{FirstBadSeq: -1, Origin: keys.origin, Problems: []string{err.Error()}}
		}
	} else {
		var from *audit.VerifiedTree
		var previous *audit.IDIndex // the state's event-id index
		if o.state != "" {
			st, err := audit.ReadVerifyState(o.state)
			switch {
			case errors.Is(err, os.ErrNotExist):
				res.StateMissing = true // the first run: a full one, which writes it
			case err != nil:
				return fmt.Errorf("audit verify: --state: %w (remove it to verify in full and start again)", err)
			default:
				tree, err := st.Tree(keys.origin, keys.verifiers...)
				if errors.As(err, &mismatch) {
					res.configured(mismatch, keys, "the state file")
					return res.write(c, *output)
				} else if err != nil {
					return fmt.Errorf("audit verify: --state %s: %w; if it is another log's, give this log's (or remove it to verify in full)", o.state, err)
				}
				if tree.EventIDs == nil {
					res.StateWithoutIndex = true // written before the index: a full run, once
				} else {
					from, previous = &tree, tree.EventIDs
				}
			}
		}
		meter := c.progressMeter()
		var pool *pgxpool.Pool
		rep, pool, err = verifyDatabase(ctx, o, policy, keys, from, meter.progress())
		meter.finish()
		if err != nil {
			return err
		}
		defer pool.Close()
		if err := saveVerifyState(ctx, o.state, pool, rep, policy, keys, previous); err != nil {
			return err
		}
		res.StateSaved = o.state != "" && rep.OK() && rep.CheckpointSize > 0
	}
	res.fill(rep)
	return res.write(c, *output)
}

// saveVerifyState saves, when rep passed and state is not "", the
// checkpoint it verified up to and the event-id index it wrote to
// state, then removes the index of the state before (previous), which
// the new one includes. An index written for a state not saved is
// removed, unless it is the state before's (the same ids, the same
// name).
func saveVerifyState(ctx context.Context, state string, pool *pgxpool.Pool, rep *audit.Report, policy audit.WitnessPolicy, keys logKeys, previous *audit.IDIndex) error {
	written := rep.EventIDIndex
	saved := false
	defer func() {
		if written != nil && !saved && (previous == nil || previous.Path() != written.Path()) {
			os.Remove(written.Path())
		}
	}()
	if state == "" || !rep.OK() {
		return nil
	}
	st, err := audit.NewVerifyState(ctx, pool, rep, policy, keys.verifiers...)
	if err != nil {
		return fmt.Errorf("audit verify: --state: %w", err)
	}
	if st == nil {
		return nil
	}
	if err := st.Write(state); err != nil {
		return fmt.Errorf("audit verify: --state: %w", err)
	}
	saved = true
	if previous != nil && previous.Path() != "" && (written == nil || previous.Path() != written.Path()) {
		os.Remove(previous.Path())
	}
	return nil
}

// verifyDatabase checks the log in the database against keys (from the
// tree from on when it is not nil, else in full), the witnesses'
// cosignatures when policy names witnesses, and the access request rows
// against what was signed, telling progress (if not nil) how far it has
// come. It returns the pool it opened, for the caller to close.
func verifyDatabase(ctx context.Context, o auditVerifyOptions, policy audit.WitnessPolicy, keys logKeys, from *audit.VerifiedTree, progress audit.Progress) (rep *audit.Report, pool *pgxpool.Pool, err error) {
	url, err := readDatabaseURL(o.databaseURL, o.databaseURLFile)
	if err != nil {
		return nil, nil, fmt.Errorf("audit verify: %w", err)
	}
	if url == "" {
		return nil, nil, errors.New("audit verify: --database-url (or DATABASE_URL, MEDIATOR_DATABASE_URL_FILE) is required without --bundle")
	}
	pool, err = pgxpool.New(ctx, url)
	if err != nil {
		return nil, nil, fmt.Errorf("audit verify: database: %w", err)
	}
	defer func() {
		if err != nil {
			pool.Close()
		}
	}()
	opts := audit.VerifyOptions{Origin: keys.origin, Progress: progress}
	if o.state != "" {
		opts.EventIDIndex = o.state + ".ids"
	}
	if from != nil {
		rep, err = audit.VerifyFrom(ctx, pool, opts, *from, keys.verifiers...)
	} else {
		rep, err = audit.VerifyWith(ctx, pool, opts, keys.verifiers...)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("audit verify: %w", err)
	}
	if len(policy.Witnesses) > 0 {
		if err := audit.CheckWitnesses(ctx, pool, rep, policy, keys.verifiers...); err != nil {
			return nil, nil, fmt.Errorf("audit verify: %w", err)
		}
	}
	// Request rows are an index of the canonical requests approvers
	// signed, which the log holds as filed: name every row whose columns
	// or bytes say something else.
	mismatches, err := access.NewPGStore(pool, nil).Mismatches(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("audit verify: access requests: %w", err)
	}
	for _, m := range mismatches {
		rep.Problems = append(rep.Problems, fmt.Sprintf("access request %s: the stored request differs from what was signed and logged: %s",
			m.RequestID, strings.Join(m.Fields, ", ")))
	}
	return rep, pool, nil
}

// logKeys are the keys checkpoints are verified with and the origin they
// are named by, which every checkpoint must name.
type logKeys struct {
	origin    string
	verifiers []note.Verifier
	from      string // where they came from, for a person: "--key", or the Transit key and its versions
}

// loadVerifierKeys reads the verifier keys given, or without any every
// version of the checkpoint key in Vault Transit (never for a bundle
// checked offline), named by the configured origin. Keys named otherwise
// than the configured origin, or than one another, are an
// *audit.OriginMismatch: nothing can verify with them.
func loadVerifierKeys(ctx context.Context, o auditVerifyOptions, offline bool) (logKeys, error) {
	given := slices.DeleteFunc(slices.Clone(o.keys), func(k string) bool { return strings.TrimSpace(k) == "" })
	if len(given) == 0 {
		return vaultVerifierKeys(ctx, o, offline)
	}
	keys := logKeys{origin: o.origin, from: "--key"}
	var named []string
	for _, k := range given {
		v, err := parseVerifierKey(k)
		if err != nil {
			return logKeys{}, err
		}
		keys.verifiers = append(keys.verifiers, v)
		if keys.origin == "" {
			keys.origin = v.Name()
		}
		if v.Name() != keys.origin && !slices.Contains(named, v.Name()) {
			named = append(named, v.Name())
		}
	}
	if len(named) > 0 {
		return keys, &audit.OriginMismatch{Expected: keys.origin, Found: named}
	}
	return keys, nil
}

// vaultVerifierKeys reads every version of the Transit checkpoint key,
// named by the configured origin (the default when none is).
func vaultVerifierKeys(ctx context.Context, o auditVerifyOptions, offline bool) (logKeys, error) {
	if offline {
		return logKeys{}, errors.New("audit verify: --key is required with --bundle: offline verification trusts only the key you give it")
	}
	vc := o.vault
	if vc.Addr == "" || (vc.Token == "" && vc.TokenFile == "") {
		return logKeys{}, errors.New("audit verify: give --key, or set VAULT_ADDR and VAULT_TOKEN (or MEDIATOR_VAULT_ADDR and MEDIATOR_VAULT_TOKEN_FILE) to read it from Vault")
	}
	if vc.Token != "" {
		vc.TokenFile = ""
	}
	client, err := vaultclient.Connect(ctx, newLogger(io.Discard, "info", nil), vc)
	if err != nil {
		return logKeys{}, fmt.Errorf("audit verify: %w", err)
	}
	keys := logKeys{origin: o.origin}
	if keys.origin == "" {
		keys.origin = defaultLogOrigin
	}
	s, err := vaultclient.NewTransitSigner(ctx, client, vaultsetup.TransitMount, vaultsetup.CheckpointKey, keys.origin)
	if err != nil {
		return logKeys{}, fmt.Errorf("audit verify: %w", err)
	}
	// The key's earlier versions signed the checkpoints before a
	// rotation, as the service itself trusts them.
	texts := append([]string{s.VerifierKey()}, s.PastVerifierKeys()...)
	for _, k := range texts {
		v, err := parseVerifierKey(k)
		if err != nil {
			return logKeys{}, err
		}
		keys.verifiers = append(keys.verifiers, v)
	}
	keys.from = fmt.Sprintf("Vault Transit key %s/%s, %d version(s)", vaultsetup.TransitMount, vaultsetup.CheckpointKey, len(texts))
	return keys, nil
}

// parseVerifierKey reads a verifier key given as text or as @FILE.
func parseVerifierKey(key string) (note.Verifier, error) {
	if strings.HasPrefix(key, "@") {
		b, err := os.ReadFile(key[1:])
		if err != nil {
			return nil, fmt.Errorf("audit verify: key file: %w", err)
		}
		key = string(b)
	}
	v, err := note.NewVerifier(strings.TrimSpace(key))
	if err != nil {
		return nil, fmt.Errorf("audit verify: bad verifier key: %w", err)
	}
	return v, nil
}

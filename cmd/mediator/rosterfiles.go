package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/mod/sumdb/note"

	"github.com/mediatorhq/mediator/audit"
	"github.com/mediatorhq/mediator/custodian"
	"github.com/mediatorhq/mediator/escrow"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/secretfile"
	"github.com/mediatorhq/mediator/tlogpolicy"
	"github.com/mediatorhq/mediator/witness"
)

// tokenFileSuffix names a custodian's token file in the directory given to
// roster custodians-file: DIR/<name>-token holds the bearer token the
// mediator calls custodian <name> with (its mediator_token_file).
const tokenFileSuffix = "-token"

// rosterSource is the roster a file is written from: the version in force
// of the chain verified from the pinned genesis, or, with --file, a
// genesis draft (before any mediator runs).
type rosterSource struct {
	cl      clientOptions
	genesis string
	file    *string
}

// flags declares the source's settings and --file on a new flag set; the
// caller adds its own flags.
func (s *rosterSource) flags(c *call) *flagSet {
	fs := c.newFlags(rosterClientSettings(&s.cl, &s.genesis)...)
	s.file = fs.String("file", "", "a genesis draft, instead of the roster in force the mediator serves (before any mediator runs)")
	return fs
}

// load returns the roster and says, for people, which it is. A draft must
// be a valid first version, and the genesis you pin, if you pin one; the
// roster in force is verified from the pinned genesis, as roster show and
// verify do.
func (s *rosterSource) load(ctx context.Context, cmd string) (roster.Roster, string, error) {
	if *s.file != "" {
		d, err := readDraft(*s.file)
		if err != nil {
			return roster.Roster{}, "", err
		}
		r := draftGenesis(d)
		if err := r.Validate(); err != nil {
			return roster.Roster{}, "", fmt.Errorf("%s: %s: %w", cmd, *s.file, err)
		}
		digest, err := r.Digest()
		if err != nil {
			return roster.Roster{}, "", err
		}
		if s.genesis != "" && s.genesis != digest {
			return roster.Roster{}, "", fmt.Errorf("%s: the draft %s has digest %s as the genesis, not %s, the genesis you pin (--genesis, MEDIATOR_ROSTER_GENESIS)",
				cmd, *s.file, digest, s.genesis)
		}
		return r, fmt.Sprintf("the genesis draft %s (%s)", *s.file, digest), nil
	}
	if s.genesis == "" {
		return roster.Roster{}, "", fmt.Errorf("%s: --genesis (or MEDIATOR_ROSTER_GENESIS) is required: the file is written only from the roster verified from a genesis you pin; or give --file DRAFT, the genesis draft", cmd)
	}
	cli, err := s.cl.connect()
	if err != nil {
		return roster.Roster{}, "", err
	}
	r, digest, err := cli.Roster(ctx, s.genesis)
	if err != nil {
		return roster.Roster{}, "", fmt.Errorf("%s: %w", cmd, err)
	}
	return r, fmt.Sprintf("roster version %d (%s), verified from genesis %s", r.Version, digest, s.genesis), nil
}

// writeOutput writes b to path (replacing it) or, without a path, to
// stdout.
func writeOutput(c *call, path string, b []byte) error {
	if path == "" || path == "-" {
		_, err := c.stdout.Write(b)
		return err
	}
	if err := replaceFile(path, b, 0o644); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	return nil
}

// marshalFile is v as a file: indented JSON and a newline.
func marshalFile(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	return append(b, '\n'), err
}

// absExisting is path made absolute, once it names a file that exists:
// the mediator reads it from wherever it runs.
func absExisting(flag, path string) (string, error) {
	if path == "" {
		return "", nil
	}
	abs, err := filepath.Abs(path)
	if err == nil {
		_, err = os.Stat(abs)
	}
	if err != nil {
		return "", fmt.Errorf("--%s: %w", flag, err)
	}
	return abs, nil
}

// custodiansFile is the mediator's custodians file for r: every custodian
// in the roster's order, with its URL and keys, and its token file
// tokens/<name>-token, which must exist and hold a token.
func custodiansFile(r roster.Roster, tokens, caFile, certFile, keyFile string) (escrow.CustodianFile, error) {
	dir, err := filepath.Abs(tokens)
	if err != nil {
		return escrow.CustodianFile{}, fmt.Errorf("--tokens: %w", err)
	}
	f := escrow.CustodianFile{Threshold: r.Threshold}
	var missing []error
	for _, c := range r.Custodians {
		token := filepath.Join(dir, c.Name+tokenFileSuffix)
		if _, err := secretfile.Read(token); err != nil {
			missing = append(missing, fmt.Errorf("custodian %s: its token file %s: %w", c.Name, token, err))
		}
		f.Custodians = append(f.Custodians, escrow.CustodianEntry{Name: c.Name, URL: c.URL, TokenFile: token, HPKEKey: c.HPKEKey, SigningKey: c.SigningKey})
	}
	if len(missing) > 0 {
		return escrow.CustodianFile{}, fmt.Errorf("each custodian's token (the one its operator gave you) must be in --tokens %s as <name>%s:\n%w",
			dir, tokenFileSuffix, errors.Join(missing...))
	}
	if (certFile == "") != (keyFile == "") {
		return escrow.CustodianFile{}, errors.New("--client-cert-file and --client-key-file go together")
	}
	for _, p := range []struct {
		flag, path string
		dst        *string
	}{{"ca-file", caFile, &f.CAFile}, {"client-cert-file", certFile, &f.ClientCertFile}, {"client-key-file", keyFile, &f.ClientKeyFile}} {
		if *p.dst, err = absExisting(p.flag, p.path); err != nil {
			return escrow.CustodianFile{}, err
		}
	}
	return f, nil
}

// rosterCustodiansFile writes the mediator's --custodians file from the
// roster, checked by the mediator's own parser before it is written.
func rosterCustodiansFile(ctx context.Context, c *call, args []string) error {
	var src rosterSource
	fs := src.flags(c)
	tokens := fs.String("tokens", "", "the directory of the custodians' token files, one <name>-token each (required)")
	out := fs.String("out", "", "write the file here (replacing it) instead of to stdout")
	caFile := fs.String("ca-file", "", "the custodians file's ca_file: a PEM bundle of the authorities of the custodians' TLS certificates")
	certFile := fs.String("client-cert-file", "", "the custodians file's client_cert_file: the mediator's TLS client certificate (mutual TLS)")
	keyFile := fs.String("client-key-file", "", "the custodians file's client_key_file: that certificate's key")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *tokens == "" {
		return errors.New("roster custodians-file: --tokens DIR is required: the directory that holds each custodian's token as <name>-token")
	}
	r, from, err := src.load(ctx, "roster custodians-file")
	if err != nil {
		return err
	}
	f, err := custodiansFile(r, *tokens, *caFile, *certFile, *keyFile)
	if err != nil {
		return fmt.Errorf("roster custodians-file: %w", err)
	}
	b, err := marshalFile(f)
	if err != nil {
		return err
	}
	// What the mediator will read: its own parser, and the same set as
	// the roster's.
	parsed, err := escrow.ParseCustodians(b)
	if err != nil {
		return fmt.Errorf("roster custodians-file: the file would not parse: %w", err)
	}
	digest, err := parsed.Set().Digest()
	if err != nil {
		return err
	}
	if want, err := r.Set().Digest(); err != nil || want != digest {
		return fmt.Errorf("roster custodians-file: the file's set %s is not the roster's %s", digest, want)
	}
	if err := writeOutput(c, *out, b); err != nil {
		return fmt.Errorf("roster custodians-file: %w", err)
	}
	fmt.Fprintf(c.stderr, "custodians file from %s: %d custodians, threshold %d, set digest %s\n", from, len(f.Custodians), f.Threshold, digest)
	return nil
}

// witnessesFile is the mediator's --witnesses file (audit.ParseWitnessPolicy).
type witnessesFile struct {
	Quorum    int            `json:"quorum"`
	Witnesses []witnessEntry `json:"witnesses"`
}

// witnessEntry is one witness of a witnessesFile.
type witnessEntry struct {
	Name        string `json:"name"`
	URL         string `json:"url"`
	VerifierKey string `json:"verifier_key"`
}

// rosterWitnesses is the witnesses file for r's custodians: each by its
// name and URL, its verifier key derived from its name and roster signing
// key as the custodian derives it (witness.VerifierKey), with quorum, or
// the roster's threshold when quorum is 0.
func rosterWitnesses(r roster.Roster, quorum int) (witnessesFile, error) {
	f := witnessesFile{Quorum: quorum}
	if f.Quorum == 0 {
		f.Quorum = r.Threshold
	}
	for _, c := range r.Custodians {
		vkey, err := witness.VerifierKey(c.Name, c.SigningKey)
		if err != nil {
			return witnessesFile{}, fmt.Errorf("custodian %s: %w", c.Name, err)
		}
		f.Witnesses = append(f.Witnesses, witnessEntry{Name: c.Name, URL: c.URL, VerifierKey: vkey})
	}
	return f, nil
}

// tlogPolicy writes f as a C2SP tlog-policy file: the witnesses, a group
// "custodians" of them with f's quorum as its threshold, and the log's
// key when logKey is set.
func (f witnessesFile) tlogPolicy(from, logKey string) ([]byte, error) {
	var logs []tlogpolicy.Log
	if logKey != "" {
		v, err := note.NewVerifier(logKey)
		if err != nil {
			return nil, fmt.Errorf("--log-key: %w", err)
		}
		logs = append(logs, tlogpolicy.Log{Key: logKey, Verifier: v})
	}
	var ws []tlogpolicy.Witness
	for _, w := range f.Witnesses {
		v, err := witness.NewVerifier(w.VerifierKey)
		if err != nil {
			return nil, err
		}
		ws = append(ws, tlogpolicy.Witness{Name: w.Name, Key: w.VerifierKey, Verifier: v, URL: w.URL})
	}
	p, err := tlogpolicy.Threshold("custodians", f.Quorum, logs, ws)
	if err != nil {
		return nil, err
	}
	head := fmt.Sprintf("# C2SP tlog-policy (c2sp.org/tlog-policy), written by mediator roster witnesses-file\n# from %s: the custodians witness the audit log.\n", from)
	return append([]byte(head), p.Marshal()...), nil
}

// rosterWitnessesFile writes the mediator's --witnesses file from the
// roster, checked by the mediator's own parser before it is written.
func rosterWitnessesFile(ctx context.Context, c *call, args []string) error {
	var src rosterSource
	fs := src.flags(c)
	quorum := fs.Int("quorum", 0, "how many witnesses must cosign a checkpoint before it is published (default: the roster's custodian threshold)")
	out := fs.String("out", "", "write the file here (replacing it) instead of to stdout")
	format := fs.String("format", "json", "json, or tlog-policy: a C2SP tlog-policy file with the custodians as a group, which may then be edited to add groups")
	logKey := fs.String("log-key", "", "with --format tlog-policy: the log's checkpoint verifier key, written as its log line")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *format != "json" && *format != "tlog-policy" {
		return fmt.Errorf("roster witnesses-file: --format %q: want json or tlog-policy", *format)
	}
	if *logKey != "" && *format != "tlog-policy" {
		return errors.New("roster witnesses-file: --log-key needs --format tlog-policy")
	}
	r, from, err := src.load(ctx, "roster witnesses-file")
	if err != nil {
		return err
	}
	if *quorum < 0 || *quorum > len(r.Custodians) {
		return fmt.Errorf("roster witnesses-file: --quorum %d must be 1–%d, the roster's custodians", *quorum, len(r.Custodians))
	}
	f, err := rosterWitnesses(r, *quorum)
	if err != nil {
		return fmt.Errorf("roster witnesses-file: %w", err)
	}
	var b []byte
	if *format == "tlog-policy" {
		b, err = f.tlogPolicy(from, *logKey)
	} else {
		b, err = marshalFile(f)
	}
	if err != nil {
		return fmt.Errorf("roster witnesses-file: %w", err)
	}
	if _, err := audit.ParseWitnessPolicy(b); err != nil {
		return fmt.Errorf("roster witnesses-file: the file would not parse: %w", err)
	}
	if err := writeOutput(c, *out, b); err != nil {
		return fmt.Errorf("roster witnesses-file: %w", err)
	}
	fmt.Fprintf(c.stderr, "witnesses file from %s: %d witnesses, quorum %d; each custodian cosigns only with a witness section in its configuration (mediator roster witness-config)\n",
		from, len(f.Witnesses), f.Quorum)
	return nil
}

// rosterWitnessConfig prints the witness section of a custodian's
// configuration from the roster's log entry, on one line.
func rosterWitnessConfig(ctx context.Context, c *call, args []string) error {
	var src rosterSource
	if err := src.flags(c).Parse(args); err != nil {
		return err
	}
	r, from, err := src.load(ctx, "roster witness-config")
	if err != nil {
		return err
	}
	if r.Log == nil {
		return fmt.Errorf("roster witness-config: %s names no audit log: add \"log\": {\"origin\", \"verifier_keys\"} (mediator audit verifier-key --entry)", from)
	}
	b, err := json.Marshal(custodian.WitnessConfig{Logs: []custodian.WitnessLog{{Origin: r.Log.Origin, VerifierKeys: r.Log.VerifierKeys}}})
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "%s\n", b)
	return nil
}

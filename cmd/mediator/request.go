package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/client"
	"github.com/mediatorhq/mediator/seal"
	"github.com/mediatorhq/mediator/secretfile"
	"github.com/mediatorhq/mediator/wire"
)

// bindClientFlags adds --url and --token. The token is read from
// MEDIATOR_TOKEN by default: a flag value would show in ps.
func bindClientFlags(fs *flag.FlagSet) func() (*client.Client, error) {
	u := fs.String("url", env("http://127.0.0.1:8080", "MEDIATOR_URL", "MEDIATOR_ADDR"), "the mediator [MEDIATOR_URL, MEDIATOR_ADDR]")
	tok := fs.String("token", "", "bearer token (default: MEDIATOR_TOKEN; prefer the environment, flags show in ps)")
	return func() (*client.Client, error) {
		t := *tok
		if t == "" {
			t = os.Getenv("MEDIATOR_TOKEN")
		}
		if t == "" {
			return nil, errors.New("no token: set MEDIATOR_TOKEN (for the dev instance: export MEDIATOR_TOKEN=$(mediator dev token --sub NAME --roles officer))")
		}
		return client.New(*u, t, nil)
	}
}

// printJSON writes v indented.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

const requestUsage = `usage: mediator request create|show|list|approve|release|revoke [--help]

  create   file a lawful-access request (officer)
  show ID  show a request, its digest and approvals
  list     list requests [--status S]
  approve ID --key FILE [--deny]
           check the request, show what you sign, sign and submit your vote (approver)
  release ID --key FILE --out FILE
           release the keys (the requesting officer) and open them locally
  revoke ID
           withdraw your request

The mediator is --url (MEDIATOR_URL, MEDIATOR_ADDR); the bearer token is MEDIATOR_TOKEN.
`

// requestCmd runs the officer and approver verbs against a running mediator.
func requestCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, requestUsage)
		return exitCode(2)
	}
	verb, args := args[0], args[1:]
	switch verb {
	case "create":
		return requestCreate(ctx, args, stdout, stderr)
	case "show", "revoke":
		return requestShow(ctx, verb, args, stdout, stderr)
	case "list":
		return requestList(ctx, args, stdout, stderr)
	case "approve":
		return requestApprove(ctx, args, stdout, stderr)
	case "release":
		return requestRelease(ctx, args, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, requestUsage)
		return nil
	}
	fmt.Fprintf(stderr, "unknown request verb %q\n\n%s", verb, requestUsage)
	return exitCode(2)
}

// stringList is a repeatable flag that also splits on commas.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

func requestCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("request create", "mediator request create --case ID --legal-basis B --warrant REF --jurisdiction J --justification TEXT --conversation C [--conversation C2] --from T --to T --recipient FILE.pub [--expires 72h]", stderr)
	connect := bindClientFlags(fs)
	var convos stringList
	caseID := fs.String("case", "", "case id")
	basis := fs.String("legal-basis", "", "legal basis, such as court_order (the policy lists what each jurisdiction allows)")
	warrant := fs.String("warrant", "", "warrant or order reference")
	jurisdiction := fs.String("jurisdiction", "", "jurisdiction code, such as US")
	justification := fs.String("justification", "", "why; refer to the case file (no phone numbers, emails or URLs)")
	fs.Var(&convos, "conversation", "conversation id in scope (repeat, or separate with commas)")
	from := fs.String("from", "", "scope start, RFC 3339")
	to := fs.String("to", "", "scope end, RFC 3339")
	recipient := fs.String("recipient", "", "recipient public key file (FILE.pub from mediator keygen --recipient)")
	expires := fs.Duration("expires", 72*time.Hour, "how long the request stays open")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := connect()
	if err != nil {
		return err
	}
	f, err := time.Parse(time.RFC3339, *from)
	if err != nil {
		return errors.New("request create: --from must be an RFC 3339 time")
	}
	t, err := time.Parse(time.RFC3339, *to)
	if err != nil {
		return errors.New("request create: --to must be an RFC 3339 time")
	}
	if *recipient == "" {
		return errors.New("request create: --recipient is required (make a key pair with mediator keygen --recipient)")
	}
	pubFile, err := os.ReadFile(*recipient)
	if err != nil {
		return fmt.Errorf("request create: %w", err)
	}
	var rk seal.PublicKey
	if err := json.Unmarshal(pubFile, &rk); err != nil || len(rk.PublicKey) == 0 {
		return fmt.Errorf("request create: %s is not a recipient public key file", *recipient)
	}
	out, err := c.CreateRequest(ctx, wire.CreateRequest{CaseID: *caseID, LegalBasis: *basis, WarrantRef: *warrant,
		Jurisdiction: *jurisdiction, Justification: *justification, Recipient: rk,
		Scope:     wire.Scope{ConversationIDs: convos, From: f, To: t},
		ExpiresAt: time.Now().Add(*expires).UTC().Truncate(time.Second)})
	if err != nil {
		return err
	}
	return printJSON(stdout, out)
}

// requestShow runs show and revoke: one call on one request, printed.
func requestShow(ctx context.Context, verb string, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("request "+verb, "mediator request "+verb+" ID", stderr)
	connect := bindClientFlags(fs)
	id, err := parseWithID(fs, args)
	if err != nil {
		return err
	}
	c, err := connect()
	if err != nil {
		return err
	}
	var out wire.Request
	if verb == "show" {
		out, err = c.Request(ctx, id)
	} else {
		out, err = c.Revoke(ctx, id)
	}
	if err != nil {
		return err
	}
	return printJSON(stdout, out)
}

func requestList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("request list", "mediator request list [--status S]", stderr)
	connect := bindClientFlags(fs)
	status := fs.String("status", "", "only requests in this state (pending, released, denied, expired, revoked)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := connect()
	if err != nil {
		return err
	}
	out, err := c.Requests(ctx, *status)
	if err != nil {
		return err
	}
	return printJSON(stdout, out)
}

// parseWithID parses flags that may come before or after one positional
// request id, which is required.
func parseWithID(fs *flag.FlagSet, args []string) (string, error) {
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	id := ""
	if fs.NArg() > 0 {
		id = fs.Arg(0)
		if err := fs.Parse(fs.Args()[1:]); err != nil {
			return "", err
		}
	}
	if id == "" {
		fs.Usage()
		return "", exitCode(2)
	}
	return id, nil
}

func requestApprove(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("request approve", "mediator request approve ID --key FILE [--deny]", stderr)
	connect := bindClientFlags(fs)
	keyFile := fs.String("key", "", "your approver key file (from mediator keygen --approver)")
	deny := fs.Bool("deny", false, "vote to deny instead of approve")
	id, err := parseWithID(fs, args)
	if err != nil {
		return err
	}
	c, err := connect()
	if err != nil {
		return err
	}
	priv, err := readSigningKey("request approve", *keyFile)
	if err != nil {
		return err
	}
	defer clear(priv)
	review, err := c.Review(ctx, id)
	if err != nil {
		return fmt.Errorf("request approve: %w", err)
	}
	decision := approval.Approve
	if *deny {
		decision = approval.Deny
	}
	showReview(stderr, review, decision)
	out, err := c.Sign(ctx, review, decision, priv)
	if err != nil {
		return err
	}
	return printJSON(stdout, out)
}

// showReview prints every field of the canonical request an approver is
// about to sign, as parsed from the signed bytes.
func showReview(w io.Writer, r client.Review, decision string) {
	q := r.Request
	fmt.Fprintf(w, "signing %s of request %s as %s\n", decision, q.ID, r.Approver)
	fmt.Fprintf(w, "  requester      %s\n  case           %s\n  legal basis    %s (%s)\n  warrant        %s\n",
		q.Requester, q.CaseID, q.LegalBasis, q.Jurisdiction, q.WarrantRef)
	fmt.Fprintf(w, "  justification  %s\n", q.Justification)
	fmt.Fprintf(w, "  conversations  %s\n", strings.Join(q.Scope.ConversationIDs, ", "))
	fmt.Fprintf(w, "  window         %s to %s\n", approval.FormatTime(q.Scope.From), approval.FormatTime(q.Scope.To))
	fmt.Fprintf(w, "  recipient key  %s (KEM %#04x)\n", q.Recipient.Fingerprint(), q.Recipient.KEMID)
	fmt.Fprintf(w, "  filed          %s, expires %s\n", approval.FormatTime(q.CreatedAt), approval.FormatTime(q.ExpiresAt))
	fmt.Fprintf(w, "  digest         %s\n", r.Digest)
}

func requestRelease(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("request release", "mediator request release ID --key FILE --out FILE", stderr)
	connect := bindClientFlags(fs)
	keyFile := fs.String("key", "", "your recipient key file (from mediator keygen --recipient)")
	outFile := fs.String("out", "", "where to write the opened keys, one JSON object a line; created 0600, never overwritten")
	id, err := parseWithID(fs, args)
	if err != nil {
		return err
	}
	if *outFile == "" {
		return errors.New("request release: --out is required")
	}
	c, err := connect()
	if err != nil {
		return err
	}
	raw, err := secretfile.Read(*keyFile)
	if err != nil {
		return fmt.Errorf("request release: --key: %w", err)
	}
	priv, err := seal.ParseKey([]byte(raw))
	if err != nil {
		return err
	}
	// Create the output first: a release is final, and its keys must have
	// somewhere to go.
	out, err := os.OpenFile(*outFile, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("request release: --out: %w (it must not exist yet)", err)
	}
	rel, err := c.Release(ctx, id)
	if err != nil {
		out.Close()
		os.Remove(*outFile)
		return err
	}
	keys, openErr := client.Open(priv, id, rel)
	if openErr != nil {
		// The request is released now: keep the sealed shares rather than
		// lose them to a wrong --key or a bad share.
		sealed, _ := json.Marshal(rel)
		if werr := writeNew(*outFile+".sealed", sealed, 0o600); werr != nil {
			openErr = fmt.Errorf("%w (and saving the sealed shares failed: %v)", openErr, werr)
		} else {
			openErr = fmt.Errorf("%w; the sealed shares are saved in %s.sealed", openErr, *outFile)
		}
	}
	enc := json.NewEncoder(out)
	for _, k := range keys {
		err = errors.Join(err, enc.Encode(k))
		clear(k.Key)
		if len(k.BadShares) > 0 {
			fmt.Fprintf(stderr, "warning: the key of %s/%s was recovered without the bad shares of: %s\n",
				k.ConversationID, k.KeyID, strings.Join(k.BadShares, ", "))
		}
	}
	if err = errors.Join(err, out.Close()); err != nil {
		return fmt.Errorf("request release: write %s: %w", *outFile, err)
	}
	for _, r := range rel.Refusals {
		fmt.Fprintf(stderr, "custodian %s refused: %s\n", r.Custodian, strings.Join(r.Reasons, "; "))
	}
	fmt.Fprintf(stdout, "released %d keys of request %s into %s (decision %s, audit seq %d)\n",
		len(keys), id, *outFile, rel.DecisionID, rel.AuditSeq)
	if openErr != nil {
		return fmt.Errorf("request release: %w", openErr)
	}
	return nil
}

// keygenCmd makes an approver signing key or a recipient HPKE key pair:
// FILE (private, 0600, never overwritten) and FILE.pub (public).
func keygenCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("keygen", "mediator keygen --approver|--recipient [--kem mlkem768-x25519|x25519] --out FILE", stderr)
	approver := fs.Bool("approver", false, "an Ed25519 key to sign approvals with; prints the public key to register")
	recipient := fs.Bool("recipient", false, "an HPKE key pair to receive released keys; FILE.pub goes in requests")
	kemName := fs.String("kem", "mlkem768-x25519", "recipient KEM: mlkem768-x25519 (post-quantum hybrid) or x25519")
	outFile := fs.String("out", "", "private key file to create (the public key goes to FILE.pub)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *approver == *recipient || *outFile == "" {
		fs.Usage()
		return exitCode(2)
	}
	var priv, pub []byte
	var shown string
	if *approver {
		file, pk, err := approval.NewSigningKey()
		if err != nil {
			return err
		}
		priv = file
		shown = base64.StdEncoding.EncodeToString(pk)
		pub = []byte(shown + "\n")
	} else {
		var kem uint16
		switch *kemName {
		case "mlkem768-x25519":
			kem = seal.KEMMLKEM768X25519
		case "x25519":
			kem = seal.KEMX25519
		default:
			return errors.New("keygen: --kem must be mlkem768-x25519 or x25519")
		}
		file, pk, err := seal.NewKey(kem)
		if err != nil {
			return err
		}
		priv = file
		if pub, err = json.Marshal(pk); err != nil {
			return err
		}
		pub = append(pub, '\n')
		shown = strings.TrimSpace(string(pub))
	}
	defer clear(priv)
	if err := writeNew(*outFile, priv, 0o600); err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	if err := writeNew(*outFile+".pub", pub, 0o644); err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	fmt.Fprintf(stderr, "wrote %s (private, 0600) and %s.pub\n", *outFile, *outFile)
	fmt.Fprintln(stdout, shown)
	return nil
}

// writeNew creates path with data; an existing file is never replaced.
func writeNew(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

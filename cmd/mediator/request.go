package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/client"
	"github.com/mediatorhq/mediator/seal"
	"github.com/mediatorhq/mediator/wire"
)

// clientOptions is where a client verb reaches the mediator, and as whom.
type clientOptions struct{ url, token string }

// clientSettings are the client verbs' settings, bound to o. The token is
// best given in MEDIATOR_TOKEN: a flag's value shows in ps.
func clientSettings(o *clientOptions) []setting {
	return []setting{
		{flag: "url", env: vars("MEDIATOR_URL", "MEDIATOR_ADDR"), value: mediatorURL(&o.url, "http://127.0.0.1:8080"), usage: "the mediator"},
		{flag: "token", env: vars("MEDIATOR_TOKEN"), value: text(&o.token, ""), secret: true,
			usage: "bearer token (prefer the environment, flags show in ps)"},
	}
}

// connect returns a client of the mediator, or an error saying how to
// get a token.
func (o clientOptions) connect() (*client.Client, error) {
	if o.token == "" {
		return nil, errors.New("no token: set MEDIATOR_TOKEN (for the dev instance: export MEDIATOR_TOKEN=$(mediator dev token --sub NAME --roles officer))")
	}
	return client.New(o.url, o.token, nil)
}

// printJSON writes v indented.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// clientAbout says, in the help of the client verbs' groups, where they
// find the mediator and their token.
const clientAbout = "The mediator is --url (MEDIATOR_URL, MEDIATOR_ADDR); the bearer token is MEDIATOR_TOKEN.\n"

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

// requestCreate files a lawful-access request.
func requestCreate(ctx context.Context, c *call, args []string) error {
	var cl clientOptions
	fs := c.newFlags(clientSettings(&cl)...)
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
	cli, err := cl.connect()
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
	out, err := cli.CreateRequest(ctx, wire.CreateRequest{CaseID: *caseID, LegalBasis: *basis, WarrantRef: *warrant,
		Jurisdiction: *jurisdiction, Justification: *justification, Recipient: rk,
		Scope:     wire.Scope{ConversationIDs: convos, From: f, To: t},
		ExpiresAt: time.Now().Add(*expires).UTC().Truncate(time.Second)})
	if err != nil {
		return err
	}
	return printJSON(c.stdout, out)
}

// requestShow runs show and revoke: one call on one request, printed.
func requestShow(ctx context.Context, c *call, args []string) error {
	var cl clientOptions
	id, err := parseWithID(c.newFlags(clientSettings(&cl)...), args)
	if err != nil {
		return err
	}
	cli, err := cl.connect()
	if err != nil {
		return err
	}
	var out wire.Request
	if c.command().name == "show" {
		out, err = cli.Request(ctx, id)
	} else {
		out, err = cli.Revoke(ctx, id)
	}
	if err != nil {
		return err
	}
	return printJSON(c.stdout, out)
}

// requestList lists requests.
func requestList(ctx context.Context, c *call, args []string) error {
	var cl clientOptions
	fs := c.newFlags(clientSettings(&cl)...)
	status := fs.String("status", "", "only requests in this state (pending, released, denied, expired, revoked)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cli, err := cl.connect()
	if err != nil {
		return err
	}
	out, err := cli.Requests(ctx, *status)
	if err != nil {
		return err
	}
	return printJSON(c.stdout, out)
}

// parseWithID parses flags that may come before or after one positional
// id, which is required, and then applies the settings.
func parseWithID(fs *flagSet, args []string) (string, error) {
	if err := fs.parseFlags(args); err != nil {
		return "", err
	}
	id := ""
	if fs.NArg() > 0 {
		id = fs.Arg(0)
		if err := fs.parseFlags(fs.Args()[1:]); err != nil {
			return "", err
		}
	}
	if id == "" {
		fs.Usage()
		return "", exitCode(2)
	}
	return id, fs.apply()
}

// requestApprove checks a request, shows what the approver signs, and
// signs and submits the vote.
func requestApprove(ctx context.Context, c *call, args []string) error {
	var cl clientOptions
	fs := c.newFlags(clientSettings(&cl)...)
	keyFile := fs.String("key", "", "your approver key file (from mediator keygen --approver)")
	deny := fs.Bool("deny", false, "vote to deny instead of approve")
	id, err := parseWithID(fs, args)
	if err != nil {
		return err
	}
	cli, err := cl.connect()
	if err != nil {
		return err
	}
	priv, err := readSigningKey("request approve", *keyFile)
	if err != nil {
		return err
	}
	defer clear(priv)
	review, err := cli.Review(ctx, id)
	if err != nil {
		return fmt.Errorf("request approve: %w", err)
	}
	decision := approval.Approve
	if *deny {
		decision = approval.Deny
	}
	showReview(c.stderr, review, decision)
	out, err := cli.Sign(ctx, review, decision, priv)
	if err != nil {
		return err
	}
	return printJSON(c.stdout, out)
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

// keygenCmd makes an approver signing key or a recipient HPKE key pair:
// FILE (private, 0600, never overwritten) and FILE.pub (public).
func keygenCmd(ctx context.Context, c *call, args []string) error {
	fs := c.newFlags()
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
	fmt.Fprintf(c.stderr, "wrote %s (private, 0600) and %s.pub\n", *outFile, *outFile)
	fmt.Fprintln(c.stdout, shown)
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

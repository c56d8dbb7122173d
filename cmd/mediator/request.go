package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/client"
	"github.com/mediatorhq/mediator/pseudonym"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/seal"
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

// requestCreate builds a lawful-access request on the officer's machine,
// signs it with the officer's roster key, files it, and checks that the
// mediator stored exactly what was signed.
func requestCreate(ctx context.Context, c *call, args []string) error {
	var cl clientOptions
	var genesis, pseudonymToken string
	fs := c.newFlags(append(rosterClientSettings(&cl, &genesis), pseudonymTokenSetting(&pseudonymToken))...)
	var convos, legacy stringList
	caseID := fs.String("case", "", "case id")
	basis := fs.String("legal-basis", "", "legal basis, such as court_order (the policy lists what each jurisdiction allows)")
	warrant := fs.String("warrant", "", "warrant or order reference")
	jurisdiction := fs.String("jurisdiction", "", "jurisdiction code, such as US")
	justification := fs.String("justification", "", "why; refer to the case file (no phone numbers, emails or URLs)")
	fs.Var(&convos, "conversation", "conversation id in scope, as the platform gives it (repeat, or separate with commas); it is sent as its pseudonym, computed here")
	fs.Var(&legacy, "legacy-conversation", "conversation id of the HMAC era, sent as it is: deposits made before pseudonyms stored it so (repeat, or separate with commas)")
	from := fs.String("from", "", "scope start, RFC 3339")
	to := fs.String("to", "", "scope end, RFC 3339")
	recipient := fs.String("recipient", "", "recipient public key file (FILE.pub from mediator keygen --recipient)")
	expires := fs.Duration("expires", 72*time.Hour, "how long the request stays open")
	keyFile := fs.String("key", "", "your officer signing key file (from mediator keygen --officer; its public key is in the roster)")
	if err := fs.Parse(args); err != nil {
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
	if *keyFile == "" {
		return errors.New("request create: --key is required: you sign the request, recipient key and scope included, with your officer key")
	}
	pubFile, err := os.ReadFile(*recipient)
	if err != nil {
		return fmt.Errorf("request create: %w", err)
	}
	var rk seal.PublicKey
	if err := json.Unmarshal(pubFile, &rk); err != nil || len(rk.PublicKey) == 0 {
		return fmt.Errorf("request create: %s is not a recipient public key file", *recipient)
	}
	priv, err := readSigningKey("request create", *keyFile)
	if err != nil {
		return err
	}
	defer clear(priv)
	cli, err := cl.connect()
	if err != nil {
		return err
	}
	if err := usePseudonyms(ctx, "request create", cli, genesis, pseudonymToken, convos...); err != nil {
		return err
	}
	filed, err := cli.FileRequestWithLegacy(ctx, priv, approval.Request{CaseID: *caseID, LegalBasis: *basis, WarrantRef: *warrant,
		Jurisdiction: *jurisdiction, Justification: *justification, Recipient: rk,
		Scope:     approval.Scope{ConversationIDs: convos, From: f, To: t},
		ExpiresAt: time.Now().Add(*expires)}, legacy)
	if errors.Is(err, client.ErrNotLegacy) {
		return errors.New("request create: --legacy-conversation takes only ids of the HMAC era: not pseudonyms, and never shaped like a phone number or an address; name other conversations with --conversation")
	}
	if errors.Is(err, client.ErrStoredMismatch) {
		return fmt.Errorf("request create: %w; do not use request %s, tell your security team", err, filed.Request.ID)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stderr, "filed and signed request %s as officer %s; the mediator stored exactly what you signed\n  recipient key  %s\n  digest         %s\n",
		filed.ID, filed.Request.Requester, filed.Request.Recipient.Fingerprint(), filed.Digest)
	for i, id := range convos {
		if ps := filed.Request.Scope.ConversationIDs[i]; ps != id {
			fmt.Fprintf(c.stderr, "  conversation   %s is %s (your signature covers this mapping; keep it in the case file)\n", id, ps)
		}
	}
	return printJSON(c.stdout, filed.Created)
}

// reviewSettings are the settings of a verb that shows requests: the
// client's, and the genesis the roster is verified from.
func reviewSettings(cl *clientOptions, genesis *string) []setting {
	return rosterClientSettings(cl, genesis)
}

// needGenesis refuses a verb that shows a request without a pinned
// genesis: a request is shown only as verified against a roster.
func needGenesis(verb, genesis string) error {
	if genesis == "" {
		return fmt.Errorf("%s: --genesis (or MEDIATOR_ROSTER_GENESIS) is required: a request is shown only as verified against the roster you verify from the genesis you pin", verb)
	}
	return nil
}

// requestShow shows a request as verified on this machine: every field
// from the canonical bytes, its officer's signature checked against the
// roster verified from the pinned genesis, and each approval checked.
func requestShow(ctx context.Context, c *call, args []string) error {
	var cl clientOptions
	var genesis string
	id, err := parseWithID(c.newFlags(reviewSettings(&cl, &genesis)...), args)
	if err != nil {
		return err
	}
	if err := needGenesis("request show", genesis); err != nil {
		return err
	}
	cli, err := cl.connect()
	if err != nil {
		return err
	}
	review, err := cli.Review(ctx, genesis, id)
	if err != nil {
		return fmt.Errorf("request show: %w", err)
	}
	showReview(c.stdout, review)
	return nil
}

// requestList lists requests as a short table, each row read from the
// request's canonical bytes and checked against the roster in force;
// a request that does not verify is shown as such, with the reason.
func requestList(ctx context.Context, c *call, args []string) error {
	var cl clientOptions
	var genesis string
	fs := c.newFlags(reviewSettings(&cl, &genesis)...)
	status := fs.String("status", "", "only requests in this state (pending, released, denied, expired, revoked)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := needGenesis("request list", genesis); err != nil {
		return err
	}
	cli, err := cl.connect()
	if err != nil {
		return err
	}
	cur, _, err := cli.Roster(ctx, genesis)
	if err != nil {
		return err
	}
	list, err := cli.Requests(ctx, *status)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCASE\tOFFICER\tSTATUS\tAPPROVALS\tEXPIRES")
	for _, q := range list.Requests {
		shown, err := cli.Request(ctx, q.ID)
		if err != nil {
			return err
		}
		r, err := client.CheckRequest(shown, q.ID, cur)
		if err != nil {
			fmt.Fprintf(tw, "%s\tUNVERIFIED\t-\t%s\t-\t-\t(%v)\n", q.ID, shown.Status, err)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Request.ID, r.Request.CaseID, r.Request.Requester, r.Status,
			approvalCount(r.Approvals), approval.FormatTime(r.Request.ExpiresAt))
	}
	return tw.Flush()
}

// approvalCount says how many approvals verified, and how many shown did
// not.
func approvalCount(as []client.ReviewedApproval) string {
	ok, bad := 0, 0
	for _, a := range as {
		switch {
		case !a.Verified:
			bad++
		case a.Decision == approval.Approve:
			ok++
		}
	}
	if bad > 0 {
		return fmt.Sprintf("%d (+%d unverified)", ok, bad)
	}
	return fmt.Sprint(ok)
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

// requestApprove verifies a request on this machine (its bytes, digest,
// officer's signature and the roster from the pinned genesis), shows
// every field it signs, asks, and only then signs and submits the vote;
// a deny it also delivers to every custodian itself (denyAtCustodians).
func requestApprove(ctx context.Context, c *call, args []string) error {
	var cl clientOptions
	var genesis string
	fs := c.newFlags(reviewSettings(&cl, &genesis)...)
	keyFile := fs.String("key", "", "your approver key file (from mediator keygen --approver)")
	deny := fs.Bool("deny", false, "vote to deny instead of approve; the deny is also delivered to every custodian of the verified roster directly")
	yes := fs.Bool("yes", false, "sign without asking (for scripts that checked the request); without a terminal and without --yes nothing is signed")
	expect := fs.String("expect-digest", "", "refuse unless the request's digest is this sha256:… (given to you out of band)")
	id, err := parseWithID(fs, args)
	if err != nil {
		return err
	}
	if err := needGenesis("request approve", genesis); err != nil {
		return err
	}
	if *expect != "" && !roster.ValidDigest(*expect) {
		return errors.New("request approve: --expect-digest must be sha256: and 64 hex digits")
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
	me, err := cli.Whoami(ctx)
	if err != nil {
		return err
	}
	review, err := cli.Review(ctx, genesis, id)
	if err != nil {
		return fmt.Errorf("request approve: %w", err)
	}
	if *expect != "" && review.Digest != *expect {
		return fmt.Errorf("request approve: the request's digest is %s, not the %s you expect; not signing", review.Digest, *expect)
	}
	self, ok := review.Roster.Approver(me.Subject)
	if !ok || !self.PublicKey.Equal(priv.Public()) {
		return fmt.Errorf("request approve: you (%s) are not an approver with this key in roster version %d; not signing", me.Subject, review.Roster.Version)
	}
	if me.Subject == review.Request.Requester {
		return errors.New("request approve: you filed this request; your approval would count for nothing")
	}
	decision := approval.Approve
	if *deny {
		decision = approval.Deny
	}
	showReview(c.stderr, review)
	fmt.Fprintf(c.stderr, "you, %s (%s, key %s), sign: %s\n", self.ID, strings.Join(self.Roles, ","), self.Fingerprint(), strings.ToUpper(decision))
	if err := c.confirm("sign?", *yes); err != nil {
		return fmt.Errorf("request approve: %w", err)
	}
	out, err := cli.Sign(ctx, review, decision, me.Subject, priv)
	if decision == approval.Deny {
		if vetoed := denyAtCustodians(ctx, c, cli, genesis, review, me.Subject, priv, err); vetoed && err != nil {
			return nil
		}
	}
	if err != nil {
		return err
	}
	return printJSON(c.stdout, out)
}

// denyAtCustodians delivers a deny vote to every custodian directly
// (deliverVeto), whatever the mediator answered (signErr): a mediator that
// refuses or withholds the vote cannot keep it from them. It reports on
// stderr, and returns whether any custodian holds the vote. The command
// exits 0 when the mediator or at least one custodian recorded the deny:
// that custodian refuses its share from then on, and a run again
// delivers it to the others; it fails only when no one recorded it.
func denyAtCustodians(ctx context.Context, c *call, cli *client.Client, genesis string, review client.Review, approverID string, priv ed25519.PrivateKey, signErr error) bool {
	fmt.Fprintln(c.stderr, "delivering your deny to every custodian directly, so that the mediator cannot withhold it:")
	n, total, err := deliverVeto(ctx, c.stderr, cli, genesis, review, approverID, priv)
	if err != nil {
		fmt.Fprintf(c.stderr, "WARNING: your deny was not delivered to the custodians: %v\n", err)
	}
	if n < total {
		fmt.Fprintf(c.stderr, "WARNING: your deny is on record at %d of %d custodians; one without it gives its share if a mediator withholds your deny: run mediator request approve %s --deny again\n",
			n, total, review.Request.ID)
	}
	if signErr != nil && n > 0 {
		fmt.Fprintf(c.stderr, "WARNING: the mediator did not record your deny (%v); the %d custodians that hold it refuse the release\n", signErr, n)
	}
	return n > 0
}

// showReview prints a request as verified on this machine: every field
// from the canonical bytes it parsed, who filed and signed it as the
// verified roster lists them, and each vote as checked here. Only the
// status is the mediator's word, and says so.
func showReview(w io.Writer, r client.Review) {
	q := r.Request
	fmt.Fprintf(w, "request %s, verified on this machine against roster version %d (%s)\n", q.ID, r.Roster.Version, r.RosterDigest)
	fmt.Fprintf(w, "  filed and signed by officer %s (%s), key %s\n", r.Officer.ID, strings.Join(r.Officer.Roles, ","), r.Officer.Fingerprint())
	fmt.Fprintf(w, "  case           %s\n  legal basis    %s (%s)\n  warrant        %s\n", q.CaseID, q.LegalBasis, q.Jurisdiction, q.WarrantRef)
	fmt.Fprintf(w, "  justification  %s\n", q.Justification)
	fmt.Fprintf(w, "  conversations  %s\n", strings.Join(q.Scope.ConversationIDs, ", "))
	if slices.ContainsFunc(q.Scope.ConversationIDs, pseudonym.Valid) {
		fmt.Fprintf(w, "                 (pseudonyms: the officer computed them from the real ids on their machine, and their signature covers that mapping; the case file holds the real ids)\n")
	}
	fmt.Fprintf(w, "  window         %s to %s\n", approval.FormatTime(q.Scope.From), approval.FormatTime(q.Scope.To))
	fmt.Fprintf(w, "  recipient key  %s (KEM %#04x), chosen and signed by the officer\n", q.Recipient.Fingerprint(), q.Recipient.KEMID)
	fmt.Fprintf(w, "  filed          %s, expires %s\n", approval.FormatTime(q.CreatedAt), approval.FormatTime(q.ExpiresAt))
	fmt.Fprintf(w, "  digest         %s\n", r.Digest)
	for _, a := range r.Approvals {
		check := "signature verified"
		if !a.Verified {
			check = "NOT VERIFIED: counts for nothing"
		}
		fmt.Fprintf(w, "  vote           %s by %s (%s), %s\n", a.Decision, a.ApproverID, strings.Join(a.Roles, ","), check)
	}
	fmt.Fprintf(w, "  status         %s (the mediator's word)\n", r.Status)
}

// keygenCmd makes an approver signing key or a recipient HPKE key pair:
// FILE (private, 0600, never overwritten) and FILE.pub (public).
func keygenCmd(ctx context.Context, c *call, args []string) error {
	fs := c.newFlags()
	approver := fs.Bool("approver", false, "an Ed25519 key to sign approvals and roster versions with; prints the public key for the roster")
	officer := fs.Bool("officer", false, "an Ed25519 key to sign the requests you file with; prints the public key for the roster (role officer)")
	recipient := fs.Bool("recipient", false, "an HPKE key pair to receive released keys; FILE.pub goes in requests")
	kemName := fs.String("kem", "mlkem768-x25519", "recipient KEM: mlkem768-x25519 (post-quantum hybrid) or x25519")
	outFile := fs.String("out", "", "private key file to create (the public key goes to FILE.pub)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	signing := *approver || *officer
	if (*approver && *officer) || signing == *recipient || *outFile == "" {
		fs.Usage()
		return exitCode(2)
	}
	var priv, pub []byte
	var shown string
	if signing {
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

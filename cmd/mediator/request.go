package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/mediatorhq/mediator/access"
)

// apiClient is the officer CLI's connection to a running mediator.
type apiClient struct {
	base  string
	token string
	http  *http.Client
}

// bindClientFlags adds --url and --token. The token is read from
// MEDIATOR_TOKEN by default: a flag value would show in ps.
func bindClientFlags(fs *flag.FlagSet) (*string, *string) {
	u := fs.String("url", env("http://127.0.0.1:8080", "MEDIATOR_URL", "MEDIATOR_ADDR"), "the mediator [MEDIATOR_URL, MEDIATOR_ADDR]")
	tok := fs.String("token", "", "bearer token (default: MEDIATOR_TOKEN; prefer the environment, flags show in ps)")
	return u, tok
}

func newAPIClient(base, token string) (*apiClient, error) {
	if token == "" {
		token = os.Getenv("MEDIATOR_TOKEN")
	}
	if token == "" {
		return nil, errors.New("no token: set MEDIATOR_TOKEN (for the dev instance: export MEDIATOR_TOKEN=$(mediator dev token --sub NAME --roles officer))")
	}
	base = strings.TrimRight(base, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	return &apiClient{base: base, token: token, http: &http.Client{Timeout: 2 * time.Minute}}, nil
}

// apiError is an error answer of the API, shown whole: status, code,
// message and details (such as the policy's reasons).
type apiError struct {
	Status  int
	Code    string
	Message string
	Details []json.RawMessage
}

func (e *apiError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s: %s", e.Status, e.Code, e.Message)
	for _, d := range e.Details {
		var reasons struct {
			Reasons []string `json:"reasons"`
		}
		if json.Unmarshal(d, &reasons) == nil && len(reasons.Reasons) > 0 {
			for _, r := range reasons.Reasons {
				fmt.Fprintf(&b, "\n  - %s", r)
			}
			continue
		}
		fmt.Fprintf(&b, "\n  %s", d)
	}
	return b.String()
}

// do sends body (JSON, or nothing) and decodes a 2xx answer into out.
func (c *apiClient) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the mediator at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var env struct {
			Error struct {
				Code    string            `json:"code"`
				Message string            `json:"message"`
				Details []json.RawMessage `json:"details"`
			} `json:"error"`
		}
		if json.Unmarshal(raw, &env) != nil || env.Error.Code == "" {
			return &apiError{Status: resp.StatusCode, Code: "unexpected_answer", Message: http.StatusText(resp.StatusCode)}
		}
		return &apiError{Status: resp.StatusCode, Code: env.Error.Code, Message: env.Error.Message, Details: env.Error.Details}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("unexpected answer from the mediator: %w", err)
	}
	return nil
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
           sign and submit your vote (approver); checks the digest first
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
	case "show", "list", "revoke":
		return requestSimple(ctx, verb, args, stdout, stderr)
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
	base, token := bindClientFlags(fs)
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
	c, err := newAPIClient(*base, *token)
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
	var rk access.RecipientKey
	if err := json.Unmarshal(pubFile, &rk); err != nil || len(rk.PublicKey) == 0 {
		return fmt.Errorf("request create: %s is not a recipient public key file", *recipient)
	}
	body := map[string]any{
		"case_id": *caseID, "legal_basis": *basis, "warrant_ref": *warrant, "jurisdiction": *jurisdiction,
		"justification": *justification, "scope": map[string]any{"conversation_ids": []string(convos), "from": f, "to": t},
		"recipient_public_key": rk, "expires_at": time.Now().Add(*expires).UTC().Truncate(time.Second),
	}
	var out map[string]any
	if err := c.do(ctx, http.MethodPost, "/v1/access-requests", body, &out); err != nil {
		return err
	}
	return printJSON(stdout, out)
}

// requestSimple runs show, list and revoke: one call, the answer printed.
func requestSimple(ctx context.Context, verb string, args []string, stdout, stderr io.Writer) error {
	synopsis := map[string]string{"show": "mediator request show ID", "list": "mediator request list [--status S]", "revoke": "mediator request revoke ID"}[verb]
	fs := newFlagSet("request "+verb, synopsis, stderr)
	base, token := bindClientFlags(fs)
	status := fs.String("status", "", "list: only requests in this state (pending, released, denied, expired, revoked)")
	id, err := parseWithID(fs, args, verb != "list")
	if err != nil {
		return err
	}
	c, err := newAPIClient(*base, *token)
	if err != nil {
		return err
	}
	var out map[string]any
	switch verb {
	case "show":
		err = c.do(ctx, http.MethodGet, "/v1/access-requests/"+url.PathEscape(id), nil, &out)
	case "list":
		q := ""
		if *status != "" {
			q = "?status=" + url.QueryEscape(*status)
		}
		err = c.do(ctx, http.MethodGet, "/v1/access-requests"+q, nil, &out)
	case "revoke":
		err = c.do(ctx, http.MethodPost, "/v1/access-requests/"+url.PathEscape(id)+"/revoke", map[string]any{}, &out)
	}
	if err != nil {
		return err
	}
	return printJSON(stdout, out)
}

// parseWithID parses flags that may come before or after one positional
// request id.
func parseWithID(fs *flag.FlagSet, args []string, needID bool) (string, error) {
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
	if needID && id == "" {
		fs.Usage()
		return "", exitCode(2)
	}
	return id, nil
}

// shownRequest is what approve and release read of a request.
type shownRequest struct {
	ID        string              `json:"id"`
	Status    string              `json:"status"`
	Requester string              `json:"requester"`
	CaseID    string              `json:"case_id"`
	Digest    string              `json:"digest"`
	Canonical []byte              `json:"canonical"`
	Recipient access.RecipientKey `json:"recipient_public_key"`
	Scope     struct {
		ConversationIDs []string `json:"conversation_ids"`
		From            string   `json:"from"`
		To              string   `json:"to"`
	} `json:"scope"`
}

func requestApprove(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("request approve", "mediator request approve ID --key FILE [--deny]", stderr)
	base, token := bindClientFlags(fs)
	keyFile := fs.String("key", "", "your approver key file (from mediator keygen --approver)")
	deny := fs.Bool("deny", false, "vote to deny instead of approve")
	id, err := parseWithID(fs, args, true)
	if err != nil {
		return err
	}
	c, err := newAPIClient(*base, *token)
	if err != nil {
		return err
	}
	raw, err := os.ReadFile(*keyFile)
	if err != nil {
		return fmt.Errorf("request approve: --key: %w", err)
	}
	priv, err := access.ParseApproverKey(raw)
	clear(raw)
	if err != nil {
		return err
	}
	defer clear(priv)
	var me struct {
		Subject string `json:"subject"`
	}
	if err := c.do(ctx, http.MethodGet, "/v1/whoami", nil, &me); err != nil {
		return err
	}
	var req shownRequest
	if err := c.do(ctx, http.MethodGet, "/v1/access-requests/"+url.PathEscape(id), nil, &req); err != nil {
		return err
	}
	// Sign only what was checked here: the digest must be the hash of the
	// canonical request, and that request must be this id.
	var canon struct {
		ID string `json:"id"`
	}
	if access.Digest(req.Canonical) != req.Digest || json.Unmarshal(req.Canonical, &canon) != nil || canon.ID != id {
		return errors.New("request approve: the mediator's digest does not match the request it shows; not signing")
	}
	decision := access.DecisionApprove
	if *deny {
		decision = access.DecisionDeny
	}
	fmt.Fprintf(stderr, "signing %s of request %s (case %s, requester %s, %d conversations, %s to %s)\n  digest %s\n",
		decision, id, req.CaseID, req.Requester, len(req.Scope.ConversationIDs), req.Scope.From, req.Scope.To, req.Digest)
	sig := ed25519.Sign(priv, access.ApprovalMessage(id, req.Digest, decision, me.Subject))
	var out map[string]any
	if err := c.do(ctx, http.MethodPost, "/v1/access-requests/"+url.PathEscape(id)+"/approvals",
		map[string]any{"decision": decision, "signature": base64.StdEncoding.EncodeToString(sig)}, &out); err != nil {
		return err
	}
	return printJSON(stdout, out)
}

// openedKey is one line of release's output file.
type openedKey struct {
	ConversationID string `json:"conversation_id"`
	KeyID          string `json:"key_id"`
	Key            []byte `json:"key"`
}

func requestRelease(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("request release", "mediator request release ID --key FILE --out FILE", stderr)
	base, token := bindClientFlags(fs)
	keyFile := fs.String("key", "", "your recipient key file (from mediator keygen --recipient)")
	outFile := fs.String("out", "", "where to write the opened keys, one JSON object a line; created 0600, never overwritten")
	id, err := parseWithID(fs, args, true)
	if err != nil {
		return err
	}
	if *outFile == "" {
		return errors.New("request release: --out is required")
	}
	c, err := newAPIClient(*base, *token)
	if err != nil {
		return err
	}
	raw, err := os.ReadFile(*keyFile)
	if err != nil {
		return fmt.Errorf("request release: --key: %w", err)
	}
	priv, err := access.ParseRecipientKey(raw)
	clear(raw)
	if err != nil {
		return err
	}
	// Create the output first: a release is final, and its keys must have
	// somewhere to go.
	out, err := os.OpenFile(*outFile, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("request release: --out: %w (it must not exist yet)", err)
	}
	var rel struct {
		Keys       []access.SealedKey `json:"keys"`
		DecisionID string             `json:"decision_id"`
		AuditSeq   int64              `json:"audit_seq"`
	}
	if err := c.do(ctx, http.MethodPost, "/v1/access-requests/"+url.PathEscape(id)+"/release", map[string]any{}, &rel); err != nil {
		out.Close()
		os.Remove(*outFile)
		return err
	}
	enc := json.NewEncoder(out)
	for _, sk := range rel.Keys {
		key, err := access.Open(priv, id, sk)
		if err != nil {
			out.Close()
			// The request is released now: keep the sealed keys rather
			// than lose them to a wrong --key.
			sealed, _ := json.Marshal(rel)
			if werr := writeNew(*outFile+".sealed", sealed, 0o600); werr != nil {
				return fmt.Errorf("request release: open the key of %s/%s: %w (and saving the sealed keys failed: %v)", sk.ConversationID, sk.KeyID, err, werr)
			}
			return fmt.Errorf("request release: open the key of %s/%s: %w; the sealed keys are saved in %s.sealed", sk.ConversationID, sk.KeyID, err, *outFile)
		}
		err = enc.Encode(openedKey{ConversationID: sk.ConversationID, KeyID: sk.KeyID, Key: key})
		clear(key)
		if err != nil {
			out.Close()
			return fmt.Errorf("request release: write %s: %w", *outFile, err)
		}
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("request release: write %s: %w", *outFile, err)
	}
	fmt.Fprintf(stdout, "released %d keys of request %s into %s (decision %s, audit seq %d)\n",
		len(rel.Keys), id, *outFile, rel.DecisionID, rel.AuditSeq)
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
		file, pk, err := access.NewApproverKey()
		if err != nil {
			return err
		}
		priv = file
		shown = base64.StdEncoding.EncodeToString(pk)
		pub = []byte(shown + "\n")
	} else {
		kem := map[string]uint16{"mlkem768-x25519": access.KEMMLKEM768X25519, "x25519": access.KEMX25519}[*kemName]
		if kem == 0 {
			return errors.New("keygen: --kem must be mlkem768-x25519 or x25519")
		}
		file, pk, err := access.NewRecipientKey(kem)
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

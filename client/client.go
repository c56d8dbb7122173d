// Package client is the Go client of the mediator's REST API, for gateways
// (ingest, deposits), officers and approvers (the `mediator` CLI), the load
// generator and the end-to-end tests. Its request and response types are
// package wire's, the ones the server itself encodes.
//
// The checks that protect the caller run here, on the caller's machine: an
// approver signs only a request whose digest this package recomputed from
// the canonical form it parsed itself.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/mediatorhq/mediator/wire"
)

// Client talks to one mediator as one caller (a bearer token). It is safe
// for concurrent use.
type Client struct {
	base  string
	token string
	http  *http.Client

	// seen is the newest roster version this client verified, per
	// genesis: a long-lived client (a gateway) refuses an older chain
	// offered later.
	seenMu sync.Mutex
	seen   map[string]seenVersion

	// pseudonyms, if set, pseudonymises identifiers before they leave
	// (UsePseudonyms).
	pseudonyms Pseudonymizer
}

// defaultTimeout bounds one call: far above any answer of a healthy
// mediator (a release of 100 keys takes well under a second).
const defaultTimeout = 2 * time.Minute

// maxAnswer bounds the answer body the client reads.
const maxAnswer = 64 << 20

// New returns a client of the mediator at baseURL ("http://host:port", or
// "host:port") that authenticates with token. httpClient may be nil.
func New(baseURL, token string, httpClient *http.Client) (*Client, error) {
	if token == "" {
		return nil, errors.New("client: no bearer token")
	}
	base := strings.TrimRight(baseURL, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	u, err := url.Parse(base)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("client: bad mediator URL %q", baseURL)
	}
	if httpClient == nil {
		httpClient = &http.Client{Timeout: defaultTimeout}
	}
	return &Client{base: base, token: token, http: httpClient}, nil
}

// NewLocal returns a client of a local agent at baseURL ("http://host:port"
// on loopback, or "unix:///path/to/socket"), which takes no token from
// local callers: the client sends none.
func NewLocal(baseURL string, httpClient *http.Client) (*Client, error) {
	if path, ok := strings.CutPrefix(baseURL, "unix://"); ok {
		if httpClient == nil {
			httpClient = &http.Client{Timeout: defaultTimeout}
		}
		hc := *httpClient
		hc.Transport = &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}}
		return &Client{base: "http://agent", http: &hc}, nil
	}
	c, err := New(baseURL, "-", httpClient)
	if err != nil {
		return nil, err
	}
	c.token = ""
	return c, nil
}

// URL is the mediator the client talks to.
func (c *Client) URL() string { return c.base }

// Error is an error answer of the API: its status, stable code, message and
// details (a field and reason, a policy's reasons).
type Error struct {
	Status  int
	Code    string
	Message string
	Details []json.RawMessage
	// Custodian names the custodian whose failure the answer is, when the
	// mediator names one (a deposit 503: details
	// {"dependency":"custodian","custodian","reason"}); Reason is what it
	// says of it.
	Custodian, Reason string
}

func (e *Error) Error() string {
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

// IsCode reports whether err is an API error with code.
func IsCode(err error, code string) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

// do sends body (JSON-encoded unless it is []byte, or nothing when nil)
// and decodes a 2xx answer into out (unless nil). It returns the status.
func (c *Client) do(ctx context.Context, method, path, contentType string, body, out any) (int, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		enc, err := json.Marshal(b)
		if err != nil {
			return 0, fmt.Errorf("client: encode %s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(enc)
		contentType = "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, fmt.Errorf("client: %w", err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("client: cannot reach the mediator at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("client: read the answer to %s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, decodeError(resp.StatusCode, raw)
	}
	if out == nil {
		return resp.StatusCode, nil
	}
	if s, ok := out.(*string); ok {
		*s = string(raw)
		return resp.StatusCode, nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return resp.StatusCode, fmt.Errorf("client: unexpected answer to %s %s: %w", method, path, err)
	}
	return resp.StatusCode, nil
}

func decodeError(status int, raw []byte) error {
	var env struct {
		Error struct {
			Code    string            `json:"code"`
			Message string            `json:"message"`
			Details []json.RawMessage `json:"details"`
		} `json:"error"`
	}
	if json.Unmarshal(raw, &env) != nil || env.Error.Code == "" {
		return &Error{Status: status, Code: "unexpected_answer", Message: http.StatusText(status)}
	}
	e := &Error{Status: status, Code: env.Error.Code, Message: env.Error.Message, Details: env.Error.Details}
	for _, d := range e.Details {
		var dep struct {
			Dependency string `json:"dependency"`
			Custodian  string `json:"custodian"`
			Reason     string `json:"reason"`
		}
		if json.Unmarshal(d, &dep) == nil && dep.Dependency == "custodian" && dep.Custodian != "" {
			e.Custodian, e.Reason = dep.Custodian, dep.Reason
			break
		}
	}
	return e
}

func (c *Client) get(ctx context.Context, path string, out any) error {
	_, err := c.do(ctx, http.MethodGet, path, "", nil, out)
	return err
}

func (c *Client) post(ctx context.Context, path string, body, out any) error {
	_, err := c.do(ctx, http.MethodPost, path, "", body, out)
	return err
}

// Whoami returns the caller as the mediator verified its token.
func (c *Client) Whoami(ctx context.Context) (wire.Whoami, error) {
	var out wire.Whoami
	return out, c.get(ctx, "/v1/whoami", &out)
}

// SendEvents posts a body of events, {"events":[...]} or NDJSON, and
// returns the mediator's account of them, which it gives only after the
// commit. An atomic request is refused whole if any event is invalid.
func (c *Client) SendEvents(ctx context.Context, body []byte, ndjson, atomic bool) (wire.IngestResponse, error) {
	ct, path := "application/json", "/v1/events"
	if ndjson {
		ct = "application/x-ndjson"
	}
	if atomic {
		path += "?atomic=true"
	}
	var out wire.IngestResponse
	_, err := c.do(ctx, http.MethodPost, path, ct, body, &out)
	return out, err
}

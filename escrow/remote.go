package escrow

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/mediatorhq/mediator/batch"
	"github.com/mediatorhq/mediator/wire"
)

// Remote is the mediator's connection to one custodian service: it calls
// the custodian's API with the mediator's bearer token, and merges the
// share writes of concurrent deposits into one call (and so one write in
// the custodian's store). It can ask; it cannot open anything.
type Remote struct {
	Name   string
	url    string
	token  string
	http   *http.Client
	store  *batch.Queue[wire.ShareToStore, wire.StoreResult]
	commit *batch.Queue[wire.ShareRef, wire.CommitResult]
}

// storeBatchMax bounds the shares of one store call.
const storeBatchMax = 256

// remoteTimeout bounds one call to a custodian: far above a healthy answer,
// below the mediator's own write timeout.
const remoteTimeout = 20 * time.Second

// NewRemote returns the connection to the custodian serving at url.
// httpClient may be nil.
func NewRemote(name, url, token string, httpClient *http.Client) *Remote {
	if httpClient == nil {
		httpClient = &http.Client{Timeout: remoteTimeout, Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	}
	r := &Remote{Name: name, url: strings.TrimRight(url, "/"), token: token, http: httpClient}
	r.store = &batch.Queue[wire.ShareToStore, wire.StoreResult]{Fn: r.storeBatch, Max: storeBatchMax, Timeout: remoteTimeout}
	r.commit = &batch.Queue[wire.ShareRef, wire.CommitResult]{Fn: r.commitBatch, Max: storeBatchMax, Timeout: remoteTimeout}
	return r
}

// UnavailableError: the custodian could not be reached, refused the
// call, or did not answer as it should.
type UnavailableError struct {
	Custodian string
	Err       error
	// Reason says why in words a caller may be shown: what the custodian
	// answered (its status, code and message), or that it could not be
	// reached or answered unexpectedly. It never holds a transport
	// error's detail (an address), a token, a share or a key; Err, for
	// the mediator's own log, may hold more.
	Reason string
	// Refused: the custodian answered, and said no.
	Refused bool
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("custodian %s unavailable: %v", e.Custodian, e.Err)
}

func (e *UnavailableError) Unwrap() error { return ErrUnavailable }

// Public is the failure as a caller may be shown it: "custodian NAME"
// and its reason.
func (e *UnavailableError) Public() string {
	reason := e.Reason
	if reason == "" {
		reason = "did not answer as it should"
	}
	return "custodian " + e.Custodian + " " + reason
}

// FailedCustodians returns the custodians err holds failures of (each
// *UnavailableError in its tree, as errors.Join and fmt.Errorf with %w
// keep them), once per custodian, in the order found: for a deposit, the
// order of the set.
func FailedCustodians(err error) []*UnavailableError {
	var out []*UnavailableError
	seen := map[string]bool{}
	var walk func(error)
	walk = func(err error) {
		switch e := err.(type) {
		case nil:
			return
		case *UnavailableError:
			if !seen[e.Custodian] {
				seen[e.Custodian] = true
				out = append(out, e)
			}
			return
		case interface{ Unwrap() []error }:
			for _, x := range e.Unwrap() {
				walk(x)
			}
		case interface{ Unwrap() error }:
			walk(e.Unwrap())
		}
	}
	walk(err)
	return out
}

// maxReason bounds what of a custodian's own message a reason repeats.
const maxReason = 200

// answered is the reason of a custodian that answered with an error:
// verb, then what it said, printable and cut short.
func answered(verb, said string) string {
	said = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, strings.TrimSpace(said))
	if len(said) > maxReason {
		said = strings.ToValidUTF8(said[:maxReason], "") + "…"
	}
	return verb + ": " + said
}

// unreachable is the error of a call that got no answer: the reason says
// so without the transport error's detail.
func (r *Remote) unreachable(err error) *UnavailableError {
	reason := "could not be reached"
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		reason = "did not answer in time"
	}
	return &UnavailableError{Custodian: r.Name, Err: err, Reason: reason}
}

// unexpected is the error of an answer that is not what the call asks
// for.
func (r *Remote) unexpected(err error) *UnavailableError {
	return &UnavailableError{Custodian: r.Name, Err: err, Reason: "answered unexpectedly"}
}

// RefusedError: the custodian's own checks refused a release, for its
// reasons.
type RefusedError struct {
	Custodian      string
	Reasons        []string
	PolicyRevision string
}

func (e *RefusedError) Error() string {
	return "custodian " + e.Custodian + " refused: " + strings.Join(e.Reasons, "; ")
}

// call posts body to path and decodes a 200 answer into out.
func (r *Remote) call(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.url+path, rd)
	if err != nil {
		return r.unreachable(err)
	}
	req.Header.Set("Authorization", "Bearer "+r.token)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := r.http.Do(req)
	if err != nil {
		return r.unreachable(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return r.unreachable(err)
	}
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(raw, out); err != nil {
			return r.unexpected(fmt.Errorf("unexpected answer: %w", err))
		}
		return nil
	}
	var env struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
			Details []struct {
				Reasons        []string `json:"reasons"`
				PolicyRevision string   `json:"policy_revision"`
			} `json:"details"`
		} `json:"error"`
	}
	_ = json.Unmarshal(raw, &env)
	if resp.StatusCode == http.StatusForbidden && env.Error.Code == "custodian_refused" {
		refused := &RefusedError{Custodian: r.Name}
		for _, d := range env.Error.Details {
			refused.Reasons = append(refused.Reasons, d.Reasons...)
			refused.PolicyRevision = d.PolicyRevision
		}
		if len(refused.Reasons) == 0 {
			refused.Reasons = []string{env.Error.Message}
		}
		return refused
	}
	code := env.Error.Code
	if code == "" {
		code = "unexpected_answer"
	}
	// A custodian that says no (4xx) refused; one that failed (5xx) did
	// not decide.
	verb, refusedCall := "refused", resp.StatusCode < 500
	if !refusedCall {
		verb = "failed"
	}
	return &UnavailableError{Custodian: r.Name, Err: fmt.Errorf("status %d %s: %s", resp.StatusCode, env.Error.Code, env.Error.Message),
		Reason: answered(verb, fmt.Sprintf("%d %s: %s", resp.StatusCode, code, env.Error.Message)), Refused: refusedCall}
}

// Info fetches the custodian's public keys and policy revision.
func (r *Remote) Info(ctx context.Context) (wire.CustodianInfo, error) {
	var out wire.CustodianInfo
	return out, r.call(ctx, http.MethodGet, "/v1/custodian", nil, &out)
}

// Store asks the custodian to store one share, in one call with the shares
// of concurrent deposits.
func (r *Remote) Store(ctx context.Context, item wire.ShareToStore) (wire.StoreResult, error) {
	return r.store.Do(ctx, item)
}

func (r *Remote) storeBatch(ctx context.Context, items []wire.ShareToStore) ([]wire.StoreResult, error) {
	var ans wire.StoreAnswer
	if err := r.call(ctx, http.MethodPost, "/v1/shares", wire.StoreShares{Shares: items}, &ans); err != nil {
		return nil, err
	}
	if len(ans.Results) != len(items) {
		return nil, r.unexpected(fmt.Errorf("%d results for %d shares", len(ans.Results), len(items)))
	}
	return ans.Results, nil
}

// Commit asks the custodian to commit one stored share and sign its
// deposit receipt, in one call with the commits of concurrent deposits.
// A committed share is never aborted.
func (r *Remote) Commit(ctx context.Context, ref wire.ShareRef) (wire.CommitResult, error) {
	return r.commit.Do(ctx, ref)
}

func (r *Remote) commitBatch(ctx context.Context, refs []wire.ShareRef) ([]wire.CommitResult, error) {
	var ans wire.CommitAnswer
	if err := r.call(ctx, http.MethodPost, "/v1/shares/commit", wire.ShareRefs{Shares: refs}, &ans); err != nil {
		return nil, err
	}
	if len(ans.Results) != len(refs) {
		return nil, r.unexpected(fmt.Errorf("%d results for %d shares", len(ans.Results), len(refs)))
	}
	return ans.Results, nil
}

// Abort asks the custodian to drop shares of deposits that failed.
func (r *Remote) Abort(ctx context.Context, refs []wire.ShareRef) ([]wire.RefResult, error) {
	return r.refs(ctx, "/v1/shares/abort", refs)
}

// Destroy asks the custodian to destroy shares at retention end.
func (r *Remote) Destroy(ctx context.Context, refs []wire.ShareRef) ([]wire.RefResult, error) {
	return r.refs(ctx, "/v1/shares/destroy", refs)
}

func (r *Remote) refs(ctx context.Context, path string, refs []wire.ShareRef) ([]wire.RefResult, error) {
	var ans wire.RefAnswer
	if err := r.call(ctx, http.MethodPost, path, wire.ShareRefs{Shares: refs}, &ans); err != nil {
		return nil, err
	}
	if len(ans.Results) != len(refs) {
		return nil, r.unexpected(errors.New("one result per share expected"))
	}
	return ans.Results, nil
}

// Hold tells the custodian of a legal hold, or of its release.
func (r *Remote) Hold(ctx context.Context, h wire.Hold) error {
	var out wire.Hold
	return r.call(ctx, http.MethodPost, "/v1/holds", h, &out)
}

// Release asks the custodian to check a release and re-seal its shares.
// A refusal is a *RefusedError.
func (r *Remote) Release(ctx context.Context, ev wire.ReleaseEvidence) (wire.ReleaseAnswer, error) {
	var ans wire.ReleaseAnswer
	if err := r.call(ctx, http.MethodPost, "/v1/releases", ev, &ans); err != nil {
		return ans, err
	}
	if len(ans.Shares) != len(ev.Shares) {
		return ans, r.unexpected(errors.New("one result per share expected"))
	}
	return ans, nil
}

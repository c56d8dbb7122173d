package client

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/url"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/wire"
)

// CreateRequest files a lawful-access request (officer).
func (c *Client) CreateRequest(ctx context.Context, r wire.CreateRequest) (wire.Created, error) {
	var out wire.Created
	return out, c.post(ctx, "/v1/access-requests", r, &out)
}

// Request returns request id, its canonical form and digest, and its
// approvals.
func (c *Client) Request(ctx context.Context, id string) (wire.Request, error) {
	var out wire.Request
	return out, c.get(ctx, "/v1/access-requests/"+url.PathEscape(id), &out)
}

// Requests lists requests, newest first, in status (all when empty).
func (c *Client) Requests(ctx context.Context, status string) (wire.RequestList, error) {
	path := "/v1/access-requests"
	if status != "" {
		path += "?status=" + url.QueryEscape(status)
	}
	var out wire.RequestList
	return out, c.get(ctx, path, &out)
}

// Revoke withdraws the caller's own pending request.
func (c *Client) Revoke(ctx context.Context, id string) (wire.Request, error) {
	var out wire.Request
	return out, c.post(ctx, "/v1/access-requests/"+url.PathEscape(id)+"/revoke", wire.Empty{}, &out)
}

// Review is a request as an approver is about to sign it: the request read
// from the canonical bytes the client parsed itself, never from the
// mediator's separate fields, and the digest recomputed from those bytes.
type Review struct {
	Request  approval.Request
	Digest   string
	Approver string // the caller's subject: the approver id the signature names
}

// ErrDigestMismatch: the mediator showed a request whose digest, id or
// form does not match its canonical bytes; nothing may be signed.
var ErrDigestMismatch = errors.New("client: the mediator's digest does not match the request it shows; not signing")

// Review fetches request id and checks it before an approver signs it: the
// canonical bytes must parse as a canonical request of this id, and the
// digest the mediator shows must be their SHA-256.
func (c *Client) Review(ctx context.Context, id string) (Review, error) {
	me, err := c.Whoami(ctx)
	if err != nil {
		return Review{}, err
	}
	shown, err := c.Request(ctx, id)
	if err != nil {
		return Review{}, err
	}
	return CheckRequest(shown, id, me.Subject)
}

// CheckRequest is Review's check of a request shown by the mediator.
func CheckRequest(shown wire.Request, id, approver string) (Review, error) {
	req, err := approval.Parse(shown.Canonical)
	if err != nil {
		return Review{}, fmt.Errorf("%w: %v", ErrDigestMismatch, err)
	}
	digest := approval.Digest(shown.Canonical)
	if req.ID != id || digest != shown.Digest {
		return Review{}, ErrDigestMismatch
	}
	return Review{Request: req, Digest: digest, Approver: approver}, nil
}

// Sign signs decision (approval.Approve or approval.Deny) on the reviewed
// request with key and submits it. The signature covers approval.Message
// of the reviewed id and digest, the decision and the caller: nothing the
// client did not check.
func (c *Client) Sign(ctx context.Context, r Review, decision string, key ed25519.PrivateKey) (wire.ApprovalRecorded, error) {
	sig := ed25519.Sign(key, approval.Message(r.Request.ID, r.Digest, decision, r.Approver))
	var out wire.ApprovalRecorded
	err := c.post(ctx, "/v1/access-requests/"+url.PathEscape(r.Request.ID)+"/approvals",
		wire.ApprovalRequest{Decision: decision, Signature: sig}, &out)
	return out, err
}

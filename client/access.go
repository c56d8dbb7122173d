package client

import (
	"context"
	"crypto/ed25519"
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

// Sign signs decision (approval.Approve or approval.Deny) on the reviewed
// request as approverID (the caller's roster id) with key, and submits
// it. The signature covers approval.Message of the reviewed id and
// digest, the decision and the approver: nothing the client did not
// check.
func (c *Client) Sign(ctx context.Context, r Review, decision, approverID string, key ed25519.PrivateKey) (wire.ApprovalRecorded, error) {
	sig := ed25519.Sign(key, approval.Message(r.Request.ID, r.Digest, decision, approverID))
	var out wire.ApprovalRecorded
	err := c.post(ctx, "/v1/access-requests/"+url.PathEscape(r.Request.ID)+"/approvals",
		wire.ApprovalRequest{Decision: decision, Signature: sig}, &out)
	return out, err
}

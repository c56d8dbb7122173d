package client

import (
	"context"
	"crypto/ed25519"
	"crypto/hpke"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/shares"
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

// Release asks for the keys of the caller's own request. The answer holds
// them sealed to the request's recipient key; Open opens them.
func (c *Client) Release(ctx context.Context, id string) (wire.Release, error) {
	var out wire.Release
	return out, c.post(ctx, "/v1/access-requests/"+url.PathEscape(id)+"/release", wire.Empty{}, &out)
}

// Released fetches a completed release again (its requester only).
func (c *Client) Released(ctx context.Context, id string) (wire.Release, error) {
	var out wire.Release
	return out, c.get(ctx, "/v1/access-requests/"+url.PathEscape(id)+"/release", &out)
}

// OpenedKey is a released key, opened and checked against its commitment.
// BadShares names the custodians whose shares were not on the key's
// polynomial (corrupt or substituted): the key was recovered without them.
type OpenedKey struct {
	ConversationID string   `json:"conversation_id"`
	KeyID          string   `json:"key_id"`
	Key            []byte   `json:"key"`
	BadShares      []string `json:"bad_shares,omitempty"`
}

// KeyError is a released key that could not be recovered: too few shares
// opened, or no set of them matched the key's commitment.
type KeyError struct {
	ConversationID, KeyID string
	// Unopened names the custodians whose shares did not open with the
	// recipient key (sealed to another key, or corrupt).
	Unopened []string
	Err      error
}

func (e *KeyError) Error() string {
	msg := fmt.Sprintf("client: the key of %s/%s was not recovered: %v", e.ConversationID, e.KeyID, e.Err)
	if len(e.Unopened) > 0 {
		msg += "; shares that did not open: " + strings.Join(e.Unopened, ", ")
	}
	return msg
}

// Open opens every key of a release of request id on the officer's
// machine: each custodian's share with the recipient's private key (under
// the info that binds it to this request, key and custodian), then any
// threshold of them combined and the result checked against the key's
// commitment. When the first shares do not match, the others are tried,
// and the custodian whose share is bad is named. The caller must clear the
// keys. Keys that could not be recovered come back as *KeyError, joined.
func Open(priv hpke.PrivateKey, id string, rel wire.Release) ([]OpenedKey, error) {
	out := make([]OpenedKey, 0, len(rel.Keys))
	var errs []error
	for _, k := range rel.Keys {
		var parts []shares.Part
		var unopened []string
		for _, sh := range k.Shares {
			share, err := shares.OpenReleased(priv, id, k.ConversationID, k.KeyID, sh.Custodian, sh.Index, sh.Sealed)
			if err != nil {
				unopened = append(unopened, sh.Custodian)
				continue
			}
			parts = append(parts, shares.Part{Custodian: sh.Custodian, Share: share})
		}
		key, bad, err := shares.Recover(k.ConversationID, k.KeyID, k.KeyCommitment, k.Threshold, parts)
		for _, p := range parts {
			clear(p.Share)
		}
		if err != nil {
			errs = append(errs, &KeyError{ConversationID: k.ConversationID, KeyID: k.KeyID, Unopened: unopened, Err: err})
			continue
		}
		out = append(out, OpenedKey{ConversationID: k.ConversationID, KeyID: k.KeyID, Key: key, BadShares: append(unopened, bad...)})
	}
	return out, errors.Join(errs...)
}

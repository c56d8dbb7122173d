package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/pseudonym"
	"github.com/mediatorhq/mediator/redact"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/wire"
)

// Filed is a request as its officer built, signed and filed it, checked
// against what the mediator stored.
type Filed struct {
	wire.Created
	Request   approval.Request
	Canonical []byte
}

// ErrStoredMismatch: the mediator stored, or shows, another request than
// the one its officer signed.
var ErrStoredMismatch = errors.New("client: the mediator stored another request than the one signed")

// FileRequest files d as the caller, an officer whose roster signing key
// is key. The officer's machine chooses everything the approvers and
// custodians will check: it fills in a fresh id, the caller's subject as
// requester and its own clock as the filing time, builds the canonical
// request (which covers the recipient key and the scope), signs its
// digest (approval.RequestMessage) and posts both. It then reads the
// request back and returns ErrStoredMismatch unless the mediator keeps
// exactly the bytes and signature it was sent.
func (c *Client) FileRequest(ctx context.Context, key ed25519.PrivateKey, d approval.Request) (Filed, error) {
	return c.FileRequestWithLegacy(ctx, key, d, nil)
}

// ErrNotLegacy: an id given as a conversation of the HMAC era is a
// pseudonym, or could not have named a conversation then (it looks like a
// phone number or an address, which deposits refused).
var ErrNotLegacy = errors.New("client: not a conversation id of the HMAC era")

// FileRequestWithLegacy is FileRequest with legacy added to the scope as
// they are: conversation ids of the HMAC era, when deposits stored them as
// sent, so that only those ids name their keys. Each must be one such an
// id could be (redact.NamesConversation, and not a pseudonym), else
// ErrNotLegacy and nothing is sent.
func (c *Client) FileRequestWithLegacy(ctx context.Context, key ed25519.PrivateKey, d approval.Request, legacy []string) (Filed, error) {
	for _, id := range legacy {
		if pseudonym.Valid(id) || !redact.NamesConversation(id) {
			return Filed{}, ErrNotLegacy
		}
	}
	me, err := c.Whoami(ctx)
	if err != nil {
		return Filed{}, err
	}
	id, err := uuid.NewRandom()
	if err != nil {
		return Filed{}, fmt.Errorf("client: request id: %w", err)
	}
	// The scope names conversations by pseudonym, computed here: the
	// officer's signature then covers the mapping from the real ids.
	if d.Scope.ConversationIDs, err = c.ConversationPseudonyms(ctx, d.Scope.ConversationIDs); err != nil {
		return Filed{}, err
	}
	d.Scope.ConversationIDs = append(d.Scope.ConversationIDs, legacy...)
	d.ID, d.Requester, d.CreatedAt = id.String(), me.Subject, time.Now().UTC().Truncate(time.Second)
	d.Scope.From = d.Scope.From.UTC().Truncate(time.Second)
	d.Scope.To = d.Scope.To.UTC().Truncate(time.Second)
	d.ExpiresAt = d.ExpiresAt.UTC().Truncate(time.Second)
	canonical, err := d.Canonical()
	if err != nil {
		return Filed{}, err
	}
	digest := approval.Digest(canonical)
	sig := approval.SignRequest(key, digest)
	var created wire.Created
	err = c.post(ctx, "/v1/access-requests", wire.CreateRequest{ID: d.ID, CaseID: d.CaseID, LegalBasis: d.LegalBasis,
		WarrantRef: d.WarrantRef, Jurisdiction: d.Jurisdiction, Justification: d.Justification,
		Scope:     wire.Scope{ConversationIDs: d.Scope.ConversationIDs, From: d.Scope.From, To: d.Scope.To},
		Recipient: d.Recipient, CreatedAt: d.CreatedAt, ExpiresAt: d.ExpiresAt, OfficerSignature: sig}, &created)
	if err != nil {
		return Filed{}, err
	}
	out := Filed{Created: created, Request: d, Canonical: canonical}
	if created.ID != d.ID || created.Digest != digest {
		return out, fmt.Errorf("%w: it answered id %s, digest %s; this machine signed %s, %s", ErrStoredMismatch, created.ID, created.Digest, d.ID, digest)
	}
	stored, err := c.Request(ctx, d.ID)
	if err != nil {
		return out, fmt.Errorf("client: reading the filed request back: %w", err)
	}
	if !bytes.Equal(stored.Canonical, canonical) || !bytes.Equal(stored.OfficerSignature, sig) {
		return out, fmt.Errorf("%w: the request read back is not the bytes this machine signed", ErrStoredMismatch)
	}
	return out, nil
}

// Review is a request as a person's tool verified it: read from the
// canonical bytes it parsed itself, never from the mediator's separate
// fields, with the digest recomputed from those bytes, and signed by its
// officer with their key in the roster in force, which the tool verified
// from the genesis it pins.
type Review struct {
	Request   approval.Request
	Digest    string
	Canonical []byte
	// Officer is the requester as the roster in force lists them.
	Officer roster.Approver
	// Roster is the roster in force, verified from the pinned genesis;
	// RosterDigest is its digest.
	Roster       roster.Roster
	RosterDigest string
	// Approvals are the votes the mediator shows, each checked here
	// against the roster in force.
	Approvals []ReviewedApproval
	// Status is the mediator's word on the request's state: shown as
	// such, never relied on.
	Status string
}

// ReviewedApproval is a vote the mediator shows, checked by the tool:
// Verified only if its signature verifies over this request's digest
// with the approver's key in the roster in force.
type ReviewedApproval struct {
	ApproverID string
	Decision   string
	Roles      []string // from the roster in force; empty if not an approver there
	Verified   bool
}

// Errors of a review.
var (
	// ErrDigestMismatch: the mediator showed a request whose digest, id or
	// form does not match its canonical bytes; nothing may be signed.
	ErrDigestMismatch = errors.New("client: the mediator's digest does not match the request it shows; not signing")
	// ErrNotOfficerSigned: the request is not signed by its requester, or
	// the requester is not an officer of the roster in force.
	ErrNotOfficerSigned = errors.New("client: the request is not signed by an officer of the roster in force; not signing")
)

// Review fetches request id and checks it as an approver must before
// signing: the roster chain verifies from genesis (Roster), and the
// request passes CheckRequest against the version in force.
func (c *Client) Review(ctx context.Context, genesis, id string) (Review, error) {
	cur, digest, err := c.Roster(ctx, genesis)
	if err != nil {
		return Review{}, err
	}
	shown, err := c.Request(ctx, id)
	if err != nil {
		return Review{}, err
	}
	r, err := CheckRequest(shown, id, cur)
	r.RosterDigest = digest
	return r, err
}

// CheckRequest checks a request shown by the mediator against cur, the
// roster in force as the caller verified it: the canonical bytes must
// parse as a canonical request of this id, the digest shown must be
// their SHA-256, and the requester must be an officer of cur whose key
// verifies the officer's signature over that digest. Approvals shown are
// checked, not trusted.
func CheckRequest(shown wire.Request, id string, cur roster.Roster) (Review, error) {
	req, err := approval.Parse(shown.Canonical)
	if err != nil {
		return Review{}, fmt.Errorf("%w: %v", ErrDigestMismatch, err)
	}
	digest := approval.Digest(shown.Canonical)
	if req.ID != id || digest != shown.Digest {
		return Review{}, ErrDigestMismatch
	}
	officer, err := cur.VerifyRequest(req.Requester, digest, shown.OfficerSignature)
	if err != nil {
		return Review{}, fmt.Errorf("%w: %v (filed by %q)", ErrNotOfficerSigned, err, req.Requester)
	}
	r := Review{Request: req, Digest: digest, Canonical: shown.Canonical, Officer: officer, Roster: cur, Status: shown.Status}
	for _, a := range shown.Approvals {
		ra := ReviewedApproval{ApproverID: a.ApproverID, Decision: a.Decision}
		if ap, ok := cur.Approver(a.ApproverID); ok {
			ra.Roles = ap.Roles
			ra.Verified = approval.Verify(ap.PublicKey, req.ID, digest, a.Decision, ap.ID, a.Signature)
		}
		r.Approvals = append(r.Approvals, ra)
	}
	return r, nil
}

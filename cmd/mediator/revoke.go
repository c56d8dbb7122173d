package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/client"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/wire"
)

// A revocation that reaches only the mediator can be ignored by it: a
// compromised mediator asks for the release all the same. So the
// officer's tool, given the officer's key, signs the revocation and
// delivers it to every custodian itself (POST /v1/revocations), with the
// roster chain it verified from the genesis it pins, at the URLs that
// chain lists: each custodian records it and refuses the request's
// release from then on, whatever the mediator's evidence says.

// requestRevoke withdraws the caller's own pending request at the
// mediator. With --key (the officer's signing key, which needs
// --genesis) it first verifies the request here and that the key is its
// officer's in the verified roster, then revokes it at the mediator and
// delivers the signed revocation to every custodian (revokeAtCustodians):
// it exits 1 unless the mediator holds the request revoked and every
// custodian holds the revocation on record. It may be run again
// (custodians answer already_recorded).
func requestRevoke(ctx context.Context, c *call, args []string) error {
	var cl clientOptions
	var genesis string
	fs := c.newFlags(reviewSettings(&cl, &genesis)...)
	keyFile := fs.String("key", "", "your officer signing key file (as for request create): also sign the revocation and deliver it to every custodian of the verified roster directly (needs --genesis)")
	g := declareGuard(fs)
	id, err := parseWithID(fs, args)
	if err != nil {
		return err
	}
	if *keyFile == "" {
		return revokeAtMediator(ctx, c, cl, g, id)
	}
	if err := needGenesis("request revoke", genesis); err != nil {
		return err
	}
	priv, err := readSigningKey("request revoke", *keyFile)
	if err != nil {
		return err
	}
	defer clear(priv)
	cli, err := cl.connect()
	if err != nil {
		return err
	}
	review, err := cli.Review(ctx, genesis, id)
	if err != nil {
		return fmt.Errorf("request revoke: %w", err)
	}
	if !review.Officer.PublicKey.Equal(priv.Public()) {
		return fmt.Errorf("request revoke: request %s was filed by officer %s, whose key in roster version %d is %s, not this key; only the officer who filed a request revokes it",
			id, review.Officer.ID, review.Roster.Version, review.Officer.Fingerprint())
	}
	out := g.out(c)
	fmt.Fprintf(out, "request %s (case %s, digest %s), filed and signed by you, officer %s, verified against roster version %d; status %s\n",
		id, review.Request.CaseID, review.Digest, review.Officer.ID, review.Roster.Version, review.Status)
	fmt.Fprintf(out, "  revoking it is final: the mediator never releases it, and every custodian that records your signed revocation refuses its release\n")
	if ok, err := c.proceed(g, "request revoke", fmt.Sprintf("revoke request %s (case %s) at the mediator and at every custodian?", id, review.Request.CaseID)); !ok {
		return err
	}
	fmt.Fprintf(c.stderr, "revoking request %s\n", id)
	mediatorErr := revokedAtMediator(ctx, c, cli, review)
	if !revokeAtCustodians(ctx, c, cli, genesis, review, priv) || mediatorErr != nil {
		return exitCode(1)
	}
	return nil
}

// revokeAtMediator is the revocation at the mediator alone, without a
// key: the custodians are not told.
func revokeAtMediator(ctx context.Context, c *call, cl clientOptions, g guard, id string) error {
	cli, err := cl.connect()
	if err != nil {
		return err
	}
	r, err := cli.Request(ctx, id)
	if err != nil {
		return fmt.Errorf("request revoke: %w", err)
	}
	w := g.out(c)
	fmt.Fprintf(w, "request %s (case %s, filed by %s; status %s), as the mediator says (unverified: --key and --genesis verify it)\n",
		r.ID, r.CaseID, r.Requester, r.Status)
	fmt.Fprintf(w, "  revoking it is final: the mediator never releases it; the custodians are not told without --key\n")
	if ok, err := c.proceed(g, "request revoke", fmt.Sprintf("revoke request %s (case %s) at the mediator?", r.ID, r.CaseID)); !ok {
		return err
	}
	out, err := cli.Revoke(ctx, id)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "request %s is %s\n", out.ID, out.Status)
	fmt.Fprintf(c.stderr, "the custodians were not told: with --key and --genesis your tool also delivers a signed revocation to each, so that a mediator cannot ignore it\n")
	return nil
}

// revokedAtMediator revokes the reviewed request at the mediator and
// says what it answered: the request's status on stdout, or a WARNING. A
// request the mediator already holds revoked (a run again) is no error.
func revokedAtMediator(ctx context.Context, c *call, cli *client.Client, review client.Review) error {
	out, err := cli.Revoke(ctx, review.Request.ID)
	var e *client.Error
	switch {
	case err == nil:
		fmt.Fprintf(c.stdout, "request %s is %s\n", out.ID, out.Status)
	case errors.As(err, &e) && e.Code == "request_final" && review.Status == "revoked":
		fmt.Fprintf(c.stdout, "request %s is revoked (before this run)\n", review.Request.ID)
		err = nil
	default:
		fmt.Fprintf(c.stderr, "WARNING: the mediator did not revoke request %s: %v\n", review.Request.ID, err)
	}
	return err
}

// revokeAtCustodians delivers the signed revocation to every custodian
// directly (deliverRevocation), whatever the mediator answered: a
// mediator that refuses or ignores the revocation cannot keep it from
// them. It reports on stderr, and returns whether every custodian holds
// it on record.
func revokeAtCustodians(ctx context.Context, c *call, cli *client.Client, genesis string, review client.Review, priv ed25519.PrivateKey) bool {
	fmt.Fprintln(c.stderr, "delivering your signed revocation to every custodian directly, so that the mediator cannot ignore it:")
	n, total, err := deliverRevocation(ctx, c.stderr, cli, genesis, review, priv)
	if err != nil {
		fmt.Fprintf(c.stderr, "WARNING: your revocation was not delivered to the custodians: %v\n", err)
		return false
	}
	if n < total {
		fmt.Fprintf(c.stderr, "WARNING: your revocation is on record at %d of %d custodians; one without it gives its share if a mediator ignores the revocation: run mediator request revoke %s --key FILE again\n",
			n, total, review.Request.ID)
		return false
	}
	return true
}

// deliverRevocation signs the officer's revocation of the request r
// shows and delivers it to every custodian (deliverStatement).
func deliverRevocation(ctx context.Context, w io.Writer, cli *client.Client, genesis string, r client.Review, key ed25519.PrivateKey) (recorded, targets int, err error) {
	sig := approval.SignRevocation(key, r.Request.ID, r.Digest)
	return deliverStatement(ctx, w, cli, genesis, r, "revocation", r.Request.Requester,
		func(ctx context.Context, hc *http.Client, url string, chain []roster.Signed) (recordedStatement, error) {
			ans, err := client.SendRevocation(ctx, hc, url, wire.Revocation{Roster: chain, Canonical: r.Canonical,
				OfficerID: r.Request.Requester, Signature: sig})
			return recordedStatement{ans.Status, ans.RequestID, ans.Digest, ans.OfficerID}, err
		})
}

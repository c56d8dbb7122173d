package main

import (
	"context"
	"crypto/ed25519"
	"io"
	"net/http"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/client"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/wire"
)

// A deny vote that reaches the custodians only through the mediator can be
// withheld by it, and two approvals then release. So the approver's tool
// delivers a deny to every custodian itself (POST /v1/vetoes), with the
// roster chain it verified from the genesis it pins, at the URLs that
// chain lists: each custodian records it and refuses the request's
// release from then on, whatever the mediator's evidence says.

// deliverVeto signs approverID's deny of the request r shows and delivers
// it to every custodian (deliverStatement).
func deliverVeto(ctx context.Context, w io.Writer, cli *client.Client, genesis string, r client.Review, approverID string, key ed25519.PrivateKey) (recorded, targets int, err error) {
	sig := ed25519.Sign(key, approval.Message(r.Request.ID, r.Digest, approval.Deny, approverID))
	return deliverStatement(ctx, w, cli, genesis, r, "deny", approverID,
		func(ctx context.Context, hc *http.Client, url string, chain []roster.Signed) (recordedStatement, error) {
			ans, err := client.SendVeto(ctx, hc, url, wire.Veto{Roster: chain, Canonical: r.Canonical, ApproverID: approverID,
				Decision: approval.Deny, Signature: sig})
			return recordedStatement{ans.Status, ans.RequestID, ans.Digest, ans.ApproverID}, err
		})
}

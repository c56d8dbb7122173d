package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
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

// deliverVeto signs approverID's deny of the request r shows and posts it
// to the custodians of every version of the roster chain the mediator
// serves, verified here from genesis (a custodian that held shares under
// an older version may hold them still). It writes one line per custodian
// to w: recorded, or a WARNING with the reason. It returns how many
// custodians hold it on record and how many it was delivered to; a
// custodian it cannot reach or that refuses is never an error here, and
// the vote may be delivered again (a custodian answers already_recorded).
func deliverVeto(ctx context.Context, w io.Writer, cli *client.Client, genesis string, r client.Review, approverID string, key ed25519.PrivateKey) (recorded, targets int, err error) {
	chain, versions, err := cli.VerifiedChain(ctx, genesis)
	if err != nil {
		return 0, 0, err
	}
	all := make([]*roster.Roster, len(versions))
	for i := range versions {
		all[i] = &versions[i]
	}
	ts := pushTargets(all...)
	veto := wire.Veto{Roster: chain, Canonical: r.Canonical, ApproverID: approverID, Decision: approval.Deny,
		Signature: ed25519.Sign(key, approval.Message(r.Request.ID, r.Digest, approval.Deny, approverID))}
	results := callCustodians(ctx, ts, func(ctx context.Context, hc *http.Client, url string) (wire.VetoRecorded, error) {
		return client.SendVeto(ctx, hc, url, veto)
	})
	for i, t := range ts {
		res := results[i]
		switch {
		case res.err != nil:
			fmt.Fprintf(w, "WARNING: custodian %s (%s) did not record your deny: %v\n", t.name, t.url, res.err)
		case res.ans.RequestID != r.Request.ID || res.ans.Digest != r.Digest || res.ans.ApproverID != approverID:
			fmt.Fprintf(w, "WARNING: custodian %s (%s) answers with a record of another vote (%s on %s by %s)\n",
				t.name, t.url, res.ans.RequestID, res.ans.Digest, res.ans.ApproverID)
		default:
			recorded++
			fmt.Fprintf(w, "  %-16s custodian %s (%s) holds your deny of request %s\n", res.ans.Status, t.name, t.url, r.Request.ID)
		}
	}
	return recorded, len(ts), nil
}

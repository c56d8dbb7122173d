package main

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/mediatorhq/mediator/client"
	"github.com/mediatorhq/mediator/roster"
)

// A person's signed statement about a request (an approver's deny, an
// officer's revocation) is delivered by their own tool to every custodian,
// so that a mediator that withholds it changes nothing: veto.go and
// revoke.go make the statements; this file delivers them.

// recordedStatement is what a custodian answers a delivered statement:
// its status (recorded, already_recorded) and the request, digest and
// signer of the record it holds.
type recordedStatement struct {
	Status, RequestID, Digest, Signer string
}

// deliverStatement posts the statement what (such as "deny") that signer
// made of the request r shows, built by send for a roster chain, to the
// custodians of every version of the roster chain the mediator serves,
// verified here from genesis (a custodian that held shares under an older
// version may hold them still). It writes one line per custodian to w:
// recorded, or a WARNING with the reason; an answer about another
// request, digest or signer is not counted. It returns how many
// custodians hold it on record and how many it was delivered to; a
// custodian it cannot reach or that refuses is never an error here, and
// the statement may be delivered again (a custodian answers
// already_recorded).
func deliverStatement(ctx context.Context, w io.Writer, cli *client.Client, genesis string, r client.Review, what, signer string,
	send func(ctx context.Context, hc *http.Client, url string, chain []roster.Signed) (recordedStatement, error)) (recorded, targets int, err error) {
	chain, versions, err := cli.VerifiedChain(ctx, genesis)
	if err != nil {
		return 0, 0, err
	}
	all := make([]*roster.Roster, len(versions))
	for i := range versions {
		all[i] = &versions[i]
	}
	ts := pushTargets(all...)
	results := callCustodians(ctx, ts, func(ctx context.Context, hc *http.Client, url string) (recordedStatement, error) {
		return send(ctx, hc, url, chain)
	})
	for i, t := range ts {
		res := results[i]
		switch {
		case res.err != nil:
			fmt.Fprintf(w, "WARNING: custodian %s (%s) did not record your %s: %v\n", t.name, t.url, what, res.err)
		case res.ans.RequestID != r.Request.ID || res.ans.Digest != r.Digest || res.ans.Signer != signer:
			fmt.Fprintf(w, "WARNING: custodian %s (%s) answers with a record of another %s (%s on %s by %s)\n",
				t.name, t.url, what, res.ans.RequestID, res.ans.Digest, res.ans.Signer)
		default:
			recorded++
			fmt.Fprintf(w, "  %-16s custodian %s (%s) holds your %s of request %s\n", res.ans.Status, t.name, t.url, what, r.Request.ID)
		}
	}
	return recorded, len(ts), nil
}

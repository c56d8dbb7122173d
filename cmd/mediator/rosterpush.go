package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/mediatorhq/mediator/client"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/wire"
)

// A custodian learns of a roster version from the release evidence the
// mediator sends, or from anyone who pushes the chain to it. The tools
// of the people who adopt a version push it themselves, to every
// custodian the old and the new version list, so that a mediator that
// withholds a removal or a re-key does not keep the old key counting.

// pushTimeout bounds one push: a custodian that does not answer within it
// is reported, and the others are not held up.
const pushTimeout = 15 * time.Second

// pushTarget is a custodian to push to: its name and URL as a verified
// roster version lists them.
type pushTarget struct {
	name, url string
}

// pushTargets are the custodians versions list, each URL once, in order:
// those of the version a change replaces keep counting until they hear of
// it, those of the new version hold the shares from now on.
func pushTargets(versions ...*roster.Roster) []pushTarget {
	var out []pushTarget
	seen := map[string]bool{}
	for _, r := range versions {
		if r == nil {
			continue
		}
		for _, c := range r.Custodians {
			if !seen[c.URL] {
				seen[c.URL] = true
				out = append(out, pushTarget{name: c.Name, url: c.URL})
			}
		}
	}
	return out
}

// pushChain posts chain, verified by the caller, to each target at once
// and writes, per custodian, the version it acknowledged to stdout, or
// the error to stderr as a WARNING. It reports how many did not
// acknowledge the chain's last version. A push never fails the command:
// a custodian that cannot be reached now hears of the version at the next
// push (mediator roster push) or release.
func pushChain(ctx context.Context, stdout, stderr io.Writer, chain []roster.Signed, targets []pushTarget) int {
	want := uint64(len(chain))
	digest := roster.Digest(chain[len(chain)-1].Roster)
	results := callCustodians(ctx, targets, func(ctx context.Context, hc *http.Client, url string) (wire.CustodianRoster, error) {
		return client.PushRoster(ctx, hc, url, chain)
	})
	failed := 0
	for i, t := range targets {
		r := results[i]
		var e *client.Error
		switch {
		case errors.As(r.err, &e) && e.Code == "roster_rollback":
			failed++
			fmt.Fprintf(stderr, "WARNING: custodian %s (%s) refused roster version %d: it holds a version this chain does not: %s\n",
				t.name, t.url, want, e.Message)
		case r.err != nil:
			failed++
			fmt.Fprintf(stderr, "WARNING: custodian %s (%s): roster version %d not pushed: %v\n", t.name, t.url, want, r.err)
		case r.ans.Version != want || r.ans.Digest != digest:
			failed++
			fmt.Fprintf(stderr, "WARNING: custodian %s (%s) answers that it holds roster version %d (%s), not version %d (%s)\n",
				t.name, t.url, r.ans.Version, r.ans.Digest, want, digest)
		default:
			fmt.Fprintf(stdout, "  pushed     custodian %s (%s) holds roster version %d (%s)\n", t.name, t.url, r.ans.Version, r.ans.Digest)
		}
	}
	if failed > 0 {
		fmt.Fprintf(stderr, "WARNING: %d of %d custodians do not acknowledge roster version %d; until they do, a mediator can withhold it from them: run mediator roster push again\n",
			failed, len(targets), want)
	}
	return failed
}

// custodianResult is one custodian's answer to a call, or the error.
type custodianResult[T any] struct {
	ans T
	err error
}

// callCustodians calls call for every target at once, each call bounded
// by pushTimeout, and returns the results in the order of targets. It
// waits for every call: a custodian that does not answer holds up the
// others by pushTimeout at most.
func callCustodians[T any](ctx context.Context, targets []pushTarget, call func(ctx context.Context, hc *http.Client, url string) (T, error)) []custodianResult[T] {
	hc := &http.Client{Timeout: pushTimeout}
	results := make([]custodianResult[T], len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() {
			ans, err := call(ctx, hc, t.url)
			results[i] = custodianResult[T]{ans, err}
		})
	}
	wg.Wait()
	return results
}

// adoptedChain is the chain that holds the version cp names, adopted by
// sigs (which the caller checked adopt it): the chain the mediator
// serves, verified from genesis, when it holds that version, or else the
// verified versions before it and the version with sigs. A mediator that
// withholds the version it just adopted cannot keep it from the
// custodians this way.
func adoptedChain(ctx context.Context, cli *client.Client, genesis string, cp checkedProposal, sigs []roster.Signature) ([]roster.Signed, error) {
	mine := roster.Signed{Roster: cp.claimed.Canonical, Signatures: sigs}
	if cp.prev == nil {
		if _, err := roster.VerifyChain(genesis, []roster.Signed{mine}); err != nil {
			return nil, err
		}
		return []roster.Signed{mine}, nil
	}
	served, _, err := cli.VerifiedChain(ctx, genesis)
	if err != nil {
		return nil, err
	}
	n := int(cp.next.Version)
	if len(served) >= n && roster.Digest(served[n-1].Roster) == cp.digest {
		return served, nil
	}
	if len(served) < n-1 || roster.Digest(served[n-2].Roster) != cp.prevDigest {
		return nil, fmt.Errorf("the chain the mediator serves holds neither version %d (%s) nor the version it follows", n, cp.digest)
	}
	chain := append(append([]roster.Signed(nil), served[:n-1]...), mine)
	if _, err := roster.VerifyChain(genesis, chain); err != nil {
		return nil, err
	}
	return chain, nil
}

// pushAdopted pushes the version a signature just adopted to every
// custodian of the version it replaces and of itself. It reports a
// failure to build the chain as a WARNING: the signature stands.
func pushAdopted(ctx context.Context, c *call, cli *client.Client, genesis string, cp checkedProposal, out wire.RosterProposal) {
	p, err := roster.Check(cp.prev, cp.next, out.Signatures)
	if out.Status != "adopted" || err != nil || !p.Complete() {
		return
	}
	chain, err := adoptedChain(ctx, cli, genesis, cp, out.Signatures)
	if err != nil {
		fmt.Fprintf(c.stderr, "WARNING: roster version %d was not pushed to the custodians: %v; run mediator roster push\n", cp.next.Version, err)
		return
	}
	fmt.Fprintf(c.stdout, "pushing roster version %d to the custodians of versions %s\n", cp.next.Version, versionsLabel(cp.prev, &cp.next))
	pushChain(ctx, c.stdout, c.stderr, chain, pushTargets(cp.prev, &cp.next))
}

// versionsLabel names the versions whose custodians are pushed to.
func versionsLabel(prev *roster.Roster, next *roster.Roster) string {
	if prev == nil {
		return fmt.Sprint(next.Version)
	}
	return fmt.Sprintf("%d and %d", prev.Version, next.Version)
}

// rosterPush pushes the roster chain in force, verified from the pinned
// genesis, to every custodian of the version in force and of the one it
// replaced: any approver or operator may run it at any time. Custodians
// that refuse or cannot be reached are WARNINGs; it exits 0.
func rosterPush(ctx context.Context, c *call, args []string) error {
	var cl clientOptions
	var genesis string
	if err := c.newFlags(rosterClientSettings(&cl, &genesis)...).Parse(args); err != nil {
		return err
	}
	if genesis == "" {
		return errors.New("roster push: --genesis (or MEDIATOR_ROSTER_GENESIS) is required: only a chain verified from a genesis you pin is pushed, to the custodians it lists")
	}
	cli, err := cl.connect()
	if err != nil {
		return err
	}
	chain, versions, err := cli.VerifiedChain(ctx, genesis)
	if err != nil {
		return fmt.Errorf("roster push: %w", err)
	}
	next := &versions[len(versions)-1]
	var prev *roster.Roster
	if len(versions) > 1 {
		prev = &versions[len(versions)-2]
	}
	fmt.Fprintf(c.stdout, "pushing roster version %d (%s), verified from genesis %s, to the custodians of versions %s\n",
		next.Version, roster.Digest(chain[len(chain)-1].Roster), genesis, versionsLabel(prev, next))
	pushChain(ctx, c.stdout, c.stderr, chain, pushTargets(prev, next))
	return nil
}

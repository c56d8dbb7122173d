package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/mediatorhq/mediator/client"
	"github.com/mediatorhq/mediator/seal"
	"github.com/mediatorhq/mediator/secretfile"
	"github.com/mediatorhq/mediator/wire"
)

// requestRelease has the mediator release a request's keys to the
// requesting officer, and verifies and opens them on this machine with
// the recipient key. Nothing is taken on the mediator's word: the request
// is read from its canonical bytes, the custodians' keys from the roster
// chain verified from the pinned genesis, each key's commitment from its
// custodians' deposit receipts, and a share counts only with its
// custodian's release receipt (client.Open). If the release happened but
// its answer was lost, asking again fetches the kept shares.
func requestRelease(ctx context.Context, c *call, args []string) error {
	var cl clientOptions
	var genesis string
	fs := c.newFlags(append(clientSettings(&cl), pinnedGenesisSetting(&genesis))...)
	keyFile := fs.String("key", "", "your recipient key file (from mediator keygen --recipient)")
	outFile := fs.String("out", "", "where to write the opened keys, one JSON object a line; created 0600, never overwritten")
	id, err := parseWithID(fs, args)
	if err != nil {
		return err
	}
	if *outFile == "" {
		return errors.New("request release: --out is required")
	}
	if genesis == "" {
		return errors.New("request release: --genesis (or MEDIATOR_ROSTER_GENESIS) is required: the custodians' receipts are checked against the roster that verifies from the genesis you pin")
	}
	cli, err := cl.connect()
	if err != nil {
		return err
	}
	raw, err := secretfile.Read(*keyFile)
	if err != nil {
		return fmt.Errorf("request release: --key: %w", err)
	}
	priv, err := seal.ParseKey([]byte(raw))
	if err != nil {
		return err
	}
	// Everything the release is checked against, before it happens: a
	// release is final, and a wrong key or request must stop it.
	chk, err := cli.CheckRelease(ctx, id, genesis)
	if err != nil {
		return fmt.Errorf("request release: %w", err)
	}
	if err := chk.CheckRecipient(priv); err != nil {
		return fmt.Errorf("request release: --key: %w", err)
	}
	// Create the output first: the keys must have somewhere to go.
	out, err := os.OpenFile(*outFile, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("request release: --out: %w (it must not exist yet)", err)
	}
	rel, err := fetchRelease(ctx, c.stderr, cli, id)
	if err != nil {
		out.Close()
		os.Remove(*outFile)
		return err
	}
	keys, openErr := client.Open(priv, chk, rel)
	if openErr != nil {
		// The request is released now: keep the sealed shares rather than
		// lose them to a wrong --key, a bad share or a lying mediator.
		sealed, _ := json.Marshal(rel)
		if werr := writeNew(*outFile+".sealed", sealed, 0o600); werr != nil {
			openErr = fmt.Errorf("%w (and saving the sealed shares failed: %v)", openErr, werr)
		} else {
			openErr = fmt.Errorf("%w; the sealed shares are saved in %s.sealed", openErr, *outFile)
		}
	}
	enc := json.NewEncoder(out)
	for _, k := range keys {
		err = errors.Join(err, enc.Encode(k))
		clear(k.Key)
		showOpened(c.stderr, k)
	}
	if err = errors.Join(err, out.Close()); err != nil {
		return fmt.Errorf("request release: write %s: %w", *outFile, err)
	}
	for _, r := range rel.Refusals {
		fmt.Fprintf(c.stderr, "custodian %s refused: %s\n", r.Custodian, strings.Join(r.Reasons, "; "))
	}
	if len(keys) == 0 && openErr != nil {
		os.Remove(*outFile)
		return fmt.Errorf("request release: no key was recovered: %w", openErr)
	}
	fmt.Fprintf(c.stderr, "every key was checked against its custodians' receipts, verified with roster version %d from genesis %s\n",
		chk.Roster.Version, genesis)
	fmt.Fprintf(c.stdout, "released %d keys of request %s into %s (decision %s, audit seq %d)\n",
		len(keys), id, *outFile, rel.DecisionID, rel.AuditSeq)
	if openErr != nil {
		return fmt.Errorf("request release: %w", openErr)
	}
	return nil
}

// fetchRelease asks for the release of request id. When the mediator
// answers that the request was released already, an earlier answer was
// lost: it fetches the shares the mediator kept instead, and says so.
func fetchRelease(ctx context.Context, stderr io.Writer, cli *client.Client, id string) (wire.Release, error) {
	rel, err := cli.ReleaseWithProgress(ctx, id, func(p wire.ReleaseProgress) {
		fmt.Fprintf(stderr, "releasing: %d of %d keys have their shares; asking the custodians for the rest\n", p.KeysReady, p.KeysTotal)
	})
	if !client.ReleasedBefore(err) {
		return rel, err
	}
	fmt.Fprintf(stderr, "request %s was released before and its answer did not reach you: fetching the kept release (GET /v1/access-requests/%s/release)\n", id, id)
	return cli.Released(ctx, id)
}

// showOpened warns of what the checks of one opened key found.
func showOpened(w io.Writer, k client.OpenedKey) {
	if len(k.BadShares) > 0 {
		fmt.Fprintf(w, "warning: the key of %s/%s was recovered without the bad shares of: %s (each signed a release receipt for its share)\n",
			k.ConversationID, k.KeyID, strings.Join(k.BadShares, ", "))
	}
	if k.Unverified > 0 {
		fmt.Fprintf(w, "warning: %d shares of %s/%s came without a valid custodian receipt and were dropped (unverified, from the mediator)\n",
			k.Unverified, k.ConversationID, k.KeyID)
	}
	for _, msg := range k.Warnings {
		fmt.Fprintf(w, "warning: %s/%s: %s\n", k.ConversationID, k.KeyID, msg)
	}
}

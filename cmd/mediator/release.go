package main

import (
	"context"
	"crypto/hpke"
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
	w := &releaseWriter{priv: priv, chk: chk, out: json.NewEncoder(out), sealedFile: *outFile + ".sealed", stderr: c.stderr}
	err = fetchRelease(ctx, c.stderr, cli, id, w.page)
	if err = errors.Join(err, out.Close(), w.close()); err != nil {
		if w.opened == 0 {
			os.Remove(*outFile)
			return err
		}
		return fmt.Errorf("request release: %w (%d keys written to %s before it stopped)", err, w.opened, *outFile)
	}
	for _, r := range w.first.Refusals {
		fmt.Fprintf(c.stderr, "custodian %s refused: %s\n", r.Custodian, strings.Join(r.Reasons, "; "))
	}
	if w.opened == 0 && w.openErr != nil {
		os.Remove(*outFile)
		return fmt.Errorf("request release: no key was recovered: %w", w.openErr)
	}
	fmt.Fprintf(c.stderr, "every key was checked against its custodians' receipts, verified with roster version %d from genesis %s\n",
		chk.Roster.Version, genesis)
	fmt.Fprintf(c.stdout, "released %d keys of request %s into %s (decision %s, audit seq %d)\n",
		w.opened, id, *outFile, w.first.DecisionID, w.first.AuditSeq)
	if w.openErr != nil {
		return fmt.Errorf("request release: %w", w.openErr)
	}
	return nil
}

// releaseWriter opens a release a page at a time and writes each key it
// recovers as it goes: the officer's machine holds one page (at most
// 1,000 keys) of sealed shares at once, however large the release.
type releaseWriter struct {
	priv       hpke.PrivateKey
	chk        client.ReleaseCheck
	out        *json.Encoder
	sealedFile string // where the pages that do not open are kept
	stderr     io.Writer

	first   wire.Release // the first page: decision, audit seq, refusals
	pages   int
	opened  int   // keys written
	openErr error // the first page's error that did not open in full
	sealed  *os.File
}

// page opens one page and writes its keys. A page that does not open in
// full is kept, sealed, as one JSON line of the .sealed file beside the
// output: the request is released now, and its shares must not be lost
// to a wrong key, a bad share or a lying mediator. Only a write that
// fails stops the release.
func (w *releaseWriter) page(p wire.Release) error {
	if w.pages == 0 {
		w.first = p
	}
	w.pages++
	keys, openErr := client.Open(w.priv, w.chk, p)
	if openErr != nil {
		if err := w.keepSealed(p); err != nil {
			return fmt.Errorf("%w (and saving its sealed shares failed: %v)", openErr, err)
		}
		if w.openErr == nil {
			w.openErr = fmt.Errorf("%w; the sealed shares of the pages that did not open are saved in %s", openErr, w.sealedFile)
		}
	}
	var err error
	for _, k := range keys {
		err = errors.Join(err, w.out.Encode(k))
		clear(k.Key)
		showOpened(w.stderr, k)
	}
	w.opened += len(keys)
	return err
}

// close closes the .sealed file, if a page needed it.
func (w *releaseWriter) close() error {
	if w.sealed == nil {
		return nil
	}
	return w.sealed.Close()
}

// keepSealed appends page p to the .sealed file, created 0600 and never
// overwritten.
func (w *releaseWriter) keepSealed(p wire.Release) error {
	if w.sealed == nil {
		f, err := os.OpenFile(w.sealedFile, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		w.sealed = f
	}
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	_, err = w.sealed.Write(append(b, '\n'))
	return err
}

// fetchRelease asks for the release of request id and hands each page of
// the answer to page. When the mediator answers that the request was
// released already, an earlier answer was lost: it fetches the shares the
// mediator kept instead, and says so.
func fetchRelease(ctx context.Context, stderr io.Writer, cli *client.Client, id string, page func(wire.Release) error) error {
	err := cli.ReleasePages(ctx, id, func(p wire.ReleaseProgress) {
		if p.KeysReady == p.KeysTotal {
			fmt.Fprintf(stderr, "releasing: all %d keys have their shares; the mediator records the release\n", p.KeysTotal)
			return
		}
		fmt.Fprintf(stderr, "releasing: %d of %d keys have their shares; asking the custodians for the rest\n", p.KeysReady, p.KeysTotal)
	}, page)
	if !client.ReleasedBefore(err) {
		return err
	}
	fmt.Fprintf(stderr, "request %s was released before and its answer did not reach you: fetching the kept release (GET /v1/access-requests/%s/release)\n", id, id)
	return cli.ReleasedPages(ctx, id, page)
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

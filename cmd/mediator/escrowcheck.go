package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/mediatorhq/mediator/client"
	"github.com/mediatorhq/mediator/reconcile"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/shares"
)

// A depositor, an officer or an auditor asks the custodians themselves
// what they keep, at the URLs and with the keys of a roster chain it
// verified from its pinned genesis: the mediator relays nothing of it.

// signedTarget is a custodian to ask, and the key its answers must be
// signed with, as the latest verified version listing its URL says.
type signedTarget struct {
	pushTarget
	key ed25519.PublicKey
}

// signedTargets are the custodians of every verified version, each URL
// once, with the key of the latest version that lists it.
func signedTargets(versions []roster.Roster) []signedTarget {
	var out []signedTarget
	at := map[string]int{}
	for _, v := range versions {
		for _, c := range v.Custodians {
			t := signedTarget{pushTarget{name: c.Name, url: c.URL}, c.SigningKey}
			if i, ok := at[c.URL]; ok {
				out[i] = t
				continue
			}
			at[c.URL] = len(out)
			out = append(out, t)
		}
	}
	return out
}

// verifiedTargets verifies the chain the mediator serves from genesis and
// returns the custodians it lists.
func verifiedTargets(ctx context.Context, cl clientOptions, genesis, cmd string) (*client.Client, []signedTarget, error) {
	if genesis == "" {
		return nil, nil, fmt.Errorf("%s: --genesis (or MEDIATOR_ROSTER_GENESIS) is required: custodians are asked only at the URLs, and trusted only with the keys, of a chain you verified", cmd)
	}
	cli, err := cl.connect()
	if err != nil {
		return nil, nil, err
	}
	_, versions, err := cli.VerifiedChain(ctx, genesis)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", cmd, err)
	}
	return cli, signedTargets(versions), nil
}

// escrowCheck asks every custodian directly for its signed status of one
// key's shares, and exits 1 unless each keeps one.
func escrowCheck(ctx context.Context, c *call, args []string) error {
	var cl clientOptions
	var genesis, pseudonymToken string
	fs := c.newFlags(append(rosterClientSettings(&cl, &genesis), pseudonymTokenSetting(&pseudonymToken))...)
	conversation := fs.String("conversation", "", "the conversation id, as the platform gives it, or its pseudonym")
	keyID := fs.String("key-id", "", "the key's id within the conversation")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if !shares.ValidID(*conversation) || !shares.ValidID(*keyID) {
		return errors.New("escrow check: --conversation and --key-id are required (1–128 printable bytes)")
	}
	cli, targets, err := verifiedTargets(ctx, cl, genesis, "escrow check")
	if err != nil {
		return err
	}
	if err := usePseudonyms(ctx, "escrow check", cli, genesis, pseudonymToken, *conversation); err != nil {
		return err
	}
	ps, err := cli.ConversationPseudonyms(ctx, []string{*conversation})
	if err != nil {
		return fmt.Errorf("escrow check: %w", err)
	}
	*conversation = ps[0]
	results := callCustodians(ctx, toPush(targets), func(ctx context.Context, hc *http.Client, url string) (shares.Inventory, error) {
		t := targets[indexOfURL(targets, url)]
		return client.CustodianStatus(ctx, hc, url, t.name, t.key, *conversation, *keyID)
	})
	keeping := 0
	for i, t := range targets {
		r := results[i]
		if r.err != nil {
			fmt.Fprintf(c.stderr, "WARNING: custodian %s (%s): no verified answer: %v\n", t.name, t.url, r.err)
			continue
		}
		if printStatus(c.stdout, t.name, *conversation, *keyID, r.ans) {
			keeping++
		}
	}
	fmt.Fprintf(c.stdout, "%d of %d custodians keep a share of %s/%s, each answer signed with its key in the roster verified from %s\n",
		keeping, len(targets), *conversation, *keyID, genesis)
	if keeping < len(targets) {
		return exitCode(1)
	}
	return nil
}

// printStatus writes one custodian's verified status of a key's shares
// and of the holds on its conversation, and reports whether it keeps a
// share.
func printStatus(w io.Writer, name, conversation, keyID string, inv shares.Inventory) bool {
	if len(inv.Shares) == 0 {
		fmt.Fprintf(w, "  %-14s keeps no share of %s/%s (signed at %s)\n", name, conversation, keyID, inv.At)
	}
	kept := false
	for _, s := range inv.Shares {
		fmt.Fprintf(w, "  %-14s %-11s escrow %s share %d stored %s sealed sha256:%s (signed at %s)\n",
			name, s.State, s.EscrowID, s.Index, s.StoredAt, s.SealedSHA256, inv.At)
		kept = kept || s.State == shares.StateKept || s.State == shares.StateUncommitted
	}
	holds := "none"
	if len(inv.Holds) > 0 {
		holds = strings.Join(inv.Holds, ", ")
	}
	fmt.Fprintf(w, "  %-14s legal holds on %s on record: %s\n", name, conversation, holds)
	return kept
}

// escrowReconcile compares each custodian's signed inventory of a window
// with the escrow.deposit entries of the log, verified with the log's key,
// and exits 1 on any orphan share, missing share or mismatch.
func escrowReconcile(ctx context.Context, c *call, args []string) error {
	var cl clientOptions
	var genesis string
	var keys []string
	var since, abortWindow time.Duration
	fs := c.newFlags(append(rosterClientSettings(&cl, &genesis),
		setting{flag: "key", env: vars("MEDIATOR_LOG_KEY"), value: verifierKeyOrFile(&keys),
			usage: "the log's note verifier key you trust (or @FILE); the deposits are taken only from entries it verifies"},
		setting{flag: "since", value: duration(&since, 24*time.Hour), usage: "how far back to compare, from now"},
		setting{flag: "abort-window", value: duration(&abortWindow, 10*time.Minute),
			usage: "the custodians' abort window: a share younger than it may still await its deposit's commit"})...)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if len(keys) == 0 {
		return errors.New("escrow reconcile: --key is required: the log's entries are trusted only under a key you give")
	}
	verifiers, err := parseVerifiers(keys)
	if err != nil {
		return fmt.Errorf("escrow reconcile: %w", err)
	}
	cli, targets, err := verifiedTargets(ctx, cl, genesis, "escrow reconcile")
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	w := reconcile.Window{Since: now.Add(-since), Until: now, Cutoff: now.Add(-abortWindow), Slack: time.Minute}
	var bundle bytes.Buffer
	if err := cli.Export(ctx, client.Query{Kind: "escrow.deposit"}, &bundle); err != nil {
		return fmt.Errorf("escrow reconcile: the log's escrow.deposit entries: %w", err)
	}
	logged, err := reconcile.FromBundle(bundle.Bytes(), verifiers...)
	if err != nil {
		return fmt.Errorf("escrow reconcile: %w", err)
	}
	results := callCustodians(ctx, toPush(targets), func(ctx context.Context, hc *http.Client, url string) (shares.Inventory, error) {
		t := targets[indexOfURL(targets, url)]
		return client.CustodianInventory(ctx, hc, url, t.name, t.key, w.Since, w.Until)
	})
	inventories := map[string]shares.Inventory{}
	var names []string
	unanswered := 0
	for i, t := range targets {
		if results[i].err != nil {
			unanswered++
			fmt.Fprintf(c.stderr, "WARNING: custodian %s (%s): no verified inventory: %v\n", t.name, t.url, results[i].err)
			continue
		}
		names = append(names, t.name)
		inventories[t.name] = results[i].ans
	}
	findings := reconcile.Compare(w, logged, names, inventories)
	for _, f := range findings {
		fmt.Fprintln(c.stdout, "  "+f.String())
	}
	fmt.Fprintf(c.stdout, "%d findings: %d custodians compared over [%s, %s) with %d deposits the log holds; %d did not answer\n",
		len(findings), len(names), shares.FormatTime(w.Since), shares.FormatTime(w.Until), len(logged), unanswered)
	if len(findings) > 0 || unanswered > 0 {
		return exitCode(1)
	}
	return nil
}

// parseVerifiers reads note verifier keys, each given or @FILE.
func parseVerifiers(keys []string) ([]note.Verifier, error) {
	var out []note.Verifier
	for _, k := range keys {
		if f, ok := strings.CutPrefix(k, "@"); ok {
			b, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("--key: %w", err)
			}
			k = string(b)
		}
		v, err := note.NewVerifier(strings.TrimSpace(k))
		if err != nil {
			return nil, fmt.Errorf("--key: %w", err)
		}
		out = append(out, v)
	}
	return out, nil
}

func toPush(ts []signedTarget) []pushTarget {
	out := make([]pushTarget, len(ts))
	for i, t := range ts {
		out[i] = t.pushTarget
	}
	return out
}

func indexOfURL(ts []signedTarget, url string) int {
	for i, t := range ts {
		if t.url == url {
			return i
		}
	}
	return -1
}

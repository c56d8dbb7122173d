package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/client"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/secretfile"
	"github.com/mediatorhq/mediator/wire"
)

// rosterDraftFormat says, in the roster group's help, what a draft is.
const rosterDraftFormat = `A draft is JSON: {"approvers":[{"id","roles","public_key"}],"custodians":[{"name","url",
"hpke_public_key","signing_key"}],"threshold":3,"rule":{"min_signers":2,"required_roles":["legal","security"]}}.
` + clientAbout

// readDraft reads a draft file strictly.
func readDraft(path string) (wire.RosterDraft, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return wire.RosterDraft{}, fmt.Errorf("roster: --file: %w", err)
	}
	var d wire.RosterDraft
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return wire.RosterDraft{}, fmt.Errorf("roster: %s: %w", path, err)
	}
	return d, nil
}

// pinnedGenesisSetting is the roster genesis a reader verifies the chain
// from.
func pinnedGenesisSetting(dst *string) setting {
	return setting{flag: "genesis", env: vars("MEDIATOR_ROSTER_GENESIS"), value: rosterDigest(dst), usage: "the roster genesis digest you pin"}
}

// rosterClientSettings are a roster verb's settings: the client's, and
// the genesis it verifies from.
func rosterClientSettings(cl *clientOptions, genesis *string) []setting {
	return append(clientSettings(cl), pinnedGenesisSetting(genesis))
}

// rosterGenesis prints the digest a draft has as the first version.
func rosterGenesis(ctx context.Context, c *call, args []string) error {
	fs := c.newFlags()
	file := fs.String("file", "", "the draft of the first version")
	if err := fs.Parse(args); err != nil {
		return err
	}
	d, err := readDraft(*file)
	if err != nil {
		return err
	}
	r := roster.Roster{Version: 1, Approvers: d.Approvers, Custodians: d.Custodians, Threshold: d.Threshold, Rule: d.Rule}
	if err := r.Validate(); err != nil {
		return err
	}
	digest, err := r.Digest()
	if err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, digest)
	return nil
}

// rosterPropose proposes the next roster version.
func rosterPropose(ctx context.Context, c *call, args []string) error {
	var cl clientOptions
	fs := c.newFlags(clientSettings(&cl)...)
	file := fs.String("file", "", "the draft of the next version")
	if err := fs.Parse(args); err != nil {
		return err
	}
	d, err := readDraft(*file)
	if err != nil {
		return err
	}
	cli, err := cl.connect()
	if err != nil {
		return err
	}
	p, err := cli.ProposeRoster(ctx, d)
	if err != nil {
		return err
	}
	showProposal(c.stderr, p)
	fmt.Fprintln(c.stdout, p.Digest)
	return nil
}

func showProposal(w io.Writer, p wire.RosterProposal) {
	fmt.Fprintf(w, "roster version %d proposed by %s: %s\n  digest    %s\n  previous  %s\n", p.Version, p.ProposedBy, p.Status, p.Digest, p.Previous)
	for _, ch := range p.Changes {
		fmt.Fprintf(w, "  change    %s\n", ch)
	}
	fmt.Fprintf(w, "  signed by %s\n", strings.Join(append(p.Signers, p.Possession...), ", "))
	for _, m := range p.Missing {
		fmt.Fprintf(w, "  needs     %s\n", m)
	}
}

func showRoster(w io.Writer, r roster.Roster, digest string) {
	fmt.Fprintf(w, "roster version %d\n  digest     %s\n", r.Version, digest)
	for _, a := range r.Approvers {
		fmt.Fprintf(w, "  approver   %s  roles %s  key %s\n", a.ID, strings.Join(a.Roles, ","), a.KeyID())
	}
	for _, c := range r.Custodians {
		fmt.Fprintf(w, "  custodian  %s  %s  hpke %s\n", c.Name, c.URL, c.HPKEKey.Fingerprint())
	}
	fmt.Fprintf(w, "  threshold  %d of %d custodians\n  rule       %d signers covering %s\n", r.Threshold, len(r.Custodians),
		r.Rule.MinSigners, strings.Join(r.Rule.RequiredRoles, ","))
}

// rosterShow shows the roster in force, verified from the pinned
// genesis, or a proposal and what it changes.
func rosterShow(ctx context.Context, c *call, args []string) error {
	var cl clientOptions
	var genesis string
	fs := c.newFlags(rosterClientSettings(&cl, &genesis)...)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cli, err := cl.connect()
	if err != nil {
		return err
	}
	if fs.NArg() > 0 {
		p, err := cli.RosterProposal(ctx, fs.Arg(0))
		if err != nil {
			return err
		}
		showProposal(c.stdout, p)
		return nil
	}
	if genesis == "" {
		return errors.New("roster show: --genesis (or MEDIATOR_ROSTER_GENESIS) is required: the roster is shown only as verified from a genesis you pin")
	}
	r, digest, err := cli.Roster(ctx, genesis)
	if err != nil {
		return err
	}
	showRoster(c.stdout, r, digest)
	return nil
}

// rosterVerify verifies the served chain from the pinned genesis.
func rosterVerify(ctx context.Context, c *call, args []string) error {
	var cl clientOptions
	var genesis string
	if err := c.newFlags(rosterClientSettings(&cl, &genesis)...).Parse(args); err != nil {
		return err
	}
	if genesis == "" {
		return errors.New("roster verify: --genesis (or MEDIATOR_ROSTER_GENESIS) is required")
	}
	cli, err := cl.connect()
	if err != nil {
		return err
	}
	r, digest, err := cli.Roster(ctx, genesis)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "ok: roster version %d (%s) verifies from genesis %s\n", r.Version, digest, genesis)
	return nil
}

// rosterSign checks a proposal against the verified chain, shows it and
// signs it.
func rosterSign(ctx context.Context, c *call, args []string) error {
	var cl clientOptions
	var genesis string
	fs := c.newFlags(rosterClientSettings(&cl, &genesis)...)
	keyFile := fs.String("key", "", "your approver key file: the key in the version in force, or your new key to prove you hold it")
	digest, err := parseWithID(fs, args)
	if err != nil {
		return err
	}
	if genesis == "" {
		return errors.New("roster sign: --genesis (or MEDIATOR_ROSTER_GENESIS) is required: you sign only on top of a chain you verified")
	}
	cli, err := cl.connect()
	if err != nil {
		return err
	}
	priv, err := readSigningKey("roster sign", *keyFile)
	if err != nil {
		return err
	}
	defer clear(priv)
	me, err := cli.Whoami(ctx)
	if err != nil {
		return err
	}
	p, err := cli.RosterProposal(ctx, digest)
	if err != nil {
		return err
	}
	cur, err := checkProposal(ctx, cli, genesis, p)
	if err != nil {
		return err
	}
	if cur != nil {
		showRoster(c.stderr, *cur, p.Previous)
	}
	showProposal(c.stderr, p)
	if !signsFor(cur, p, me.Subject, priv.Public().(ed25519.PublicKey)) {
		return fmt.Errorf("roster sign: your key is not %s's key in the roster in force nor in the proposal", me.Subject)
	}
	out, err := cli.SignRoster(ctx, priv, me.Subject, digest)
	if err != nil {
		return err
	}
	showProposal(c.stdout, out)
	return nil
}

// checkProposal checks that p is exactly what its digest names and
// follows the roster in force as verified from genesis (nil when p is the
// genesis itself).
func checkProposal(ctx context.Context, c *client.Client, genesis string, p wire.RosterProposal) (*roster.Roster, error) {
	r, err := roster.Parse(p.Canonical)
	if err != nil || roster.Digest(p.Canonical) != p.Digest {
		return nil, fmt.Errorf("roster sign: the proposal shown is not the roster its digest names: %v", err)
	}
	if r.Version == 1 {
		if p.Digest != genesis {
			return nil, fmt.Errorf("roster sign: this first version is %s, not the genesis you pin (%s)", p.Digest, genesis)
		}
		return nil, nil
	}
	cur, digest, err := c.Roster(ctx, genesis)
	if err != nil {
		return nil, err
	}
	if r.Previous != digest || r.Version != cur.Version+1 {
		return nil, fmt.Errorf("roster sign: the proposal follows %s, but the roster in force is version %d (%s)", r.Previous, cur.Version, digest)
	}
	return &cur, nil
}

// signsFor reports whether pub is approverID's key in cur or in p.
func signsFor(cur *roster.Roster, p wire.RosterProposal, approverID string, pub ed25519.PublicKey) bool {
	if cur != nil {
		if a, ok := cur.Member(approverID); ok && a.PublicKey.Equal(pub) {
			return true
		}
	}
	a, ok := p.Roster.Member(approverID)
	return ok && a.PublicKey.Equal(pub)
}

// approverCheckinCmd signs and submits an approver's liveness check-in.
func approverCheckinCmd(ctx context.Context, c *call, args []string) error {
	var cl clientOptions
	fs := c.newFlags(clientSettings(&cl)...)
	keyFile := fs.String("key", "", "your approver key file, as in the roster in force")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cli, err := cl.connect()
	if err != nil {
		return err
	}
	priv, err := readSigningKey("approver checkin", *keyFile)
	if err != nil {
		return err
	}
	defer clear(priv)
	me, err := cli.Whoami(ctx)
	if err != nil {
		return err
	}
	out, err := cli.Checkin(ctx, priv, me.Subject)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "checked in as %s (key %s) at %s\n", out.ApproverID, out.KeyID, out.At.UTC().Format("2006-01-02T15:04:05Z"))
	return nil
}

// readSigningKey reads an approver's Ed25519 key file (--key) for cmd; the
// caller clears the key when done.
func readSigningKey(cmd, path string) (ed25519.PrivateKey, error) {
	raw, err := secretfile.Read(path)
	if err != nil {
		return nil, fmt.Errorf("%s: --key: %w", cmd, err)
	}
	return approval.ParseSigningKey([]byte(raw))
}

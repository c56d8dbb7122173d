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

// rosterAbout is the roster group's help: what a draft is, and how show
// and sign check a proposal before anyone signs it.
const rosterAbout = `A draft is JSON: {"approvers":[{"id","roles","public_key"}],"custodians":[{"name","url",
"hpke_public_key","signing_key"}],"threshold":3,"rule":{"min_signers":2,"required_roles":["legal","security"]}},
optionally with "pseudonym":{"url","public_keys"} and "log":{"origin","verifier_keys"} (docs/access.md).
show and sign verify the chain from the genesis you pin (--genesis, MEDIATOR_ROSTER_GENESIS) and work out
what a proposal changes from its signed bytes, never from the mediator's description, which they compare
and flag with a WARNING where it differs. sign asks "sign? [y/N]" on a terminal; --yes signs without
asking; without a terminal and without --yes it signs nothing. propose likewise works the draft out
here as the next version (verified from the genesis when one is pinned), shows its digest and what it
changes, and asks (--yes; --dry-run only shows). When a signature adopts a version, sign
pushes the chain to every custodian the old and the new version list (POST /v1/roster, URLs from the
verified roster); push does so for the chain in force. A custodian that refuses or is unreachable is a
WARNING, not a failure.
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

// draftGenesis is the first version a draft describes, not yet checked.
func draftGenesis(d wire.RosterDraft) roster.Roster {
	return roster.Roster{Version: 1, Approvers: d.Approvers, Custodians: d.Custodians, Threshold: d.Threshold, Rule: d.Rule,
		Pseudonym: d.Pseudonym, Log: d.Log}
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
	r := draftGenesis(d)
	if err := r.Validate(); err != nil {
		return err
	}
	digest, err := r.Digest()
	if err != nil {
		return err
	}
	readAloud(c.stderr, r)
	fmt.Fprintln(c.stdout, digest)
	return nil
}

// shortFingerprint is a full key fingerprint (alg:hex) cut to its first
// 16 hex digits, in groups of four, to read aloud.
func shortFingerprint(fp string) string {
	alg, hex, ok := strings.Cut(fp, ":")
	if !ok || len(hex) < 16 {
		return fp
	}
	return fmt.Sprintf("%s:%s %s %s %s", alg, hex[0:4], hex[4:8], hex[8:12], hex[12:16])
}

// readAloud writes a version in a short form people compare out loud
// while founding the roster: every entry with its keys' short
// fingerprints, the threshold, the rule, the log and the pseudonym
// service. The digest is what everyone pins; this says what it names.
func readAloud(w io.Writer, r roster.Roster) {
	fmt.Fprintln(w, "read aloud and compare (keys by the first 16 hex digits of their fingerprints; roster show prints them in full):")
	for _, a := range r.Approvers {
		if a.IsOfficer() {
			fmt.Fprintf(w, "  officer    %s  key %s\n", a.ID, shortFingerprint(a.Fingerprint()))
		} else {
			fmt.Fprintf(w, "  approver   %s  roles %s  key %s\n", a.ID, strings.Join(a.Roles, ","), shortFingerprint(a.Fingerprint()))
		}
	}
	for i, c := range r.Custodians {
		fmt.Fprintf(w, "  custodian  %d %s  %s  hpke %s  signing %s\n", i+1, c.Name, c.URL,
			shortFingerprint(c.HPKEKey.Fingerprint()), shortFingerprint(roster.KeyFingerprint(c.SigningKey)))
	}
	fmt.Fprintf(w, "  threshold  %d of %d custodians\n  rule       %d signers covering %s\n", r.Threshold, len(r.Custodians),
		r.Rule.MinSigners, strings.Join(r.Rule.RequiredRoles, ","))
	if l := r.Log; l != nil {
		for _, k := range l.VerifierKeys {
			fmt.Fprintf(w, "  log        %s  key %s\n", l.Origin, shortFingerprint(roster.VerifierKeyFingerprint(k)))
		}
	} else {
		fmt.Fprintln(w, "  log        none named")
	}
	if p := r.Pseudonym; p != nil {
		keys, _ := p.Keys() // Validate parsed them
		for _, k := range keys {
			fmt.Fprintf(w, "  pseudonym  %s  key %s\n", p.URL, shortFingerprint(k.ID()))
		}
	} else {
		fmt.Fprintln(w, "  pseudonym  none named")
	}
}

// rosterPropose proposes the next roster version. It first works out
// here what the draft would be as the next version, on the chain the
// mediator serves (verified from --genesis when one is pinned): its digest
// and what it changes, shows that and asks (--yes, --dry-run).
func rosterPropose(ctx context.Context, c *call, args []string) error {
	var cl clientOptions
	var genesis string
	fs := c.newFlags(rosterClientSettings(&cl, &genesis)...)
	file := fs.String("file", "", "the draft of the next version")
	g := declareGuard(fs)
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
	next, digest, err := draftAsNext(ctx, cli, g.out(c), genesis, d)
	if err != nil {
		return fmt.Errorf("roster propose: %w", err)
	}
	question := fmt.Sprintf("propose roster version %d (%s)?", next.Version, digest)
	if ok, err := c.proceed(g, "roster propose", question); !ok {
		return err
	}
	p, err := cli.ProposeRoster(ctx, d)
	if err != nil {
		return err
	}
	showProposal(c.stderr, p)
	if p.Digest != digest {
		fmt.Fprintf(c.stderr, "WARNING: the mediator filed the draft as %s, not %s as worked out here: the chain moved meanwhile, or the mediator "+
			"changed the draft; check it: mediator roster show %s\n", p.Digest, digest, p.Digest)
	}
	fmt.Fprintln(c.stdout, p.Digest)
	return nil
}

// draftAsNext works out the draft d as the version that follows the chain
// the mediator serves, verified from genesis when one is pinned (else as
// served, and said so), writes its digest and what it changes to w, and
// returns it and its digest. The mediator builds its proposal the same
// way (governance.ProposeRoster), so an honest one files this digest.
func draftAsNext(ctx context.Context, cli *client.Client, w io.Writer, genesis string, d wire.RosterDraft) (roster.Roster, string, error) {
	served, err := cli.RosterChain(ctx)
	if client.IsCode(err, "not_found") {
		// No version is adopted yet: the draft is the genesis.
		served, err = wire.RosterChain{}, nil
	}
	if err != nil {
		return roster.Roster{}, "", err
	}
	var prev *roster.Roster
	var prevDigest, source string
	switch {
	case len(served.Chain) == 0:
		source = "the mediator serves no version yet: this is the genesis"
	case genesis != "":
		versions, err := roster.VerifyChain(genesis, served.Chain)
		if err != nil {
			return roster.Roster{}, "", fmt.Errorf("the roster chain served does not verify from the pinned genesis: %w", err)
		}
		prev = &versions[len(versions)-1]
		source = "verified from your genesis " + genesis
	default:
		r, err := roster.Parse(served.Chain[len(served.Chain)-1].Roster)
		if err != nil {
			return roster.Roster{}, "", fmt.Errorf("the roster in force as served: %w", err)
		}
		prev = &r
		source = "as the mediator serves it, unverified (pin --genesis to verify it)"
	}
	next := draftGenesis(d)
	if prev != nil {
		next.Version, prevDigest = prev.Version+1, roster.Digest(served.Chain[len(served.Chain)-1].Roster)
		next.Previous = prevDigest
	}
	if err := next.Validate(); err != nil {
		return roster.Roster{}, "", err
	}
	digest, err := next.Digest()
	if err != nil {
		return roster.Roster{}, "", err
	}
	if prev == nil && genesis != "" && digest != genesis {
		return roster.Roster{}, "", fmt.Errorf("as the first version the draft is %s, not the genesis you pin (%s)", digest, genesis)
	}
	fmt.Fprintf(w, "roster version %d, proposal %s\n", next.Version, digest)
	if prev != nil {
		fmt.Fprintf(w, "  follows    version %d (%s), %s\n", prev.Version, prevDigest, source)
	} else {
		fmt.Fprintf(w, "  follows    nothing: %s\n", source)
	}
	for _, ch := range roster.Changes(prev, next) {
		fmt.Fprintf(w, "  change     %s\n", ch)
	}
	fmt.Fprintf(w, "  then       nothing changes until approvers who meet the rule of the version in force sign it\n")
	return next, digest, nil
}

// showProposal writes the mediator's answer to a proposal, labelled as
// its word: only roster show DIGEST checks it.
func showProposal(w io.Writer, p wire.RosterProposal) {
	fmt.Fprintf(w, "roster version %d proposed by %s: %s, as the mediator answers (check it: mediator roster show %s)\n  digest    %s\n  previous  %s\n",
		p.Version, p.ProposedBy, p.Status, p.Digest, p.Digest, p.Previous)
	for _, ch := range p.Changes {
		fmt.Fprintf(w, "  change    %s\n", ch)
	}
}

// showRoster writes a verified version, each key by its full
// fingerprint.
func showRoster(w io.Writer, r roster.Roster, digest string) {
	fmt.Fprintf(w, "roster version %d\n  digest     %s\n", r.Version, digest)
	for _, a := range r.Approvers {
		kind := "approver"
		if a.IsOfficer() {
			kind = "officer"
		}
		fmt.Fprintf(w, "  %-9s  %s  roles %s  key %s\n", kind, a.ID, strings.Join(a.Roles, ","), a.Fingerprint())
	}
	for i, c := range r.Custodians {
		fmt.Fprintf(w, "  custodian  %d %s  %s  hpke %s  signing %s\n", i+1, c.Name, c.URL, c.HPKEKey.Fingerprint(), roster.KeyFingerprint(c.SigningKey))
	}
	if p := r.Pseudonym; p != nil {
		fmt.Fprintf(w, "  pseudonym  %s  keys %s\n", p.URL, strings.Join(p.PublicKeys, ", "))
	}
	if l := r.Log; l != nil {
		fmt.Fprintf(w, "  log        %s  verifier keys %s\n", l.Origin, strings.Join(l.VerifierKeys, ", "))
	}
	fmt.Fprintf(w, "  threshold  %d of %d custodians\n  rule       %d signers covering %s\n", r.Threshold, len(r.Custodians),
		r.Rule.MinSigners, strings.Join(r.Rule.RequiredRoles, ","))
}

// rosterShow shows the roster in force, verified from the pinned
// genesis, or a proposal as checked against it: its changes worked out
// from its signed bytes, never the mediator's description, which is
// compared and, where it differs, shown as a WARNING (exit 1).
func rosterShow(ctx context.Context, c *call, args []string) error {
	var cl clientOptions
	var genesis string
	fs := c.newFlags(rosterClientSettings(&cl, &genesis)...)
	if err := fs.parseFlags(args); err != nil {
		return err
	}
	digest := ""
	if fs.NArg() > 0 {
		digest = fs.Arg(0)
		if err := fs.parseFlags(fs.Args()[1:]); err != nil {
			return err
		}
		if fs.NArg() > 0 {
			fs.Usage()
			return exitCode(2)
		}
	}
	if err := fs.apply(); err != nil {
		return err
	}
	if genesis == "" {
		return errors.New("roster show: --genesis (or MEDIATOR_ROSTER_GENESIS) is required: the roster and its proposals are shown only as checked against the chain verified from a genesis you pin")
	}
	cli, err := cl.connect()
	if err != nil {
		return err
	}
	if digest != "" {
		cp, err := checkProposal(ctx, cli, genesis, digest)
		if err != nil {
			return fmt.Errorf("roster show: %w", err)
		}
		if cp.write(c.stdout, genesis) {
			return fmt.Errorf("roster show: %w", errMediatorDisagrees)
		}
		return nil
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

// rosterSign works a proposal out from its signed bytes and the chain
// verified from the pinned genesis, shows what it changes (and where the
// mediator says otherwise), asks, and signs it. When its signature adopts
// the version, it pushes the chain to the custodians (pushAdopted).
func rosterSign(ctx context.Context, c *call, args []string) error {
	var cl clientOptions
	var genesis string
	fs := c.newFlags(rosterClientSettings(&cl, &genesis)...)
	keyFile := fs.String("key", "", "your approver key file: the key in the version in force, or your new key to prove you hold it")
	yes := fs.Bool("yes", false, "sign without asking, once you have checked what is shown (without a terminal, nothing is signed without it)")
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
	cp, err := checkProposal(ctx, cli, genesis, digest)
	if err != nil {
		return fmt.Errorf("roster sign: %w", err)
	}
	disagrees := cp.write(c.stderr, genesis)
	switch {
	case cp.adopted:
		return fmt.Errorf("roster sign: version %d (%s) is adopted already: a signature would change nothing", cp.next.Version, digest)
	case cp.takenBy != "":
		return fmt.Errorf("roster sign: the proposal is stale: version %d of the chain verified from your genesis is %s; sign a proposal on top of it",
			cp.next.Version, cp.takenBy)
	}
	as := cp.signsAs(me.Subject, priv.Public().(ed25519.PublicKey))
	if as == "" {
		return fmt.Errorf("roster sign: your key is not %s's key in the roster in force nor in the proposal", me.Subject)
	}
	question := fmt.Sprintf("sign roster version %d (%s) as %s, %s?", cp.next.Version, digest, me.Subject, as)
	if disagrees {
		question = fmt.Sprintf("the mediator's account is false (see the WARNING); sign roster version %d as its signed bytes say, listed above, as %s?",
			cp.next.Version, me.Subject)
		if *yes {
			fmt.Fprintln(c.stderr, "signing despite the WARNING: --yes was given")
		}
	}
	if err := c.confirm(question, *yes); err != nil {
		return fmt.Errorf("roster sign: %w", err)
	}
	out, err := cli.SignRoster(ctx, priv, me.Subject, digest)
	if err != nil {
		return err
	}
	cp.writeSigned(c.stdout, out, me.Subject)
	pushAdopted(ctx, c, cli, genesis, cp, out)
	return nil
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

package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/mediatorhq/mediator/client"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/wire"
)

// errMediatorDisagrees: what the mediator says about a proposal is not
// what the proposal's signed bytes and the verified chain say.
var errMediatorDisagrees = errors.New("the mediator describes this proposal differently from what its signed bytes say (see the WARNING)")

// A checkedProposal is a roster proposal as an approver's tool works it
// out itself: parsed from the bytes its digest names, placed in the chain
// verified from the pinned genesis, its changes and its signatures'
// progress computed here. claimed is what the mediator said about it,
// kept only to be compared: nothing of it is shown as the truth.
type checkedProposal struct {
	digest string
	next   roster.Roster
	// prev is the version next follows, from the verified chain, and its
	// digest; nil for a genesis.
	prev       *roster.Roster
	prevDigest string
	// inForce: prev is the roster in force (or next is the genesis), so
	// next is the version in line.
	inForce bool
	// adopted: the verified chain holds next (a genesis: its signatures
	// adopt it). takenBy: another version, with this digest, holds next's
	// number in the verified chain.
	adopted bool
	takenBy string
	// changes is roster.Changes(prev, next).
	changes []string
	// progress weighs the signatures the mediator serves, verified here;
	// progressErr says why they do not verify.
	progress    roster.Progress
	progressErr error
	claimed     wire.RosterProposal
}

// checkProposal fetches the proposal with digest and works it out from
// its bytes: they must be the canonical roster digest names, and follow a
// version of the chain the mediator serves, verified from genesis (a
// version 1 must be genesis itself). It makes two requests, one for a
// genesis.
func checkProposal(ctx context.Context, cli *client.Client, genesis, digest string) (checkedProposal, error) {
	if !roster.ValidDigest(digest) {
		return checkedProposal{}, fmt.Errorf("%q is not a roster digest (sha256: and 64 hex digits)", digest)
	}
	p, err := cli.RosterProposal(ctx, digest)
	if err != nil {
		return checkedProposal{}, err
	}
	if got := roster.Digest(p.Canonical); got != digest {
		return checkedProposal{}, fmt.Errorf("asked for proposal %s, the mediator served the bytes of %s: not the roster you named", digest, got)
	}
	next, err := roster.Parse(p.Canonical)
	if err != nil {
		return checkedProposal{}, fmt.Errorf("proposal %s: %w", digest, err)
	}
	cp := checkedProposal{digest: digest, next: next, claimed: p}
	if next.Version == 1 {
		if digest != genesis {
			return checkedProposal{}, fmt.Errorf("this first version is %s, not the genesis you pin (%s)", digest, genesis)
		}
		cp.inForce = true
	} else if err := cp.place(ctx, cli, genesis); err != nil {
		return checkedProposal{}, err
	}
	cp.changes = roster.Changes(cp.prev, next)
	cp.progress, cp.progressErr = roster.Check(cp.prev, next, p.Signatures)
	if next.Version == 1 {
		cp.adopted = cp.progressErr == nil && cp.progress.Complete()
	}
	return cp, nil
}

// place finds the version cp.next follows in the chain the mediator
// serves, verified from genesis, and whether cp.next is in line, adopted
// or stale.
func (cp *checkedProposal) place(ctx context.Context, cli *client.Client, genesis string) error {
	chain, versions, err := cli.VerifiedChain(ctx, genesis)
	if err != nil {
		return err
	}
	if cp.next.Version-1 > uint64(len(versions)) {
		return fmt.Errorf("the proposal is version %d, but the chain verified from your genesis ends at version %d", cp.next.Version, len(versions))
	}
	i := int(cp.next.Version) - 2 // prev's index in the chain
	cp.prev, cp.prevDigest = &versions[i], roster.Digest(chain[i].Roster)
	if cp.next.Previous != cp.prevDigest {
		return fmt.Errorf("the proposal follows %s, but version %d of the chain verified from your genesis is %s", cp.next.Previous, cp.prev.Version, cp.prevDigest)
	}
	cp.inForce = i == len(versions)-1
	if !cp.inForce {
		if taken := roster.Digest(chain[i+1].Roster); taken == cp.digest {
			cp.adopted = true
		} else {
			cp.takenBy = taken
		}
	}
	return nil
}

// status is the proposal's status as worked out here, in the words of
// wire.RosterProposal.Status.
func (cp checkedProposal) status() string {
	switch {
	case cp.adopted:
		return "adopted"
	case cp.takenBy != "":
		return "stale"
	}
	return "awaiting_signatures"
}

// pending reports whether the proposal awaits signatures: the only state
// in which the mediator describes it and weighs its signatures.
func (cp checkedProposal) pending() bool { return cp.status() == "awaiting_signatures" }

// signsAs says how pub signs the proposal as approverID: with their key
// in the version in force (toward the quorum), or with their key in the
// proposal (proof that they hold it); "" when it is neither.
func (cp checkedProposal) signsAs(approverID string, pub ed25519.PublicKey) string {
	if cp.prev != nil {
		if a, ok := cp.prev.Approver(approverID); ok && a.PublicKey.Equal(pub) {
			return fmt.Sprintf("with your key in version %d (toward the quorum)", cp.prev.Version)
		}
	}
	// An officer, or anyone the proposal adds or re-keys, signs with
	// their key in the proposal: proof of possession.
	if a, ok := cp.next.Member(approverID); ok && a.PublicKey.Equal(pub) {
		return fmt.Sprintf("with your key in version %d (proof that you hold it)", cp.next.Version)
	}
	return ""
}

// write writes the proposal as worked out here to w, then a WARNING for
// each way the mediator's account differs from it. It reports whether
// the mediator's account differs.
func (cp checkedProposal) write(w io.Writer, genesis string) (disagrees bool) {
	fmt.Fprintf(w, "roster version %d, proposal %s\n", cp.next.Version, cp.digest)
	switch {
	case cp.prev == nil:
		fmt.Fprintf(w, "  checked    its signed bytes have this digest; it is the genesis you pin\n")
	default:
		fmt.Fprintf(w, "  checked    its signed bytes have this digest and follow version %d (%s)\n", cp.prev.Version, cp.prevDigest)
		fmt.Fprintf(w, "             of the chain verified from your genesis %s\n", genesis)
	}
	at := ""
	if !cp.claimed.ProposedAt.IsZero() {
		at = " at " + cp.claimed.ProposedAt.UTC().Format("2006-01-02T15:04:05Z")
	}
	fmt.Fprintf(w, "  proposed   by %s%s (the mediator's word)\n", cp.claimed.ProposedBy, at)
	for _, ch := range cp.changes {
		fmt.Fprintf(w, "  change     %s\n", ch)
	}
	if cp.progressErr != nil {
		fmt.Fprintf(w, "  signatures the ones the mediator serves do not verify here: %v\n", cp.progressErr)
		writeProgress(w, roster.Progress{Signers: cp.claimed.Signers, Possession: cp.claimed.Possession, Missing: cp.claimed.Missing},
			"(the mediator's claim, unverified)")
	} else {
		writeProgress(w, cp.progress, "(signatures checked here)")
	}
	switch {
	case cp.adopted && cp.prev == nil:
		fmt.Fprintf(w, "  status     adopted: its signatures adopt it\n")
	case cp.adopted:
		fmt.Fprintf(w, "  status     adopted: the verified chain holds it as version %d\n", cp.next.Version)
	case cp.takenBy != "":
		fmt.Fprintf(w, "  status     stale: version %d of the verified chain is %s\n", cp.next.Version, cp.takenBy)
	default:
		fmt.Fprintf(w, "  status     awaiting signatures\n")
	}
	if says := cp.claimMismatch(); len(says) > 0 {
		disagrees = true
		fmt.Fprintf(w, "\nWARNING: the mediator describes this proposal differently from what its signed bytes say:\n")
		for _, s := range says {
			fmt.Fprintf(w, "  %s\n", s)
		}
	}
	if cp.changesDisagree() {
		disagrees = true
		writeChangesWarning(w, cp.claimed.Changes, cp.changes)
	}
	if cp.progressDisagrees() {
		disagrees = true
		fmt.Fprintf(w, "\nWARNING: the mediator's account of the signatures differs from what they verify to here:\n")
		fmt.Fprintf(w, "  the mediator says:\n")
		writeProgress(w, roster.Progress{Signers: cp.claimed.Signers, Possession: cp.claimed.Possession, Missing: cp.claimed.Missing}, "")
		fmt.Fprintf(w, "  checked here:\n")
		writeProgress(w, cp.progress, "")
	}
	if disagrees {
		fmt.Fprintf(w, "What is listed above the WARNING is worked out here from the signed bytes and the verified chain: that\n"+
			"is what a signature adopts. The mediator, or whoever answers in its name, is not telling the truth about it.\n")
	}
	return disagrees
}

// writeProgress writes who signed, whose new keys are proven and what
// adoption still needs. label follows the first line, and every line when
// the progress is the mediator's unverified claim.
func writeProgress(w io.Writer, p roster.Progress, label string) {
	each := ""
	if strings.Contains(label, "unverified") {
		each = " " + label
	}
	none := func(s []string) string {
		if len(s) == 0 {
			return "no one"
		}
		return strings.Join(s, ", ")
	}
	fmt.Fprintf(w, "  signed by  %s\n", strings.TrimSpace(none(p.Signers)+" "+label))
	if len(p.Possession) > 0 {
		fmt.Fprintf(w, "  new keys   proven by %s%s\n", strings.Join(p.Possession, ", "), each)
	}
	for _, m := range p.Missing {
		fmt.Fprintf(w, "  needs      %s%s\n", m, each)
	}
}

// claimMismatch lists what the mediator says the proposal is (digest,
// number, the version it follows, status, the roster it lists) where
// that differs from its signed bytes and the verified chain.
func (cp checkedProposal) claimMismatch() []string {
	var out []string
	c := cp.claimed
	if c.Digest != cp.digest {
		out = append(out, fmt.Sprintf("it names it %s; its signed bytes are %s", c.Digest, cp.digest))
	}
	if c.Version != cp.next.Version || c.Previous != cp.next.Previous {
		out = append(out, fmt.Sprintf("it says version %d following %q; the signed bytes say version %d following %q",
			c.Version, c.Previous, cp.next.Version, cp.next.Previous))
	}
	if c.Status != cp.status() {
		out = append(out, fmt.Sprintf("it says %s; checked here it is %s", c.Status, cp.status()))
	}
	if listed, err := c.Roster.Canonical(); err != nil || !bytes.Equal(listed, cp.claimed.Canonical) {
		out = append(out, "the roster it lists beside the signed bytes is another roster")
	}
	return out
}

// changesDisagree reports whether the mediator's changes differ from
// those worked out here. The mediator describes only a proposal in line;
// of another, it may say nothing.
func (cp checkedProposal) changesDisagree() bool {
	if len(cp.claimed.Changes) == 0 && !cp.pending() {
		return false
	}
	return !slices.Equal(cp.claimed.Changes, cp.changes)
}

// progressDisagrees reports whether the mediator's signers, proofs of
// possession and needs differ from those of its signatures verified
// here. It weighs only a proposal in line.
func (cp checkedProposal) progressDisagrees() bool {
	if cp.progressErr != nil || !cp.pending() {
		return false
	}
	sorted := func(s []string) []string { return slices.Sorted(slices.Values(s)) }
	c, p := cp.claimed, cp.progress
	return !slices.Equal(sorted(c.Signers), sorted(p.Signers)) || !slices.Equal(sorted(c.Possession), sorted(p.Possession)) ||
		!slices.Equal(sorted(c.Missing), sorted(p.Missing))
}

// writeChangesWarning writes the mediator's account of the changes, and
// what it and the account worked out here (the change lines above it)
// each have that the other lacks.
func writeChangesWarning(w io.Writer, claimed, local []string) {
	fmt.Fprintf(w, "\nWARNING: the mediator describes this proposal differently from what its signed bytes say:\n")
	list := func(title string, lines []string) {
		if len(lines) == 0 {
			return
		}
		fmt.Fprintf(w, "  %s\n", title)
		for _, l := range lines {
			fmt.Fprintf(w, "    %s\n", l)
		}
	}
	if len(claimed) == 0 {
		fmt.Fprintf(w, "  the mediator says:\n    (nothing)\n")
	}
	list("the mediator says:", claimed)
	var hidden, invented []string
	for _, l := range local {
		if !slices.Contains(claimed, l) {
			hidden = append(hidden, l)
		}
	}
	for _, l := range claimed {
		if !slices.Contains(local, l) {
			invented = append(invented, l)
		}
	}
	list("the mediator does not tell you:", hidden)
	list("the mediator says, but the signed bytes do not:", invented)
}

// writeSigned writes what the mediator answered to a signature, weighed
// here: out's signatures on the proposal checked.
func (cp checkedProposal) writeSigned(w io.Writer, out wire.RosterProposal, approverID string) {
	fmt.Fprintf(w, "signed roster version %d (%s) as %s\n", cp.next.Version, cp.digest, approverID)
	p, err := roster.Check(cp.prev, cp.next, out.Signatures)
	if err != nil {
		fmt.Fprintf(w, "  signatures the ones the mediator answers with do not verify here: %v\n", err)
		writeProgress(w, roster.Progress{Signers: out.Signers, Possession: out.Possession, Missing: out.Missing}, "(the mediator's claim, unverified)")
		return
	}
	writeProgress(w, p, "(signatures checked here)")
	if !slices.Contains(p.Signers, approverID) && !slices.Contains(p.Possession, approverID) {
		fmt.Fprintf(w, "WARNING: the mediator's answer does not carry your signature\n")
	}
	if p.Complete() {
		fmt.Fprintf(w, "  status     its signatures adopt it (run mediator roster verify)\n")
	}
}

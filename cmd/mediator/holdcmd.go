package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/google/uuid"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/client"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/wire"
)

// A legal hold that reaches the custodians only through the mediator can
// be withheld by it, and a lift the mediator's token carries would let a
// compromised mediator destroy what a court ordered kept. So custodians
// lift a hold only on approvers' signatures that meet the roster's rule,
// and take a placement signed by any officer or approver: hold-sign
// prints one person's signature line, hold-deliver posts the collected
// lines to every custodian of the roster chain verified from the genesis
// the caller pins.

// holdSignaturePrefix starts a signature line, so that a file of them
// can hold comments and the lines of several statements cannot be mixed
// up unnoticed (each names its hold, conversation and action).
const holdSignaturePrefix = "hold-signature"

// holdSignatureLine is one signer's line: the prefix, the hold id, the
// conversation, the action, the signer and the base64 signature.
func holdSignatureLine(holdID, conversationID, action, signerID string, sig []byte) string {
	return strings.Join([]string{holdSignaturePrefix, holdID, conversationID, action, signerID, base64.StdEncoding.EncodeToString(sig)}, " ")
}

// parseHoldSignatures reads signature lines for one statement (blank
// lines and lines starting with # are skipped). A line for another hold,
// conversation or action, or one it cannot read, is an error: nothing is
// delivered then.
func parseHoldSignatures(r io.Reader, holdID, conversationID, action string) ([]wire.HoldSignature, error) {
	var out []wire.HoldSignature
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 6 || f[0] != holdSignaturePrefix {
			return nil, fmt.Errorf("line %d is not a %s line", n, holdSignaturePrefix)
		}
		if f[1] != holdID || f[2] != conversationID || f[3] != action {
			return nil, fmt.Errorf("line %d signs %s of hold %s on conversation %q, not %s of hold %s on %q", n, f[3], f[1], f[2], action, holdID, conversationID)
		}
		sig, err := base64.StdEncoding.DecodeString(f[5])
		if err != nil {
			return nil, fmt.Errorf("line %d: the signature is not base64: %w", n, err)
		}
		out = append(out, wire.HoldSignature{SignerID: f[4], Signature: sig})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New("no signature lines")
	}
	return out, nil
}

// holdStatementFlags are the flags both hold verbs share.
type holdStatementFlags struct {
	holdID, conversation, action *string
}

func declareHoldStatement(fs *flagSet) holdStatementFlags {
	return holdStatementFlags{
		holdID:       fs.String("hold-id", "", "the hold id (a UUID; mediator escrow hold prints it, or choose a new one to place a hold yourself)"),
		conversation: fs.String("conversation", "", "the conversation the hold is on"),
		action:       fs.String("action", approval.HoldLift, "place (one officer or approver) or lift (approvers who meet the roster's rule)"),
	}
}

func (h holdStatementFlags) check(cmd string) error {
	if uuid.Validate(*h.holdID) != nil || *h.conversation == "" || (*h.action != approval.HoldPlace && *h.action != approval.HoldLift) {
		return fmt.Errorf("%s: --hold-id (a UUID), --conversation and --action (place or lift) are required", cmd)
	}
	return nil
}

// escrowHoldSign prints the caller's signature line over a hold
// statement. It signs offline: the custodians verify the signature with
// the signer's key in the roster they hold.
func escrowHoldSign(_ context.Context, c *call, args []string) error {
	fs := c.newFlags()
	st := declareHoldStatement(fs)
	keyFile := fs.String("key", "", "your officer or approver key file")
	as := fs.String("as", "", "your id in the roster")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := st.check("escrow hold-sign"); err != nil {
		return err
	}
	if *as == "" {
		return errors.New("escrow hold-sign: --as (your id in the roster) is required")
	}
	priv, err := readSigningKey("escrow hold-sign", *keyFile)
	if err != nil {
		return err
	}
	defer clear(priv)
	sig := approval.SignHold(priv, *st.holdID, *st.conversation, *st.action, *as)
	fmt.Fprintf(c.stderr, "signed: %s\n", strings.TrimSpace(string(approval.HoldMessage(*st.holdID, *st.conversation, *st.action, *as))))
	fmt.Fprintln(c.stdout, holdSignatureLine(*st.holdID, *st.conversation, *st.action, *as, sig))
	return nil
}

// escrowHoldDeliver posts a hold statement with the signature lines
// collected in --signatures to every custodian of every version of the
// roster chain the mediator serves, verified here from --genesis. It
// writes one line per custodian and exits 1 unless every custodian holds
// the statement on record; it may be run again (a custodian answers
// already_recorded).
func escrowHoldDeliver(ctx context.Context, c *call, args []string) error {
	var cl clientOptions
	var genesis string
	fs := c.newFlags(rosterClientSettings(&cl, &genesis)...)
	st := declareHoldStatement(fs)
	sigFile := fs.String("signatures", "", "the file of signature lines mediator escrow hold-sign printed")
	g := declareGuard(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := st.check("escrow hold-deliver"); err != nil {
		return err
	}
	if genesis == "" {
		return errors.New("escrow hold-deliver: --genesis (or MEDIATOR_ROSTER_GENESIS) is required: a hold is delivered only with a chain you verified, to the custodians it lists")
	}
	raw, err := os.ReadFile(*sigFile)
	if err != nil {
		return fmt.Errorf("escrow hold-deliver: --signatures: %w", err)
	}
	sigs, err := parseHoldSignatures(strings.NewReader(string(raw)), *st.holdID, *st.conversation, *st.action)
	if err != nil {
		return fmt.Errorf("escrow hold-deliver: --signatures: %w", err)
	}
	cli, err := cl.connect()
	if err != nil {
		return err
	}
	chain, versions, err := cli.VerifiedChain(ctx, genesis)
	if err != nil {
		return fmt.Errorf("escrow hold-deliver: %w", err)
	}
	h := wire.SignedHold{Roster: chain, HoldID: *st.holdID, ConversationID: *st.conversation, Action: *st.action, Signatures: sigs}
	if ok, err := confirmHoldDelivery(c, g, versions, h); !ok {
		return err
	}
	recorded, targets := deliverSignedHold(ctx, c.stdout, c.stderr, versions, h)
	fmt.Fprintf(c.stdout, "%d of %d custodians hold the %s of hold %s on record\n", recorded, targets, h.Action, h.HoldID)
	if recorded < targets {
		return exitCode(1)
	}
	return nil
}

// confirmHoldDelivery shows what delivering h does and, for a lift,
// asks: a lift each custodian records lets it destroy the conversation's
// shares past retention, and only a new placement undoes it. A placement
// only protects, and is delivered without asking (unless --dry-run).
func confirmHoldDelivery(c *call, g guard, versions []roster.Roster, h wire.SignedHold) (bool, error) {
	all := make([]*roster.Roster, len(versions))
	for i := range versions {
		all[i] = &versions[i]
	}
	signers := make([]string, len(h.Signatures))
	for i, s := range h.Signatures {
		signers[i] = s.SignerID
	}
	out := g.out(c)
	fmt.Fprintf(out, "the %s of legal hold %s on conversation %s, signed by %s\n", h.Action, h.HoldID, h.ConversationID, strings.Join(signers, ", "))
	var names []string
	for _, t := range pushTargets(all...) {
		names = append(names, t.name)
	}
	fmt.Fprintf(out, "  to custodians %s (every version of the roster verified from your genesis)\n", strings.Join(names, ", "))
	if h.Action == approval.HoldLift {
		fmt.Fprintf(out, "  each custodian that records the lift may destroy the conversation's shares once past retention; only a new placement stops that\n")
	}
	if h.Action != approval.HoldLift && !*g.dryRun {
		return true, nil
	}
	return c.proceed(g, "escrow hold-deliver", fmt.Sprintf("deliver the lift of hold %s on conversation %s to every custodian?", h.HoldID, h.ConversationID))
}

// deliverSignedHold posts h to the custodians of every version (a
// custodian that held shares under an older version may hold them still)
// and writes one line per custodian: recorded to stdout, or a WARNING
// with the custodian's code to stderr. It returns how many hold h on
// record and how many it was delivered to.
func deliverSignedHold(ctx context.Context, stdout, stderr io.Writer, versions []roster.Roster, h wire.SignedHold) (recorded, targets int) {
	all := make([]*roster.Roster, len(versions))
	for i := range versions {
		all[i] = &versions[i]
	}
	ts := pushTargets(all...)
	results := callCustodians(ctx, ts, func(ctx context.Context, hc *http.Client, url string) (wire.HoldRecorded, error) {
		return client.SendSignedHold(ctx, hc, url, h)
	})
	for i, t := range ts {
		res := results[i]
		switch {
		case res.err != nil:
			fmt.Fprintf(stderr, "WARNING: custodian %s (%s) did not record the %s of hold %s: %v\n", t.name, t.url, h.Action, h.HoldID, res.err)
		case res.ans.HoldID != h.HoldID || res.ans.ConversationID != h.ConversationID || res.ans.Action != h.Action:
			fmt.Fprintf(stderr, "WARNING: custodian %s (%s) answers with a record of another statement (%s of hold %s on %q)\n",
				t.name, t.url, res.ans.Action, res.ans.HoldID, res.ans.ConversationID)
		default:
			recorded++
			fmt.Fprintf(stdout, "  %-16s custodian %s (%s) holds the %s of hold %s (signed by %s, roster version %d)\n",
				res.ans.Status, t.name, t.url, h.Action, h.HoldID, strings.Join(res.ans.Signers, ", "), res.ans.RosterVersion)
		}
	}
	return recorded, len(ts)
}

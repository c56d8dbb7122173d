package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/mediatorhq/mediator/client"
)

// auditExportCmd writes the evidence bundle of one conversation, named by
// its real id: the id is turned into its pseudonym on this machine,
// through the pseudonym service (which counts it against the caller),
// and only the pseudonym is sent.
func auditExportCmd(ctx context.Context, c *call, args []string) error {
	var cl clientOptions
	var genesis, pseudonymToken string
	fs := c.newFlags(append(rosterClientSettings(&cl, &genesis), pseudonymTokenSetting(&pseudonymToken))...)
	conversation := fs.String("conversation", "", "the conversation id, as the platform gives it, or its pseudonym")
	from := fs.String("from", "", "optional window start, RFC 3339")
	to := fs.String("to", "", "optional window end, RFC 3339")
	out := fs.String("out", "", "the bundle file to write (NDJSON; check it with mediator audit verify --bundle FILE --key VKEY)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *conversation == "" || *out == "" {
		return errors.New("audit export: --conversation and --out are required")
	}
	q := client.Query{}
	for _, t := range []struct {
		flag string
		v    string
		dst  *time.Time
	}{{"--from", *from, &q.From}, {"--to", *to, &q.To}} {
		if t.v == "" {
			continue
		}
		v, err := time.Parse(time.RFC3339, t.v)
		if err != nil {
			return fmt.Errorf("audit export: %s must be an RFC 3339 time", t.flag)
		}
		*t.dst = v
	}
	cli, err := cl.connect()
	if err != nil {
		return err
	}
	if err := usePseudonyms(ctx, "audit export", cli, genesis, pseudonymToken, *conversation); err != nil {
		return err
	}
	ps, err := cli.ConversationPseudonyms(ctx, []string{*conversation})
	if err != nil {
		return fmt.Errorf("audit export: %w", err)
	}
	q.ConversationID = ps[0]
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("audit export: %w", err)
	}
	if err := cli.Export(ctx, q, f); err != nil {
		f.Close()
		os.Remove(*out)
		return fmt.Errorf("audit export: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("audit export: %w", err)
	}
	fmt.Fprintf(c.stderr, "wrote the evidence bundle of conversation %s (pseudonym %s) to %s\n", *conversation, q.ConversationID, *out)
	return nil
}

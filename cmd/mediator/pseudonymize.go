package main

import (
	"context"
	"fmt"

	"github.com/mediatorhq/mediator/client"
	"github.com/mediatorhq/mediator/pseudonym"
	"github.com/mediatorhq/mediator/secretfile"
)

// pseudonymTokenSetting is the caller's credential at the pseudonym
// service, which a verb needs to name a conversation by its real id.
func pseudonymTokenSetting(dst *string) setting {
	return setting{flag: "pseudonym-token-file", env: vars("MEDIATOR_PSEUDONYM_TOKEN_FILE"), value: text(dst, ""),
		usage: "file holding your token at the pseudonym service the roster names: real conversation ids are turned into pseudonyms on this machine, through it, before anything leaves"}
}

// usePseudonyms makes cli pseudonymise the conversation ids it sends,
// through the pseudonym service the roster verified from genesis names,
// trusting only the key that roster lists. ids that already are
// pseudonyms need nothing; others need the token file and the genesis.
func usePseudonyms(ctx context.Context, verb string, cli *client.Client, genesis, tokenFile string, ids ...string) error {
	raw := false
	for _, id := range ids {
		raw = raw || !pseudonym.Valid(id)
	}
	if !raw {
		return nil
	}
	if tokenFile == "" || genesis == "" {
		return fmt.Errorf("%s: conversation ids are turned into pseudonyms on this machine before they leave: set --pseudonym-token-file (or MEDIATOR_PSEUDONYM_TOKEN_FILE), your token at the pseudonym service, and the roster genesis (MEDIATOR_ROSTER_GENESIS), whose roster names that service and its key", verb)
	}
	token, err := secretfile.Read(tokenFile)
	if err != nil {
		return fmt.Errorf("%s: pseudonym token: %w", verb, err)
	}
	p, err := cli.PseudonymClient(ctx, genesis, token, -1)
	if err != nil {
		return fmt.Errorf("%s: %w", verb, err)
	}
	cli.UsePseudonyms(p)
	return nil
}

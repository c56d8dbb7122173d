package dev

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"slices"

	"github.com/mediatorhq/mediator/client"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/wire"
)

// Signer is an approver who signs roster versions through their own
// authenticated client.
type Signer struct {
	ID     string
	Key    ed25519.PrivateKey
	Client *client.Client
}

// AdoptGenesis makes genesis the roster in force on a mediator that pins
// its digest and has none adopted yet: the admin client proposes it and
// every signer signs it (the genesis needs every approver's proof of
// possession). A mediator whose chain from this genesis is already adopted
// is left as it is.
func AdoptGenesis(ctx context.Context, admin *client.Client, genesis roster.Roster, signers []Signer) error {
	digest, err := genesis.Digest()
	if err != nil {
		return err
	}
	if chain, err := admin.RosterChain(ctx); err == nil && chain.Genesis == digest && len(chain.Chain) > 0 {
		return nil
	}
	p, err := admin.ProposeRoster(ctx, wire.RosterDraft{Approvers: genesis.Approvers, Custodians: genesis.Custodians,
		Threshold: genesis.Threshold, Rule: genesis.Rule, Pseudonym: genesis.Pseudonym, Log: genesis.Log})
	if err != nil {
		return fmt.Errorf("dev: propose the genesis roster: %w", err)
	}
	if p.Digest != digest {
		return fmt.Errorf("dev: the mediator numbered the genesis %s, not %s", p.Digest, digest)
	}
	for _, s := range signers {
		if slices.Contains(p.Signers, s.ID) || slices.Contains(p.Possession, s.ID) {
			continue
		}
		if p, err = s.Client.SignRoster(ctx, s.Key, s.ID, digest); err != nil {
			return fmt.Errorf("dev: %s signs the genesis roster: %w", s.ID, err)
		}
	}
	if p.Status != "adopted" {
		return fmt.Errorf("dev: the genesis roster is not adopted; it lacks %v", p.Missing)
	}
	return nil
}

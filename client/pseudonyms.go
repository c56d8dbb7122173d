package client

import (
	"context"
	"errors"
	"fmt"

	"github.com/mediatorhq/mediator/pseudonym"
)

// ErrNoPseudonymService: the roster in force names no pseudonym service.
var ErrNoPseudonymService = errors.New("client: the roster in force names no pseudonym service")

// PseudonymClient returns a pseudonym client for the service the roster
// in force names: it reaches the service at the roster's URL with the
// caller's token, and trusts only the key in force there, taken from the
// chain verified from genesis (never from the service, nor from the
// mediator's word). cacheSize is as for pseudonym.NewClient.
func (c *Client) PseudonymClient(ctx context.Context, genesis, token string, cacheSize int) (*pseudonym.Client, error) {
	_, versions, err := c.VerifiedChain(ctx, genesis)
	if err != nil {
		return nil, err
	}
	entry := versions[len(versions)-1].Pseudonym
	if entry == nil {
		return nil, ErrNoPseudonymService
	}
	keys, err := entry.Keys()
	if err != nil || len(keys) == 0 {
		return nil, fmt.Errorf("client: the roster's pseudonym key: %v", err)
	}
	return pseudonym.NewClient(keys[0], pseudonym.HTTPEvaluate(entry.URL, token, nil), cacheSize), nil
}

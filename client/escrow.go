package client

import (
	"context"
	"net/http"

	"github.com/mediatorhq/mediator/wire"
)

// Deposit escrows a key. created is true for a new escrow, false when the
// same key was already escrowed under that id (an idempotent resend).
func (c *Client) Deposit(ctx context.Context, r wire.DepositRequest) (rec wire.DepositResponse, created bool, err error) {
	status, err := c.do(ctx, http.MethodPost, "/v1/escrow/keys", "", r, &rec)
	return rec, status == http.StatusCreated, err
}

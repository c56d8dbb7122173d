package client

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/mediatorhq/mediator/shares"
	"github.com/mediatorhq/mediator/wire"
)

// ErrInventory: a custodian's answer about the shares it keeps is not
// signed by its key in the roster you verified, or answers another
// question.
var ErrInventory = errors.New("client: the custodian's signed answer does not verify or answers another question")

// CustodianStatus asks the custodian at custodianURL, directly, which
// shares of (conversationID, keyID) it keeps or kept, and checks that the
// answer is signed by name's key signingKey (from a roster you verified)
// and answers this question. httpClient may be nil.
func CustodianStatus(ctx context.Context, httpClient *http.Client, custodianURL, name string, signingKey ed25519.PublicKey, conversationID, keyID string) (shares.Inventory, error) {
	inv, err := signedInventory(ctx, httpClient, custodianURL, "/v1/shares/status", name, signingKey,
		wire.StatusQuery{ConversationID: conversationID, KeyID: keyID})
	if err != nil {
		return shares.Inventory{}, err
	}
	if inv.Custodian != name || inv.ConversationID != conversationID || inv.KeyID != keyID || inv.Since != "" || inv.Until != "" {
		return shares.Inventory{}, fmt.Errorf("%w: %s answered for %s about %q/%q", ErrInventory, name, inv.Custodian, inv.ConversationID, inv.KeyID)
	}
	return inv, nil
}

// CustodianInventory asks the custodian at custodianURL, directly, for
// the shares it stored in [since, until), and checks the answer as
// CustodianStatus does. httpClient may be nil.
func CustodianInventory(ctx context.Context, httpClient *http.Client, custodianURL, name string, signingKey ed25519.PublicKey, since, until time.Time) (shares.Inventory, error) {
	since, until = since.UTC().Truncate(time.Microsecond), until.UTC().Truncate(time.Microsecond)
	inv, err := signedInventory(ctx, httpClient, custodianURL, "/v1/shares/inventory", name, signingKey,
		wire.InventoryQuery{Since: since, Until: until})
	if err != nil {
		return shares.Inventory{}, err
	}
	if inv.Custodian != name || inv.Since != shares.FormatTime(since) || inv.Until != shares.FormatTime(until) || inv.ConversationID != "" {
		return shares.Inventory{}, fmt.Errorf("%w: %s answered for %s about [%s, %s)", ErrInventory, name, inv.Custodian, inv.Since, inv.Until)
	}
	return inv, nil
}

// signedInventory posts query to the custodian's path and returns the
// inventory it answers, once its signature verifies with signingKey.
func signedInventory(ctx context.Context, httpClient *http.Client, custodianURL, path, name string, signingKey ed25519.PublicKey, query any) (shares.Inventory, error) {
	body, err := json.Marshal(query)
	if err != nil {
		return shares.Inventory{}, err
	}
	var out shares.SignedInventory
	if err := custodianCall(ctx, httpClient, http.MethodPost, custodianURL, path, body, &out); err != nil {
		return shares.Inventory{}, err
	}
	if err := out.Verify(signingKey); err != nil {
		return shares.Inventory{}, fmt.Errorf("%w: %s: %v", ErrInventory, name, err)
	}
	return out.Inventory, nil
}

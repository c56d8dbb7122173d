package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/mediatorhq/mediator/wire"
)

// Checkpoint returns the latest signed checkpoint note, as served; verify
// it with the log's verifier key before trusting it.
func (c *Client) Checkpoint(ctx context.Context) (string, error) {
	var note string
	return note, c.get(ctx, "/v1/audit/checkpoint", &note)
}

// Tile returns a resource of the log's C2SP tlog-tiles view, by its path
// under /v1/audit/tlog/ ("checkpoint", "tile/0/x001/234", "tile/entries/
// 007.p/12"), as served: check tiles against a verified checkpoint.
func (c *Client) Tile(ctx context.Context, path string) ([]byte, error) {
	var raw string
	err := c.get(ctx, "/v1/audit/tlog/"+path, &raw)
	return []byte(raw), err
}

// TlogProof returns the C2SP tlog-proof of the entry at seq under the
// latest published checkpoint, as served: check it with
// audit.VerifyTlogProof against a policy you hold.
func (c *Client) TlogProof(ctx context.Context, seq int64) ([]byte, error) {
	var raw string
	err := c.get(ctx, "/v1/audit/entries/"+strconv.FormatInt(seq, 10)+"/tlog-proof", &raw)
	return []byte(raw), err
}

// VerifierKey returns the note verifier key the mediator says signs its
// checkpoints. A verifier that trusts only what it was given out of band
// does not ask the mediator.
func (c *Client) VerifierKey(ctx context.Context) (string, error) {
	var key string
	err := c.get(ctx, "/v1/audit/verifier-key", &key)
	return strings.TrimSpace(key), err
}

// Entry returns the log entry at seq.
func (c *Client) Entry(ctx context.Context, seq int64) (wire.Entry, error) {
	var out wire.Entry
	return out, c.get(ctx, "/v1/audit/entries/"+strconv.FormatInt(seq, 10), &out)
}

// Query selects log entries; zero values mean "any".
type Query struct {
	ConversationID string
	Kind           string
	From, To       time.Time
	AfterSeq       int64 // cursor; 0 with HasAfter false for the start
	HasAfter       bool
	Limit          int
}

func (q Query) values() url.Values {
	v := url.Values{}
	if q.ConversationID != "" {
		v.Set("conversation_id", q.ConversationID)
	}
	if q.Kind != "" {
		v.Set("kind", q.Kind)
	}
	if !q.From.IsZero() {
		v.Set("from", q.From.UTC().Format(time.RFC3339))
	}
	if !q.To.IsZero() {
		v.Set("to", q.To.UTC().Format(time.RFC3339))
	}
	if q.HasAfter {
		v.Set("after_seq", strconv.FormatInt(q.AfterSeq, 10))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return v
}

// Entries returns one page of entries matching q, oldest first.
func (c *Client) Entries(ctx context.Context, q Query) (wire.EntryPage, error) {
	var out wire.EntryPage
	return out, c.get(ctx, "/v1/audit/entries?"+q.values().Encode(), &out)
}

// InclusionProof returns the proof that entry seq is in the tree of size
// treeSize.
func (c *Client) InclusionProof(ctx context.Context, seq, treeSize int64) (wire.InclusionProof, error) {
	var out wire.InclusionProof
	return out, c.get(ctx, fmt.Sprintf("/v1/audit/proof/inclusion?seq=%d&tree_size=%d", seq, treeSize), &out)
}

// ConsistencyProof returns the proof that the tree of size from is a
// prefix of the tree of size to.
func (c *Client) ConsistencyProof(ctx context.Context, from, to int64) (wire.ConsistencyProof, error) {
	var out wire.ConsistencyProof
	return out, c.get(ctx, fmt.Sprintf("/v1/audit/proof/consistency?from=%d&to=%d", from, to), &out)
}

// Export writes the evidence bundle of the entries matching q to w.
func (c *Client) Export(ctx context.Context, q Query, w io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/audit/export?"+q.values().Encode(), nil)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("client: cannot reach the mediator at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
		return decodeError(resp.StatusCode, raw)
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("client: export: %w", err)
	}
	return nil
}

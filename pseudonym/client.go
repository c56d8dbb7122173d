package pseudonym

import (
	"container/list"
	"context"
	"fmt"
	"sync"

	"github.com/cloudflare/circl/oprf"
)

// DefaultCacheSize is how many identifiers a Client remembers the
// pseudonyms of, by default.
const DefaultCacheSize = 100_000

// Client turns identifiers into pseudonyms through the pseudonym service,
// verifying every evaluation against the public key it was given (the
// one the roster names), and remembers the most recent ones, so that a
// repeated identifier costs no call. It is safe for concurrent use.
type Client struct {
	pub      PublicKey
	verifier oprf.VerifiableClient
	evaluate Evaluate

	mu    sync.Mutex
	size  int
	order *list.List                 // of cacheKey, most recent first
	cache map[cacheKey]*list.Element // to an element holding a cacheEntry
}

type cacheKey struct {
	kind  Kind
	value string
}

type cacheEntry struct {
	key       cacheKey
	pseudonym string
}

// NewClient returns a Client that trusts pub and reaches the service
// through evaluate, remembering up to cacheSize identifiers
// (DefaultCacheSize when 0, none when negative).
func NewClient(pub PublicKey, evaluate Evaluate, cacheSize int) *Client {
	if cacheSize == 0 {
		cacheSize = DefaultCacheSize
	}
	return &Client{pub: pub, verifier: oprf.NewVerifiableClient(suite, pub.pub), evaluate: evaluate,
		size: max(cacheSize, 0), order: list.New(), cache: map[cacheKey]*list.Element{}}
}

// Pseudonyms returns the pseudonym of each value of kind k, in order. The
// values it does not remember are blinded and evaluated in batches of at
// most MaxBatch; an evaluation that does not verify against the trusted
// key is ErrUnverified, and nothing of it is kept. Errors never name a
// value.
func (c *Client) Pseudonyms(ctx context.Context, k Kind, values []string) ([]string, error) {
	if !k.valid() {
		return nil, fmt.Errorf("pseudonym: unknown kind %q", k)
	}
	out := make([]string, len(values))
	var missing []int
	seen := map[string]int{} // value to its first missing index
	for i, v := range values {
		if p, ok := c.lookup(cacheKey{k, v}); ok {
			out[i] = p
			continue
		}
		if _, dup := seen[v]; !dup {
			seen[v] = i
			missing = append(missing, i)
		}
	}
	for start := 0; start < len(missing); start += MaxBatch {
		batch := missing[start:min(start+MaxBatch, len(missing))]
		inputs := make([][]byte, len(batch))
		for j, i := range batch {
			inputs[j] = Input(k, values[i])
		}
		outputs, err := c.evaluateBatch(ctx, inputs)
		if err != nil {
			return nil, err
		}
		for j, i := range batch {
			out[i] = Format(outputs[j])
			c.remember(cacheKey{k, values[i]}, out[i])
		}
	}
	for i, v := range values {
		if out[i] == "" {
			out[i] = out[seen[v]]
		}
	}
	return out, nil
}

// evaluateBatch blinds inputs, has them evaluated and returns the PRF
// outputs, verified.
func (c *Client) evaluateBatch(ctx context.Context, inputs [][]byte) ([][]byte, error) {
	fin, req, err := c.verifier.Blind(inputs)
	if err != nil {
		return nil, fmt.Errorf("pseudonym: blind: %w", err)
	}
	wireReq := EvaluateRequest{Elements: make([][]byte, len(req.Elements)), KeyID: c.pub.ID()}
	for i, el := range req.Elements {
		if wireReq.Elements[i], err = el.MarshalBinaryCompress(); err != nil {
			return nil, fmt.Errorf("pseudonym: encode: %w", err)
		}
	}
	ev, err := c.evaluate(ctx, wireReq)
	if err != nil {
		return nil, fmt.Errorf("pseudonym: evaluate: %w", err)
	}
	if ev.KeyID != c.pub.ID() {
		return nil, fmt.Errorf("%w: evaluated with key %s, not %s", ErrUnverified, ev.KeyID, c.pub.ID())
	}
	decoded, err := decode(ev, len(inputs))
	if err != nil {
		return nil, err
	}
	outputs, err := c.verifier.Finalize(fin, decoded)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnverified, err)
	}
	return outputs, nil
}

func (c *Client) lookup(k cacheKey) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.cache[k]
	if !ok {
		return "", false
	}
	c.order.MoveToFront(el)
	return el.Value.(cacheEntry).pseudonym, true
}

func (c *Client) remember(k cacheKey, p string) {
	if c.size == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.cache[k]; ok {
		c.order.MoveToFront(el)
		return
	}
	c.cache[k] = c.order.PushFront(cacheEntry{key: k, pseudonym: p})
	for c.order.Len() > c.size {
		last := c.order.Back()
		delete(c.cache, last.Value.(cacheEntry).key)
		c.order.Remove(last)
	}
}

// Cached is how many identifiers c remembers.
func (c *Client) Cached() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}

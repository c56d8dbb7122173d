package custodian

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/mediatorhq/mediator/batch"
)

// Wrapper encrypts and decrypts under the custodian's own key: a Vault
// Transit key or a key on an HSM. aad binds what is wrapped to its
// context (a share to its conversation and key id, a private key to its
// custodian): unwrapped under another context, it fails.
type Wrapper interface {
	Wrap(ctx context.Context, aad, plaintext []byte) ([]byte, error)
	// WrapAll wraps plaintexts[i] under aads[i], in one call to the key's
	// keeper where it can (the shares of one store call cost one Transit
	// call); errs[i] is item i's failure.
	WrapAll(ctx context.Context, aads, plaintexts [][]byte) (wrapped [][]byte, errs []error)
	Unwrap(ctx context.Context, aad, wrapped []byte) ([]byte, error)
	// UnwrapAll unwraps wrapped[i] under aads[i], in one call to the key's
	// keeper where it can (the shares of one release cost one Transit call
	// per 256); errs[i] is item i's failure.
	UnwrapAll(ctx context.Context, aads, wrapped [][]byte) (plaintexts [][]byte, errs []error)
	// Rewrap returns wrapped re-encrypted under the current key (a new
	// Transit key version, the current HSM key label), and false (with
	// nothing) when it already is.
	Rewrap(ctx context.Context, aad, wrapped []byte) (fresh []byte, changed bool, err error)
}

// TransitWrapper wraps shares with a Vault Transit key of type aes256-gcm96,
// not exportable, derived: each (conversation, key id) gets its own derived
// key, so a wrapped share only unwraps under its own context.
//
// Concurrent Wrap calls are merged into one Transit batch_input call per key
// (each item keeps its own context), so a burst of deposits costs the
// custodian's Vault a few calls rather than one per deposit.
type TransitWrapper struct {
	client *vaultapi.Client
	mount  string
	key    string
	wraps  *batch.Queue[wrapItem, wrapResult]
}

type wrapItem struct{ plaintext, context string }

type wrapResult struct {
	ciphertext string
	err        error
}

// transitBatchInterval spaces a key's batched encrypt calls under load, so
// a custodian key costs its Vault at most 200 calls/s however many deposits
// arrive, for at most 5 ms more latency. An idle key is called at once.
const transitBatchInterval = 5 * time.Millisecond

// transitBatchMax bounds one batch_input call's size (and its body: a share
// of a 64-byte key and its context take well under 1 KiB).
const transitBatchMax = 256

// NewTransitWrapper returns the wrapper for Transit key key on mount.
func NewTransitWrapper(client *vaultapi.Client, mount, key string) *TransitWrapper {
	w := &TransitWrapper{client: client, mount: mount, key: key}
	w.wraps = &batch.Queue[wrapItem, wrapResult]{
		Fn: w.encryptBatch, Max: transitBatchMax, MinInterval: transitBatchInterval, Timeout: 10 * time.Second,
	}
	return w
}

// Wrap implements Wrapper. The result is Vault's ciphertext ("vault:vN:…").
func (w *TransitWrapper) Wrap(ctx context.Context, aad, share []byte) ([]byte, error) {
	r, err := w.wraps.Do(ctx, wrapItem{
		plaintext: base64.StdEncoding.EncodeToString(share),
		context:   base64.StdEncoding.EncodeToString(aad),
	})
	if err != nil {
		return nil, err
	}
	if r.err != nil {
		return nil, r.err
	}
	return []byte(r.ciphertext), nil
}

// WrapAll implements Wrapper: the items join the key's queue together, so
// they share a batch_input call (with concurrent Wrap calls, if any).
func (w *TransitWrapper) WrapAll(ctx context.Context, aads, plaintexts [][]byte) ([][]byte, []error) {
	items := make([]wrapItem, len(plaintexts))
	for i := range plaintexts {
		items[i] = wrapItem{plaintext: base64.StdEncoding.EncodeToString(plaintexts[i]), context: base64.StdEncoding.EncodeToString(aads[i])}
	}
	wrapped, errs := make([][]byte, len(items)), make([]error, len(items))
	for i, f := range w.wraps.AddAll(ctx, items) {
		r, err := f.Wait()
		switch {
		case err != nil:
			errs[i] = err
		case r.err != nil:
			errs[i] = r.err
		default:
			wrapped[i] = []byte(r.ciphertext)
		}
	}
	return wrapped, errs
}

// encryptBatch encrypts items in one call. partial_failure_response_code
// makes Vault answer 200 with per-item errors rather than fail them all.
func (w *TransitWrapper) encryptBatch(ctx context.Context, items []wrapItem) ([]wrapResult, error) {
	input := make([]map[string]any, len(items))
	for i, it := range items {
		input[i] = map[string]any{"plaintext": it.plaintext, "context": it.context}
	}
	sec, err := w.client.Logical().WriteWithContext(ctx, w.mount+"/encrypt/"+w.key, map[string]any{
		"batch_input":                   input,
		"partial_failure_response_code": 200,
	})
	for i := range input {
		// The request body held the shares in base64; drop our references.
		input[i] = nil
	}
	if err != nil {
		return nil, fmt.Errorf("transit encrypt: %w", err)
	}
	if sec == nil {
		return nil, errors.New("transit encrypt: empty response")
	}
	results, _ := sec.Data["batch_results"].([]any)
	if len(results) != len(items) {
		return nil, fmt.Errorf("transit encrypt: %d results for %d items", len(results), len(items))
	}
	out := make([]wrapResult, len(items))
	for i, r := range results {
		m, _ := r.(map[string]any)
		ct, _ := m["ciphertext"].(string)
		switch msg, _ := m["error"].(string); {
		case msg != "":
			out[i].err = fmt.Errorf("transit encrypt: %s", msg)
		case !strings.HasPrefix(ct, "vault:v"):
			out[i].err = errors.New("transit encrypt: no ciphertext")
		default:
			out[i].ciphertext = ct
		}
	}
	return out, nil
}

// Unwrap implements Wrapper.
func (w *TransitWrapper) Unwrap(ctx context.Context, aad, wrapped []byte) ([]byte, error) {
	sec, err := w.client.Logical().WriteWithContext(ctx, w.mount+"/decrypt/"+w.key, map[string]any{
		"ciphertext": string(wrapped),
		"context":    base64.StdEncoding.EncodeToString(aad),
	})
	if err != nil {
		return nil, fmt.Errorf("transit decrypt: %w", err)
	}
	pt, _ := sec.Data["plaintext"].(string)
	share, err := base64.StdEncoding.DecodeString(pt)
	if err != nil || len(share) == 0 {
		return nil, errors.New("transit decrypt: no plaintext")
	}
	return share, nil
}

// UnwrapAll implements Wrapper with batch_input decrypt calls of at most
// transitBatchMax items.
func (w *TransitWrapper) UnwrapAll(ctx context.Context, aads, wrapped [][]byte) ([][]byte, []error) {
	out, errs := make([][]byte, len(wrapped)), make([]error, len(wrapped))
	for lo := 0; lo < len(wrapped); lo += transitBatchMax {
		hi := min(lo+transitBatchMax, len(wrapped))
		w.decryptBatch(ctx, aads[lo:hi], wrapped[lo:hi], out[lo:hi], errs[lo:hi])
	}
	return out, errs
}

// decryptBatch decrypts one batch into out and errs.
func (w *TransitWrapper) decryptBatch(ctx context.Context, aads, wrapped, out [][]byte, errs []error) {
	input := make([]map[string]any, len(wrapped))
	for i := range wrapped {
		input[i] = map[string]any{"ciphertext": string(wrapped[i]), "context": base64.StdEncoding.EncodeToString(aads[i])}
	}
	sec, err := w.client.Logical().WriteWithContext(ctx, w.mount+"/decrypt/"+w.key, map[string]any{
		"batch_input":                   input,
		"partial_failure_response_code": 200,
	})
	var results []any
	if err == nil && sec != nil {
		results, _ = sec.Data["batch_results"].([]any)
	}
	if err == nil && len(results) != len(wrapped) {
		err = fmt.Errorf("%d results for %d items", len(results), len(wrapped))
	}
	if err != nil {
		for i := range errs {
			errs[i] = fmt.Errorf("transit decrypt: %w", err)
		}
		return
	}
	for i, r := range results {
		m, _ := r.(map[string]any)
		if msg, _ := m["error"].(string); msg != "" {
			errs[i] = fmt.Errorf("transit decrypt: %s", msg)
			continue
		}
		pt, _ := m["plaintext"].(string)
		share, err := base64.StdEncoding.DecodeString(pt)
		if err != nil || len(share) == 0 {
			errs[i] = errors.New("transit decrypt: no plaintext")
			continue
		}
		out[i] = share
	}
}

// Rewrap implements Rewrapper: Transit re-encrypts wrapped under the
// newest version of the key, inside Vault, so the share never leaves it in
// clear. Transit uses a fresh nonce every time; the share moved only if the
// key version ("vault:vN:") changed.
func (w *TransitWrapper) Rewrap(ctx context.Context, aad, wrapped []byte) ([]byte, bool, error) {
	sec, err := w.client.Logical().WriteWithContext(ctx, w.mount+"/rewrap/"+w.key, map[string]any{
		"ciphertext": string(wrapped),
		"context":    base64.StdEncoding.EncodeToString(aad),
	})
	if err != nil {
		return nil, false, fmt.Errorf("transit rewrap: %w", err)
	}
	ct, _ := sec.Data["ciphertext"].(string)
	if !strings.HasPrefix(ct, "vault:v") {
		return nil, false, errors.New("transit rewrap: no ciphertext")
	}
	if transitKeyVersion(ct) == transitKeyVersion(string(wrapped)) {
		return nil, false, nil
	}
	return []byte(ct), true, nil
}

// transitKeyVersion returns the "vault:vN:" prefix of a Transit ciphertext.
func transitKeyVersion(ct string) string {
	first := strings.IndexByte(ct, ':')
	if first < 0 {
		return ""
	}
	second := strings.IndexByte(ct[first+1:], ':')
	if second < 0 {
		return ""
	}
	return ct[:first+1+second+1]
}

//go:build cgo

package custodian

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/ThalesGroup/crypto11"
)

// PKCS11Wrapper wraps shares with AES-256-GCM performed on a PKCS#11 token
// (an HSM; SoftHSM2 in tests) under keys that never leave it. A wrapped
// share is "p11:v2:", the key's label, ":", and base64 of the 12-byte random
// nonce and the GCM ciphertext; aad (conversation and key id) is GCM's
// additional data. The label says which key to unwrap with, so keys can be
// rotated.
type PKCS11Wrapper struct {
	ctx     *crypto11.Context
	current string
	keys    map[string]cipher.AEAD // by label
}

// OpenPKCS11 logs in to the token and finds the keys. Close the wrapper when
// done.
func OpenPKCS11(cfg PKCS11Config) (*PKCS11Wrapper, error) {
	if cfg.Module == "" || cfg.TokenLabel == "" || cfg.KeyLabel == "" {
		return nil, errors.New("custodian: pkcs11 needs a module, a token label and a key label")
	}
	labels := append([]string{cfg.KeyLabel}, cfg.PreviousKeyLabels...)
	for _, l := range labels {
		if !validKeyLabel.MatchString(l) {
			return nil, fmt.Errorf("custodian: pkcs11 key label %q: use 1–64 of A–Z a–z 0–9 . _ -", l)
		}
	}
	c, err := crypto11.Configure(&crypto11.Config{
		Path: cfg.Module, TokenLabel: cfg.TokenLabel, Pin: cfg.PIN, GCMIVLength: pkcs11NonceLen,
	})
	if err != nil {
		// crypto11's errors name the module and token, not the PIN.
		return nil, fmt.Errorf("custodian: pkcs11 token %q: %w", cfg.TokenLabel, err)
	}
	w := &PKCS11Wrapper{ctx: c, current: cfg.KeyLabel, keys: map[string]cipher.AEAD{}}
	for _, label := range labels {
		key, err := c.FindKey(nil, []byte(label))
		if err == nil && key == nil {
			err = fmt.Errorf("no key labelled %q", label)
		}
		var aead cipher.AEAD
		if err == nil {
			aead, err = key.NewGCM()
		}
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("custodian: pkcs11 key: %w", err)
		}
		w.keys[label] = aead
	}
	return w, nil
}

// Close logs out and releases the token.
func (w *PKCS11Wrapper) Close() error { return w.ctx.Close() }

// Wrap implements Wrapper, with the current key.
func (w *PKCS11Wrapper) Wrap(_ context.Context, aad, share []byte) ([]byte, error) {
	nonce := make([]byte, pkcs11NonceLen)
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("pkcs11 wrap: nonce: %w", err)
	}
	ct, err := gcmSeal(w.keys[w.current], nonce, share, aad)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(pkcs11Prefix)+len(w.current)+1+base64.StdEncoding.EncodedLen(len(nonce)+len(ct)))
	out = append(out, pkcs11Prefix...)
	out = append(out, w.current...)
	out = append(out, ':')
	return base64.StdEncoding.AppendEncode(out, append(nonce, ct...)), nil
}

// WrapAll implements Wrapper, one item at a time (the token has no batch
// call).
func (w *PKCS11Wrapper) WrapAll(ctx context.Context, aads, plaintexts [][]byte) ([][]byte, []error) {
	wrapped, errs := make([][]byte, len(plaintexts)), make([]error, len(plaintexts))
	for i := range plaintexts {
		wrapped[i], errs[i] = w.Wrap(ctx, aads[i], plaintexts[i])
	}
	return wrapped, errs
}

// UnwrapAll implements Wrapper, one item at a time.
func (w *PKCS11Wrapper) UnwrapAll(ctx context.Context, aads, wrapped [][]byte) ([][]byte, []error) {
	out, errs := make([][]byte, len(wrapped)), make([]error, len(wrapped))
	for i := range wrapped {
		out[i], errs[i] = w.Unwrap(ctx, aads[i], wrapped[i])
	}
	return out, errs
}

// gcmSeal turns crypto11's panics (it has no error return) into errors.
func gcmSeal(aead cipher.AEAD, nonce, share, aad []byte) (ct []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("pkcs11 wrap: %v", r)
		}
	}()
	return aead.Seal(nil, nonce, share, aad), nil
}

// Unwrap implements Wrapper, with whichever configured key the share names.
func (w *PKCS11Wrapper) Unwrap(_ context.Context, aad, wrapped []byte) ([]byte, error) {
	label, raw, err := parsePKCS11Share(wrapped)
	if err != nil {
		return nil, err
	}
	aead, ok := w.keys[label]
	if !ok {
		return nil, fmt.Errorf("pkcs11 unwrap: share wrapped with key %q, which is not configured", label)
	}
	share, err := aead.Open(nil, raw[:pkcs11NonceLen], raw[pkcs11NonceLen:], aad)
	if err != nil {
		return nil, fmt.Errorf("pkcs11 unwrap: %w", err)
	}
	return share, nil
}

// Rewrap implements Rewrapper. The token holds no operation that re-wraps
// data under another key, so the share is unwrapped and wrapped again on the
// token; the plaintext share exists only in this process's memory, briefly,
// and is zeroed.
func (w *PKCS11Wrapper) Rewrap(ctx context.Context, aad, wrapped []byte) ([]byte, bool, error) {
	label, _, err := parsePKCS11Share(wrapped)
	if err != nil {
		return nil, false, err
	}
	if label == w.current {
		return nil, false, nil
	}
	share, err := w.Unwrap(ctx, aad, wrapped)
	if err != nil {
		return nil, false, err
	}
	defer clear(share)
	fresh, err := w.Wrap(ctx, aad, share)
	if err != nil {
		return nil, false, err
	}
	return fresh, true, nil
}

//go:build cgo

package custodian

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/ThalesGroup/crypto11"
)

// ckkAES is PKCS#11's CKK_AES, the CKA_KEY_TYPE of an AES key.
const ckkAES = 0x1f

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

// EnsurePKCS11Key makes the key cfg.KeyLabel on the token unless the token
// has one with that label, and returns whether it made it. The key is
// generated on the token: AES-256, a token object (CKA_TOKEN), private,
// sensitive and not extractable, usable to encrypt and decrypt (the
// AES-GCM that PKCS11Wrapper does) and for nothing else; its CKA_ID is
// its label. A key the token already has is used as it is once it checks
// out as such a key, as the one it made is: AES, 32 bytes, sensitive, not
// extractable, allowed to encrypt and decrypt. Two keys with the label are
// refused. It needs only cfg's module, token label, PIN and key label.
func EnsurePKCS11Key(cfg PKCS11Config) (created bool, err error) {
	if cfg.Module == "" || cfg.TokenLabel == "" || cfg.KeyLabel == "" {
		return false, errors.New("custodian: pkcs11 needs a module, a token label and a key label")
	}
	if !validKeyLabel.MatchString(cfg.KeyLabel) {
		return false, fmt.Errorf("custodian: pkcs11 key label %q: use 1–64 of A–Z a–z 0–9 . _ -", cfg.KeyLabel)
	}
	c, err := crypto11.Configure(&crypto11.Config{Path: cfg.Module, TokenLabel: cfg.TokenLabel, Pin: cfg.PIN})
	if err != nil {
		return false, fmt.Errorf("custodian: pkcs11 token %q: %w", cfg.TokenLabel, err)
	}
	defer c.Close()
	label := []byte(cfg.KeyLabel)
	keys, err := c.FindKeys(nil, label)
	if err != nil {
		return false, fmt.Errorf("custodian: pkcs11 find key %q: %w", cfg.KeyLabel, err)
	}
	if len(keys) == 0 {
		template, err := crypto11.NewAttributeSetWithIDAndLabel(label, label)
		if err == nil {
			for _, a := range []struct {
				t crypto11.AttributeType
				v bool
			}{
				{crypto11.CkaToken, true}, {crypto11.CkaPrivate, true}, {crypto11.CkaSensitive, true},
				{crypto11.CkaExtractable, false}, {crypto11.CkaEncrypt, true}, {crypto11.CkaDecrypt, true},
				{crypto11.CkaWrap, false}, {crypto11.CkaUnwrap, false}, {crypto11.CkaSign, false},
				{crypto11.CkaVerify, false}, {crypto11.CkaDerive, false},
			} {
				if err = template.Set(a.t, a.v); err != nil {
					break
				}
			}
		}
		if err == nil {
			_, err = c.GenerateSecretKeyWithAttributes(template, 256, crypto11.CipherAES)
		}
		if err != nil {
			return false, fmt.Errorf("custodian: pkcs11 generate key %q on token %q: %w", cfg.KeyLabel, cfg.TokenLabel, err)
		}
		created = true
		if keys, err = c.FindKeys(nil, label); err != nil {
			return true, fmt.Errorf("custodian: pkcs11 find key %q: %w", cfg.KeyLabel, err)
		}
	}
	if len(keys) != 1 {
		return created, fmt.Errorf("custodian: pkcs11 token %q holds %d keys labelled %q; keep one", cfg.TokenLabel, len(keys), cfg.KeyLabel)
	}
	if err := checkPKCS11Key(c, keys[0]); err != nil {
		return created, fmt.Errorf("custodian: pkcs11 key %q on token %q %w", cfg.KeyLabel, cfg.TokenLabel, err)
	}
	return created, nil
}

// checkPKCS11Key says what is wrong with key as a custodian's wrapping
// key, if anything.
func checkPKCS11Key(c *crypto11.Context, key *crypto11.SecretKey) error {
	attrs, err := c.GetAttributes(key, []crypto11.AttributeType{crypto11.CkaKeyType, crypto11.CkaValueLen,
		crypto11.CkaSensitive, crypto11.CkaExtractable, crypto11.CkaEncrypt, crypto11.CkaDecrypt})
	if err != nil {
		return fmt.Errorf("cannot be read: %w", err)
	}
	flag := func(t crypto11.AttributeType) bool {
		a := attrs[t]
		return a != nil && len(a.Value) == 1 && a.Value[0] != 0
	}
	ulong := func(t crypto11.AttributeType) uint64 {
		a := attrs[t]
		switch {
		case a == nil:
			return ^uint64(0)
		case len(a.Value) == 8:
			return binary.NativeEndian.Uint64(a.Value)
		case len(a.Value) == 4:
			return uint64(binary.NativeEndian.Uint32(a.Value))
		}
		return ^uint64(0)
	}
	var problems []string
	if ulong(crypto11.CkaKeyType) != ckkAES || ulong(crypto11.CkaValueLen) != 32 {
		problems = append(problems, "is not an AES-256 key")
	}
	if !flag(crypto11.CkaSensitive) {
		problems = append(problems, "is not sensitive")
	}
	if attrs[crypto11.CkaExtractable] == nil || flag(crypto11.CkaExtractable) {
		problems = append(problems, "is extractable")
	}
	if !flag(crypto11.CkaEncrypt) || !flag(crypto11.CkaDecrypt) {
		problems = append(problems, "may not encrypt and decrypt")
	}
	if problems != nil {
		return errors.New(strings.Join(problems, ", ") + ": make a non-extractable AES-256 key under another label, or let `mediator custodian init` make one")
	}
	return nil
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

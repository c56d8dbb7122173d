package escrow

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/ThalesGroup/crypto11"
)

// PKCS11Config names a non-extractable AES key on a PKCS#11 token.
type PKCS11Config struct {
	Module     string // path of the PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so
	TokenLabel string
	PIN        string // secret: never log it
	KeyLabel   string
}

// PKCS11Wrapper wraps shares with AES-256-GCM performed on a PKCS#11 token
// (an HSM; SoftHSM2 in tests) under a key that never leaves it. A wrapped
// share is "p11:v1:" and base64 of the 12-byte random nonce and the GCM
// ciphertext; aad (conversation and key id) is GCM's additional data.
type PKCS11Wrapper struct {
	ctx  *crypto11.Context
	aead cipher.AEAD
}

const (
	pkcs11Prefix   = "p11:v1:"
	pkcs11NonceLen = 12
)

// OpenPKCS11 logs in to the token and finds the key. Close the wrapper when
// done.
func OpenPKCS11(cfg PKCS11Config) (*PKCS11Wrapper, error) {
	if cfg.Module == "" || cfg.TokenLabel == "" || cfg.KeyLabel == "" {
		return nil, errors.New("escrow: pkcs11 needs a module, a token label and a key label")
	}
	c, err := crypto11.Configure(&crypto11.Config{
		Path: cfg.Module, TokenLabel: cfg.TokenLabel, Pin: cfg.PIN, GCMIVLength: pkcs11NonceLen,
	})
	if err != nil {
		// crypto11's errors name the module and token, not the PIN.
		return nil, fmt.Errorf("escrow: pkcs11 token %q: %w", cfg.TokenLabel, err)
	}
	key, err := c.FindKey(nil, []byte(cfg.KeyLabel))
	if err == nil && key == nil {
		err = fmt.Errorf("no key labelled %q", cfg.KeyLabel)
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("escrow: pkcs11 key: %w", err)
	}
	aead, err := key.NewGCM()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("escrow: pkcs11 key: %w", err)
	}
	return &PKCS11Wrapper{ctx: c, aead: aead}, nil
}

// Close logs out and releases the token.
func (w *PKCS11Wrapper) Close() error { return w.ctx.Close() }

// Wrap implements Wrapper.
func (w *PKCS11Wrapper) Wrap(_ context.Context, aad, share []byte) ([]byte, error) {
	nonce := make([]byte, pkcs11NonceLen)
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("pkcs11 wrap: nonce: %w", err)
	}
	ct, err := w.seal(nonce, share, aad)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(pkcs11Prefix)+base64.StdEncoding.EncodedLen(len(nonce)+len(ct)))
	out = append(out, pkcs11Prefix...)
	return base64.StdEncoding.AppendEncode(out, append(nonce, ct...)), nil
}

// seal turns crypto11's panics (it has no error return) into errors.
func (w *PKCS11Wrapper) seal(nonce, share, aad []byte) (ct []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("pkcs11 wrap: %v", r)
		}
	}()
	return w.aead.Seal(nil, nonce, share, aad), nil
}

// Unwrap implements Wrapper.
func (w *PKCS11Wrapper) Unwrap(_ context.Context, aad, wrapped []byte) ([]byte, error) {
	b64, ok := bytes.CutPrefix(wrapped, []byte(pkcs11Prefix))
	if !ok {
		return nil, errors.New("pkcs11 unwrap: not a pkcs11 share")
	}
	raw, err := base64.StdEncoding.DecodeString(string(b64))
	if err != nil || len(raw) < pkcs11NonceLen+16 {
		return nil, errors.New("pkcs11 unwrap: malformed share")
	}
	share, err := w.aead.Open(nil, raw[:pkcs11NonceLen], raw[pkcs11NonceLen:], aad)
	if err != nil {
		return nil, fmt.Errorf("pkcs11 unwrap: %w", err)
	}
	return share, nil
}

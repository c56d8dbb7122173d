// Package access is the lawful-access workflow: requests, signed approvals
// and releases. A released key leaves the mediator only sealed to the
// requester's public key with RFC 9180 HPKE (crypto/hpke), single-shot.
//
// This file holds the sealing; the request state machine and approvals
// build on it.
package access

import (
	"crypto/hpke"
	"errors"
	"fmt"
	"strings"
)

// The HPKE suite of a release: the KEM is the recipient's choice among
// KEMs, the KDF and AEAD are fixed.
const (
	// KEMMLKEM768X25519 is ML-KEM-768 with X25519 (post-quantum hybrid),
	// the default.
	KEMMLKEM768X25519 uint16 = 0x647a
	// KEMX25519 is DHKEM(X25519, HKDF-SHA256), for recipients without a
	// post-quantum key.
	KEMX25519 uint16 = 0x0020
	// KDFHKDFSHA256 is HKDF-SHA256.
	KDFHKDFSHA256 uint16 = 0x0001
	// AEADAES256GCM is AES-256-GCM.
	AEADAES256GCM uint16 = 0x0002
)

// RecipientKey is a requester's public key as requests carry it:
// {"kem_id":25722,"public_key":"<base64>"}.
type RecipientKey struct {
	KEMID     uint16 `json:"kem_id"`
	PublicKey []byte `json:"public_key"`
}

// ErrUnsupportedKEM is returned for a KEM other than the two accepted.
var ErrUnsupportedKEM = errors.New("access: recipient key must use KEM 0x647a (ML-KEM-768+X25519) or 0x0020 (DHKEM X25519)")

// hpkePublicKey parses k, accepting only the two release KEMs.
func (k RecipientKey) hpkePublicKey() (hpke.PublicKey, error) {
	if k.KEMID != KEMMLKEM768X25519 && k.KEMID != KEMX25519 {
		return nil, ErrUnsupportedKEM
	}
	kem, err := hpke.NewKEM(k.KEMID)
	if err != nil {
		return nil, fmt.Errorf("access: kem: %w", err)
	}
	pk, err := kem.NewPublicKey(k.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("access: recipient public key: %w", err)
	}
	return pk, nil
}

// Validate reports whether k is a usable recipient key.
func (k RecipientKey) Validate() error {
	_, err := k.hpkePublicKey()
	return err
}

// ReleaseInfo is the HPKE info of one released key:
// "mediator-release-v1\n" + request id + "\n" + conversation id + "\n" + key id.
// Binding all three means a sealed key cannot be presented as another
// request's, conversation's or key's.
func ReleaseInfo(requestID, conversationID, keyID string) ([]byte, error) {
	for _, s := range []string{requestID, conversationID, keyID} {
		if s == "" || strings.Contains(s, "\n") {
			return nil, errors.New("access: release ids must be non-empty and contain no newline")
		}
	}
	return []byte("mediator-release-v1\n" + requestID + "\n" + conversationID + "\n" + keyID), nil
}

// SealedKey is one released key, as the release response carries it.
type SealedKey struct {
	ConversationID string `json:"conversation_id"`
	KeyID          string `json:"key_id"`
	KEMID          uint16 `json:"kem_id"`
	KDFID          uint16 `json:"kdf_id"`
	AEADID         uint16 `json:"aead_id"`
	// Sealed is hpke.Seal's output: the encapsulated key followed by the
	// ciphertext.
	Sealed []byte `json:"sealed"`
}

// Seal seals key to the recipient for request requestID.
func Seal(to RecipientKey, requestID, conversationID, keyID string, key []byte) (SealedKey, error) {
	pk, err := to.hpkePublicKey()
	if err != nil {
		return SealedKey{}, err
	}
	info, err := ReleaseInfo(requestID, conversationID, keyID)
	if err != nil {
		return SealedKey{}, err
	}
	ct, err := hpke.Seal(pk, hpke.HKDFSHA256(), hpke.AES256GCM(), info, key)
	if err != nil {
		return SealedKey{}, fmt.Errorf("access: seal: %w", err)
	}
	return SealedKey{ConversationID: conversationID, KeyID: keyID, KEMID: to.KEMID,
		KDFID: KDFHKDFSHA256, AEADID: AEADAES256GCM, Sealed: ct}, nil
}

// Open is the recipient's side: it opens s, released for request
// requestID, with the recipient's private key.
func Open(priv hpke.PrivateKey, requestID string, s SealedKey) ([]byte, error) {
	if s.KDFID != KDFHKDFSHA256 || s.AEADID != AEADAES256GCM || s.KEMID != priv.KEM().ID() {
		return nil, errors.New("access: sealed key uses another HPKE suite")
	}
	info, err := ReleaseInfo(requestID, s.ConversationID, s.KeyID)
	if err != nil {
		return nil, err
	}
	key, err := hpke.Open(priv, hpke.HKDFSHA256(), hpke.AES256GCM(), info, s.Sealed)
	if err != nil {
		return nil, fmt.Errorf("access: open: %w", err)
	}
	return key, nil
}

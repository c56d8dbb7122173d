package access

import (
	"crypto/hpke"
	"errors"

	"github.com/mediatorhq/mediator/seal"
)

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
func Seal(to seal.PublicKey, requestID, conversationID, keyID string, key []byte) (SealedKey, error) {
	info, err := seal.ReleaseInfo(requestID, conversationID, keyID)
	if err != nil {
		return SealedKey{}, err
	}
	ct, err := seal.Seal(to, info, key)
	if err != nil {
		return SealedKey{}, err
	}
	return SealedKey{ConversationID: conversationID, KeyID: keyID, KEMID: to.KEMID,
		KDFID: seal.KDFHKDFSHA256, AEADID: seal.AEADAES256GCM, Sealed: ct}, nil
}

// Open is the recipient's side: it opens s, released for request
// requestID, with the recipient's private key.
func Open(priv hpke.PrivateKey, requestID string, s SealedKey) ([]byte, error) {
	if s.KDFID != seal.KDFHKDFSHA256 || s.AEADID != seal.AEADAES256GCM || s.KEMID != priv.KEM().ID() {
		return nil, errors.New("access: sealed key uses another HPKE suite")
	}
	info, err := seal.ReleaseInfo(requestID, s.ConversationID, s.KeyID)
	if err != nil {
		return nil, err
	}
	return seal.Open(priv, info, s.Sealed)
}

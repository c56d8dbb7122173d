package access

import (
	"crypto/ed25519"
	"crypto/hpke"
	"encoding/json"
	"errors"
	"fmt"
)

// Key files, as `mediator keygen` writes them: JSON with a type naming the
// format, so one kind of key is never read as the other.
const (
	approverKeyType  = "mediator-approver-key-v1"
	recipientKeyType = "mediator-recipient-key-v1"
)

type approverKeyFile struct {
	Type       string `json:"type"`
	PrivateKey []byte `json:"private_key"` // the 32-byte Ed25519 seed
}

type recipientKeyFile struct {
	Type       string `json:"type"`
	KEMID      uint16 `json:"kem_id"`
	PrivateKey []byte `json:"private_key"` // RFC 9180 SerializePrivateKey
}

// NewApproverKey returns a fresh approver signing key, its key file and its
// public key.
func NewApproverKey() (file []byte, pub ed25519.PublicKey, err error) {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return nil, nil, fmt.Errorf("access: approver key: %w", err)
	}
	file, err = json.Marshal(approverKeyFile{Type: approverKeyType, PrivateKey: priv.Seed()})
	clear(priv)
	return file, pub, err
}

// ParseApproverKey reads an approver key file.
func ParseApproverKey(file []byte) (ed25519.PrivateKey, error) {
	var f approverKeyFile
	if err := json.Unmarshal(file, &f); err != nil || f.Type != approverKeyType || len(f.PrivateKey) != ed25519.SeedSize {
		return nil, errors.New("access: not an approver key file (make one with mediator keygen --approver)")
	}
	priv := ed25519.NewKeyFromSeed(f.PrivateKey)
	clear(f.PrivateKey)
	return priv, nil
}

// NewRecipientKey returns a fresh HPKE key pair for kemID (one of the two
// release KEMs): the private key file and the public key as requests carry
// it.
func NewRecipientKey(kemID uint16) (file []byte, pub RecipientKey, err error) {
	if kemID != KEMMLKEM768X25519 && kemID != KEMX25519 {
		return nil, RecipientKey{}, ErrUnsupportedKEM
	}
	kem, err := hpke.NewKEM(kemID)
	if err != nil {
		return nil, RecipientKey{}, fmt.Errorf("access: recipient key: %w", err)
	}
	priv, err := kem.GenerateKey()
	if err != nil {
		return nil, RecipientKey{}, fmt.Errorf("access: recipient key: %w", err)
	}
	raw, err := priv.Bytes()
	if err != nil {
		return nil, RecipientKey{}, fmt.Errorf("access: recipient key: %w", err)
	}
	file, err = json.Marshal(recipientKeyFile{Type: recipientKeyType, KEMID: kemID, PrivateKey: raw})
	clear(raw)
	return file, RecipientKey{KEMID: kemID, PublicKey: priv.PublicKey().Bytes()}, err
}

// ParseRecipientKey reads a recipient key file.
func ParseRecipientKey(file []byte) (hpke.PrivateKey, error) {
	var f recipientKeyFile
	if err := json.Unmarshal(file, &f); err != nil || f.Type != recipientKeyType {
		return nil, errors.New("access: not a recipient key file (make one with mediator keygen --recipient)")
	}
	defer clear(f.PrivateKey)
	kem, err := hpke.NewKEM(f.KEMID)
	if err != nil {
		return nil, fmt.Errorf("access: recipient key file: %w", err)
	}
	priv, err := kem.NewPrivateKey(f.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("access: recipient key file: %w", err)
	}
	return priv, nil
}

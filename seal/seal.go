// Package seal is RFC 9180 HPKE as the mediator uses it (crypto/hpke,
// single-shot): a key escrowed or released travels only sealed to a public
// key, under an info string that binds it to its place. The suite is fixed
// but for the KEM: ML-KEM-768+X25519 (0x647a, post-quantum hybrid, the
// default) or DHKEM(X25519) (0x0020); KDF HKDF-SHA256 (1), AEAD AES-256-GCM
// (2). A sealed message is hpke.Seal's output: the encapsulated key followed
// by the ciphertext.
//
// Key files are JSON with a type naming the format, so one kind of key is
// never read as another.
package seal

import (
	"crypto/hpke"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
)

// The suite.
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

// PublicKey is an HPKE public key as the API carries it:
// {"kem_id":25722,"public_key":"<base64>"}.
type PublicKey struct {
	KEMID     uint16 `json:"kem_id"`
	PublicKey []byte `json:"public_key"`
}

// ErrUnsupportedKEM is returned for a KEM other than the two accepted.
var ErrUnsupportedKEM = errors.New("seal: the key must use KEM 0x647a (ML-KEM-768+X25519) or 0x0020 (DHKEM X25519)")

// hpkeKey parses k, accepting only the two KEMs.
func (k PublicKey) hpkeKey() (hpke.PublicKey, error) {
	if k.KEMID != KEMMLKEM768X25519 && k.KEMID != KEMX25519 {
		return nil, ErrUnsupportedKEM
	}
	kem, err := hpke.NewKEM(k.KEMID)
	if err != nil {
		return nil, fmt.Errorf("seal: kem: %w", err)
	}
	pk, err := kem.NewPublicKey(k.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("seal: public key: %w", err)
	}
	return pk, nil
}

// Validate reports whether k is a usable public key.
func (k PublicKey) Validate() error {
	_, err := k.hpkeKey()
	return err
}

// Fingerprint names k for people and logs: "sha256:" and the hex SHA-256
// of the KEM id (2 bytes, big-endian) followed by the public key bytes.
// Two keys with equal fingerprints are the same key.
func (k PublicKey) Fingerprint() string {
	h := sha256.New()
	var id [2]byte
	binary.BigEndian.PutUint16(id[:], k.KEMID)
	h.Write(id[:])
	h.Write(k.PublicKey)
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// Seal seals plaintext to k under info.
func Seal(k PublicKey, info, plaintext []byte) ([]byte, error) {
	s, err := NewSealer(k)
	if err != nil {
		return nil, err
	}
	return s.Seal(info, plaintext)
}

// Sealer seals to one public key, parsed once: a depositor sealing shares
// of many keys to the same custodians parses each custodian's key (an
// ML-KEM matrix expansion) once, not per share. It is safe for concurrent
// use.
type Sealer struct {
	pk hpke.PublicKey
}

// NewSealer parses k, accepting only the two KEMs.
func NewSealer(k PublicKey) (*Sealer, error) {
	pk, err := k.hpkeKey()
	if err != nil {
		return nil, err
	}
	return &Sealer{pk: pk}, nil
}

// Seal seals plaintext under info, as the package-level Seal does.
func (s *Sealer) Seal(info, plaintext []byte) ([]byte, error) {
	ct, err := hpke.Seal(s.pk, hpke.HKDFSHA256(), hpke.AES256GCM(), info, plaintext)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return ct, nil
}

// Open opens sealed with priv under info. Any change to sealed, info or
// the key makes it fail.
func Open(priv hpke.PrivateKey, info, sealed []byte) ([]byte, error) {
	pt, err := hpke.Open(priv, hpke.HKDFSHA256(), hpke.AES256GCM(), info, sealed)
	if err != nil {
		return nil, fmt.Errorf("seal: open: %w", err)
	}
	return pt, nil
}

// keyFileType names the private key file format.
const keyFileType = "mediator-recipient-key-v1"

type keyFile struct {
	Type       string `json:"type"`
	KEMID      uint16 `json:"kem_id"`
	PrivateKey []byte `json:"private_key"` // RFC 9180 SerializePrivateKey
}

// NewKey returns a fresh key pair for kemID (one of the two KEMs): the
// private key file and the public key.
func NewKey(kemID uint16) (file []byte, pub PublicKey, err error) {
	if kemID != KEMMLKEM768X25519 && kemID != KEMX25519 {
		return nil, PublicKey{}, ErrUnsupportedKEM
	}
	kem, err := hpke.NewKEM(kemID)
	if err != nil {
		return nil, PublicKey{}, fmt.Errorf("seal: new key: %w", err)
	}
	priv, err := kem.GenerateKey()
	if err != nil {
		return nil, PublicKey{}, fmt.Errorf("seal: new key: %w", err)
	}
	raw, err := priv.Bytes()
	if err != nil {
		return nil, PublicKey{}, fmt.Errorf("seal: new key: %w", err)
	}
	file, err = json.Marshal(keyFile{Type: keyFileType, KEMID: kemID, PrivateKey: raw})
	clear(raw)
	return file, PublicKey{KEMID: kemID, PublicKey: priv.PublicKey().Bytes()}, err
}

// ParseKey reads a private key file.
func ParseKey(file []byte) (hpke.PrivateKey, error) {
	var f keyFile
	if err := json.Unmarshal(file, &f); err != nil || f.Type != keyFileType {
		return nil, errors.New("seal: not a recipient key file (make one with mediator keygen --recipient)")
	}
	defer clear(f.PrivateKey)
	if f.KEMID != KEMMLKEM768X25519 && f.KEMID != KEMX25519 {
		return nil, ErrUnsupportedKEM
	}
	kem, err := hpke.NewKEM(f.KEMID)
	if err != nil {
		return nil, fmt.Errorf("seal: key file: %w", err)
	}
	priv, err := kem.NewPrivateKey(f.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("seal: key file: %w", err)
	}
	return priv, nil
}

// PublicKeyOf returns priv's public key in the API's form.
func PublicKeyOf(priv hpke.PrivateKey) PublicKey {
	return PublicKey{KEMID: priv.KEM().ID(), PublicKey: priv.PublicKey().Bytes()}
}

// Package pseudonym turns identifiers (phone numbers, conversation ids,
// opaque ids) into pseudonyms through an oblivious pseudorandom function
// whose key the mediator never holds: RFC 9497's VOPRF over
// ristretto255-SHA512 (github.com/cloudflare/circl/oprf).
//
// The client blinds each identifier before it leaves, the pseudonym
// service evaluates the blinded element with its key and proves, against
// its public key, that it used that key; the client unblinds and checks
// the proof. The service learns nothing of the identifier, and the
// mediator, which sees only pseudonyms, cannot compute one: testing a
// candidate phone number needs the service. Who can link a pseudonym to a
// person is in docs/pseudonyms.md.
package pseudonym

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/cloudflare/circl/oprf"
)

// suite is the VOPRF ciphersuite: ristretto255-SHA512 (RFC 9497, 4.1).
var suite = oprf.SuiteRistretto255

// Kind says what an identifier is. Each kind is its own namespace: the
// same string as a phone number and as a conversation id gives unrelated
// pseudonyms.
type Kind string

// The kinds of identifier.
const (
	// KindPhone is a phone number, normalised to E.164 first.
	KindPhone Kind = "phone"
	// KindConversation is a conversation id, exactly as the platform
	// gives it.
	KindConversation Kind = "conversation"
	// KindID is any other opaque id (an event id), exactly as given.
	KindID Kind = "id"
)

func (k Kind) valid() bool {
	return k == KindPhone || k == KindConversation || k == KindID
}

// inputLabel versions the PRF input: a later version gives unrelated
// pseudonyms, never the same ones.
const inputLabel = "mediator-pseudonym-v1"

// Input is the PRF input for value of kind k:
// "mediator-pseudonym-v1\n" + kind + "\n" + value.
func Input(k Kind, value string) []byte {
	return []byte(inputLabel + "\n" + string(k) + "\n" + value)
}

// Prefix begins every pseudonym of this version.
const Prefix = "ps1_"

// encodedLen is the length of a pseudonym's encoded part: 32 bytes of the
// PRF output in unpadded base64url.
var encodedLen = base64.RawURLEncoding.EncodedLen(32)

// Format is the pseudonym of a PRF output: Prefix and the output's first
// 32 bytes in unpadded base64url (47 characters in all).
func Format(output []byte) string {
	return Prefix + base64.RawURLEncoding.EncodeToString(output[:32])
}

// Valid reports whether s is a well-formed pseudonym: what the mediator
// accepts in an identifier field, and nothing else.
func Valid(s string) bool {
	rest, ok := strings.CutPrefix(s, Prefix)
	if !ok || len(rest) != encodedLen {
		return false
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(rest)
	return err == nil && len(b) == 32
}

// keyPrefix begins a key's text form.
const keyPrefix = "voprf-ristretto255-sha512:"

// Key is the pseudonym service's private key.
type Key struct {
	priv *oprf.PrivateKey
}

// GenerateKey returns a new random key.
func GenerateKey() (*Key, error) {
	priv, err := oprf.GenerateKey(suite, rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pseudonym: generate key: %w", err)
	}
	return &Key{priv: priv}, nil
}

// MarshalText is the key's text form: keyPrefix and the scalar in
// base64. It is a secret: keep it only where the service's key is kept.
func (k *Key) MarshalText() ([]byte, error) {
	b, err := k.priv.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("pseudonym: marshal key: %w", err)
	}
	return []byte(keyPrefix + base64.StdEncoding.EncodeToString(b)), nil
}

// ParseKey parses a key's text form (MarshalText). Its errors never
// repeat the text.
func ParseKey(text []byte) (*Key, error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(string(text)), keyPrefix)
	if !ok {
		return nil, errors.New("pseudonym: not a " + strings.TrimSuffix(keyPrefix, ":") + " key")
	}
	b, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		return nil, errors.New("pseudonym: the key is not base64")
	}
	priv := new(oprf.PrivateKey)
	if err := priv.UnmarshalBinary(suite, b); err != nil {
		return nil, errors.New("pseudonym: the key is not a ristretto255 scalar")
	}
	return &Key{priv: priv}, nil
}

// Public returns the key's public key.
func (k *Key) Public() PublicKey {
	return PublicKey{pub: k.priv.Public()}
}

// PublicKey is the pseudonym service's public key: what the roster names,
// and what every client checks each evaluation's proof against.
type PublicKey struct {
	pub *oprf.PublicKey
}

// String is the public key's text form: keyPrefix and the element in
// base64.
func (p PublicKey) String() string {
	b, err := p.pub.MarshalBinary()
	if err != nil {
		return ""
	}
	return keyPrefix + base64.StdEncoding.EncodeToString(b)
}

// ID names the public key: "sha256:" and the first 16 bytes of the
// SHA-256 of its encoding, in hex. An evaluation says which key made it.
func (p PublicKey) ID() string {
	b, _ := p.pub.MarshalBinary()
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:16])
}

// ParsePublicKey parses a public key's text form (String).
func ParsePublicKey(s string) (PublicKey, error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(s), keyPrefix)
	if !ok {
		return PublicKey{}, fmt.Errorf("pseudonym: a public key begins %q", keyPrefix)
	}
	b, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		return PublicKey{}, errors.New("pseudonym: the public key is not base64")
	}
	pub := new(oprf.PublicKey)
	if err := pub.UnmarshalBinary(suite, b); err != nil {
		return PublicKey{}, errors.New("pseudonym: the public key is not a ristretto255 element")
	}
	return PublicKey{pub: pub}, nil
}

// Synthetic returns a well-formed pseudonym made from seed by SHA-256
// alone, in a namespace of its own: it is no one's pseudonym under any
// key. Load generators and tests use it to exercise the mediator, which
// only checks a pseudonym's form, without a pseudonym service.
func Synthetic(seed string) string {
	sum := sha256.Sum256([]byte("mediator-pseudonym-synthetic\n" + seed))
	return Format(sum[:])
}

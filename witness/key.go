package witness

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// algCosignatureV1 is the signed-note signature type of Ed25519
// cosignature/v1 keys (C2SP tlog-cosignature).
const algCosignatureV1 = 0x04

// keyHash is the signed-note key hash of a cosignature/v1 key named name:
// the first four bytes of SHA-256 over the name, a newline, the type byte
// and the public key.
func keyHash(name string, pub ed25519.PublicKey) uint32 {
	key := append([]byte{algCosignatureV1}, pub...)
	h := sha256.Sum256(append([]byte(name+"\n"), key...))
	return binary.BigEndian.Uint32(h[:4])
}

// VerifierKey returns the cosignature/v1 note verifier key of the witness
// named name whose Ed25519 public key is pub: what NewSigner returns for
// the seed of that key. Whoever knows a custodian's name and roster
// signing_key can so write the mediator's witnesses file without asking
// the custodian.
func VerifierKey(name string, pub ed25519.PublicKey) (string, error) {
	if len(pub) != ed25519.PublicKeySize {
		return "", fmt.Errorf("witness: a %d-byte Ed25519 public key is needed", ed25519.PublicKeySize)
	}
	key := append([]byte{algCosignatureV1}, pub...)
	vkey := fmt.Sprintf("%s+%08x+%s", name, keyHash(name, pub), base64.StdEncoding.EncodeToString(key))
	if _, err := NewVerifier(vkey); err != nil {
		return "", err
	}
	return vkey, nil
}

// NewSigner returns a cosignature/v1 signer named name over an Ed25519
// seed, and its verifier key (what logs and verifiers configure for this
// witness; VerifierKey of name and the seed's public key).
func NewSigner(name string, seed []byte) (note.Signer, string, error) {
	if len(seed) != ed25519.SeedSize {
		return nil, "", fmt.Errorf("witness: a %d-byte Ed25519 seed is needed", ed25519.SeedSize)
	}
	pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	vkey, err := VerifierKey(name, pub)
	if err != nil {
		return nil, "", err
	}
	hash := keyHash(name, pub)
	skey := fmt.Sprintf("PRIVATE+KEY+%s+%08x+%s", name, hash, base64.StdEncoding.EncodeToString(append([]byte{algCosignatureV1}, seed...)))
	s, err := fnote.NewSignerForCosignatureV1(skey)
	if err != nil {
		return nil, "", fmt.Errorf("witness: signer: %w", err)
	}
	if s.KeyHash() != hash {
		return nil, "", fmt.Errorf("witness: key hash %08x, the library computes %08x", hash, s.KeyHash())
	}
	return s, vkey, nil
}

// NewVerifier returns the verifier of a witness's cosignatures from its
// verifier key.
func NewVerifier(vkey string) (note.Verifier, error) {
	v, err := fnote.NewVerifierForCosignatureV1(vkey)
	if err != nil {
		return nil, fmt.Errorf("witness: verifier key %q: %w", vkey, err)
	}
	return v, nil
}

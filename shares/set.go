package shares

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/mediatorhq/mediator/seal"
)

// Custodian is one share holder as depositors know it: its name (its place
// in info strings and receipts), the HPKE key shares are sealed to, and the
// Ed25519 key that signs its receipts.
type Custodian struct {
	Name       string            `json:"name"`
	HPKEKey    seal.PublicKey    `json:"hpke_public_key"`
	SigningKey ed25519.PublicKey `json:"signing_key"`
}

// Set is who holds the shares of new deposits: share i goes to
// Custodians[i-1], and any Threshold of them recover a key.
type Set struct {
	Threshold  int         `json:"threshold"`
	Custodians []Custodian `json:"custodians"`
}

// setVersion names the canonical set format inside it.
const setVersion = "mediator-custodian-set-v1"

// Validate checks 2 ≤ threshold ≤ N ≤ 255, distinct valid names and usable
// keys.
func (s Set) Validate() error {
	n := len(s.Custodians)
	if s.Threshold < 2 || s.Threshold > n || n > 255 {
		return fmt.Errorf("shares: a custodian set needs 2 ≤ threshold (%d) ≤ custodians (%d) ≤ 255", s.Threshold, n)
	}
	seen := make(map[string]bool, n)
	for _, c := range s.Custodians {
		if !ValidID(c.Name) || seen[c.Name] {
			return fmt.Errorf("shares: custodian names must be distinct printable names of 1–%d bytes", MaxIDLen)
		}
		seen[c.Name] = true
		if err := c.HPKEKey.Validate(); err != nil {
			return fmt.Errorf("shares: custodian %s: %w", c.Name, err)
		}
		if len(c.SigningKey) != ed25519.PublicKeySize {
			return fmt.Errorf("shares: custodian %s: signing key must be a 32-byte Ed25519 public key", c.Name)
		}
	}
	return nil
}

// Index returns the 1-based place of custodian name, or 0.
func (s Set) Index(name string) int {
	for i, c := range s.Custodians {
		if c.Name == name {
			return i + 1
		}
	}
	return 0
}

// Digest returns "sha256:" and the hex SHA-256 of the set's canonical
// form (RFC 8785 JSON of its version, threshold and custodians in order).
// A depositor pins it: a set with another custodian, key, order or
// threshold has another digest.
func (s Set) Digest() (string, error) {
	raw, err := json.Marshal(struct {
		Version string `json:"v"`
		Set
	}{setVersion, s})
	if err != nil {
		return "", fmt.Errorf("shares: set digest: %w", err)
	}
	v := jsontext.Value(raw)
	if err := v.Canonicalize(); err != nil {
		return "", fmt.Errorf("shares: set digest: %w", err)
	}
	sum := sha256.Sum256(v)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// ErrSetMismatch: the custodian set offered is not the one pinned.
var ErrSetMismatch = errors.New("shares: the custodian set does not match the pinned digest")

// CheckPinned verifies s and that its digest is pinned.
func (s Set) CheckPinned(pinned string) error {
	if err := s.Validate(); err != nil {
		return err
	}
	d, err := s.Digest()
	if err != nil {
		return err
	}
	if d != pinned {
		return fmt.Errorf("%w: offered %s, pinned %s", ErrSetMismatch, d, pinned)
	}
	return nil
}

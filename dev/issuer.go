// Package dev runs the whole mediator on one machine for development: it
// brings up its servers (dev/servers), migrates and bootstraps them, keeps
// the dev instance's state, and issues dev bearer tokens. `mediator dev`
// is its command; the tests use its token issuer. The service's own
// packages never import it.
package dev

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// The dev issuer's names. A production deployment uses its own identity
// provider; this issuer only ever signs tokens for `mediator dev` and the
// tests.
const (
	IssuerName = "mediator-dev"
	Audience   = "mediator"

	devKeyFile  = "dev-issuer.jwk"
	devJWKSFile = "dev-jwks.json"

	// maxDevTTL bounds dev tokens so a forgotten one does not live forever.
	maxDevTTL = 24 * time.Hour
)

// Issuer signs bearer tokens for the dev instance with an Ed25519 key kept
// in its state directory; the identity package verifies them like any
// provider's, from the JWKS file it writes beside the key.
type Issuer struct {
	key jose.JSONWebKey
	now func() time.Time
}

// LoadOrCreateIssuer loads the dev issuer key from dir, creating it (mode
// 0600) and the matching public JWKS file if absent.
func LoadOrCreateIssuer(dir string) (*Issuer, error) {
	iss, err := LoadIssuer(dir)
	if err == nil {
		return iss, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("dev: generate dev key: %w", err)
	}
	sum := sha256.Sum256(priv.Public().(ed25519.PublicKey))
	key := jose.JSONWebKey{Key: priv, KeyID: base64.RawURLEncoding.EncodeToString(sum[:8]), Algorithm: string(jose.EdDSA), Use: "sig"}
	b, err := json.Marshal(key)
	if err != nil {
		return nil, fmt.Errorf("dev: encode dev key: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("dev: state dir: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, devKeyFile), b, 0o600); err != nil {
		return nil, err
	}
	iss = &Issuer{key: key, now: time.Now}
	pub, err := json.Marshal(iss.PublicKeySet())
	if err != nil {
		return nil, fmt.Errorf("dev: encode dev jwks: %w", err)
	}
	if err := writeFileAtomic(JWKSPath(dir), pub, 0o644); err != nil {
		return nil, err
	}
	return iss, nil
}

// LoadIssuer loads the dev issuer key that a dev instance created in dir.
// The error wraps os.ErrNotExist when there is none.
func LoadIssuer(dir string) (*Issuer, error) {
	b, err := os.ReadFile(filepath.Join(dir, devKeyFile))
	if err != nil {
		return nil, fmt.Errorf("dev: dev issuer key: %w", err)
	}
	var key jose.JSONWebKey
	if err := json.Unmarshal(b, &key); err != nil {
		return nil, fmt.Errorf("dev: dev issuer key: %w", err)
	}
	if _, ok := key.Key.(ed25519.PrivateKey); !ok {
		return nil, errors.New("dev: dev issuer key is not an Ed25519 private key")
	}
	return &Issuer{key: key, now: time.Now}, nil
}

// JWKSPath is the public JWKS file that a dev instance verifies tokens with.
func JWKSPath(dir string) string { return filepath.Join(dir, devJWKSFile) }

// PublicKeySet returns the JWKS holding the issuer's public key.
func (i *Issuer) PublicKeySet() *jose.JSONWebKeySet {
	return &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{i.key.Public()}}
}

// Issue returns a token for sub with roles, valid for ttl (at most 24 h).
func (i *Issuer) Issue(sub string, roles []string, ttl time.Duration) (string, error) {
	if sub == "" {
		return "", errors.New("dev: subject is required")
	}
	if ttl <= 0 || ttl > maxDevTTL {
		return "", fmt.Errorf("dev: ttl must be in (0, %s]", maxDevTTL)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: i.key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", fmt.Errorf("dev: signer: %w", err)
	}
	now := i.now()
	id := make([]byte, 12)
	if _, err := rand.Read(id); err != nil {
		return "", fmt.Errorf("dev: token id: %w", err)
	}
	if roles == nil {
		roles = []string{}
	}
	return jwt.Signed(signer).Claims(jwt.Claims{
		Issuer:    IssuerName,
		Audience:  jwt.Audience{Audience},
		Subject:   sub,
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		Expiry:    jwt.NewNumericDate(now.Add(ttl)),
		ID:        base64.RawURLEncoding.EncodeToString(id),
	}).Claims(struct {
		Roles []string `json:"roles"`
	}{roles}).Serialize()
}

func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("dev: write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("dev: write %s: %w", path, err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("dev: write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("dev: write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("dev: write %s: %w", path, err)
	}
	return nil
}

package identity

import (
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/mediatorhq/mediator/dev"
)

// newTestIssuer returns a dev issuer, a verifier that trusts it, and its
// private key (read from the issuer's key file, for forging attack tokens).
func newTestIssuer(t *testing.T) (*dev.Issuer, *Verifier, jose.JSONWebKey) {
	t.Helper()
	dir := t.TempDir()
	iss, err := dev.LoadOrCreateIssuer(dir)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := NewFileKeys(dev.JWKSPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(dev.IssuerName, dev.Audience, keys)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "dev-issuer.jwk"))
	if err != nil {
		t.Fatal(err)
	}
	var key jose.JSONWebKey
	if err := json.Unmarshal(b, &key); err != nil {
		t.Fatal(err)
	}
	return iss, v, key
}

// sign builds a token with arbitrary claims and header, for attack cases.
func sign(t *testing.T, key any, kid string, alg jose.SignatureAlgorithm, c jwt.Claims, roles []string) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(c).Claims(claims{Roles: roles}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestVerifyAcceptsDevToken(t *testing.T) {
	iss, v, _ := newTestIssuer(t)
	tok, err := iss.Issue("alice", []string{"officer", "auditor"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if p.Subject != "alice" || !p.HasRole("officer") || !p.HasRole("auditor") || p.HasRole("admin") {
		t.Fatalf("principal = %+v", p)
	}
	// A token from another dev instance's key is refused.
	again, err := dev.LoadOrCreateIssuer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tok2, _ := again.Issue("bob", nil, time.Minute)
	if _, err := v.Verify(context.Background(), tok2); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("token from another dev key accepted: %v", err)
	}
}

func TestVerifyRejects(t *testing.T) {
	_, v, key := newTestIssuer(t)
	priv := key.Key.(ed25519.PrivateKey)
	pub := priv.Public().(ed25519.PublicKey)
	kid := key.KeyID
	now := time.Now()
	good := jwt.Claims{Issuer: dev.IssuerName, Audience: jwt.Audience{dev.Audience}, Subject: "mallory",
		Expiry: jwt.NewNumericDate(now.Add(time.Hour)), NotBefore: jwt.NewNumericDate(now.Add(-time.Minute))}
	with := func(f func(*jwt.Claims)) jwt.Claims { c := good; f(&c); return c }

	_, otherPriv, _ := ed25519.GenerateKey(rand.Reader)

	cases := map[string]string{
		"empty":                           "",
		"garbage":                         "not.a.token",
		"wrong issuer":                    sign(t, priv, kid, jose.EdDSA, with(func(c *jwt.Claims) { c.Issuer = "evil" }), []string{"admin"}),
		"wrong audience":                  sign(t, priv, kid, jose.EdDSA, with(func(c *jwt.Claims) { c.Audience = jwt.Audience{"other"} }), []string{"admin"}),
		"expired":                         sign(t, priv, kid, jose.EdDSA, with(func(c *jwt.Claims) { c.Expiry = jwt.NewNumericDate(now.Add(-time.Hour)) }), []string{"admin"}),
		"not yet valid":                   sign(t, priv, kid, jose.EdDSA, with(func(c *jwt.Claims) { c.NotBefore = jwt.NewNumericDate(now.Add(time.Hour)) }), []string{"admin"}),
		"no expiry":                       sign(t, priv, kid, jose.EdDSA, with(func(c *jwt.Claims) { c.Expiry = nil }), []string{"admin"}),
		"no subject":                      sign(t, priv, kid, jose.EdDSA, with(func(c *jwt.Claims) { c.Subject = "" }), []string{"admin"}),
		"unknown kid":                     sign(t, priv, "nope", jose.EdDSA, good, []string{"admin"}),
		"no kid":                          sign(t, priv, "", jose.EdDSA, good, []string{"admin"}),
		"other key":                       sign(t, otherPriv, kid, jose.EdDSA, good, []string{"admin"}),
		"alg none":                        unsignedToken(t, kid, good),
		"hs256 with public key as secret": hmacToken(t, kid, []byte(pub), good),
		"oversized":                       strings.Repeat("a", maxTokenBytes+1),
	}
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) {
			p, err := v.Verify(context.Background(), tok)
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("accepted (%+v) or wrong error: %v", p, err)
			}
			if tok != "" && strings.Contains(err.Error(), tok) {
				t.Fatal("error text contains the token")
			}
		})
	}
}

func unsignedToken(t *testing.T, kid string, c jwt.Claims) string {
	t.Helper()
	h, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT", "kid": kid})
	body, _ := json.Marshal(struct {
		jwt.Claims
		Roles []string `json:"roles"`
	}{c, []string{"admin"}})
	enc := base64.RawURLEncoding.EncodeToString
	return enc(h) + "." + enc(body) + "."
}

func hmacToken(t *testing.T, kid string, secret []byte, c jwt.Claims) string {
	t.Helper()
	h, _ := json.Marshal(map[string]string{"alg": "HS256", "typ": "JWT", "kid": kid})
	body, _ := json.Marshal(struct {
		jwt.Claims
		Roles []string `json:"roles"`
	}{c, []string{"admin"}})
	enc := base64.RawURLEncoding.EncodeToString
	signing := enc(h) + "." + enc(body)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(signing))
	return signing + "." + enc(m.Sum(nil))
}

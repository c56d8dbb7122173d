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
)

func newTestIssuer(t *testing.T) (*Issuer, *Verifier) {
	t.Helper()
	dir := t.TempDir()
	iss, err := LoadOrCreateDevIssuer(dir)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := NewFileKeys(DevJWKSPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(DevIssuer, DevAudience, keys)
	if err != nil {
		t.Fatal(err)
	}
	return iss, v
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
	iss, v := newTestIssuer(t)
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
	again, err := LoadOrCreateDevIssuer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tok2, _ := again.Issue("bob", nil, time.Minute)
	if _, err := v.Verify(context.Background(), tok2); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("token from another dev key accepted: %v", err)
	}
}

func TestVerifyRejects(t *testing.T) {
	iss, v := newTestIssuer(t)
	priv := iss.key.Key.(ed25519.PrivateKey)
	pub := priv.Public().(ed25519.PublicKey)
	kid := iss.key.KeyID
	now := time.Now()
	good := jwt.Claims{Issuer: DevIssuer, Audience: jwt.Audience{DevAudience}, Subject: "mallory",
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

func TestIssueBounds(t *testing.T) {
	iss, _ := newTestIssuer(t)
	if _, err := iss.Issue("", nil, time.Hour); err == nil {
		t.Error("empty subject issued")
	}
	if _, err := iss.Issue("a", nil, 48*time.Hour); err == nil {
		t.Error("ttl above the cap issued")
	}
}

func TestDevKeyFileIsPrivate(t *testing.T) {
	dir := t.TempDir()
	first, err := LoadOrCreateDevIssuer(dir)
	if err != nil {
		t.Fatal(err)
	}
	second, err := LoadDevIssuer(dir)
	if err != nil || second.key.KeyID != first.key.KeyID {
		t.Fatalf("dev key not reloaded from the state directory: %v", err)
	}
	st, err := os.Stat(filepath.Join(dir, devKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("dev key mode = %v", st.Mode().Perm())
	}
	if _, err := NewFileKeys(filepath.Join(dir, devKeyFile)); err == nil {
		t.Fatal("a JWKS holding a private key was accepted")
	}
}

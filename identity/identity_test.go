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

// swapKeys is a KeySource whose set a test replaces.
type swapKeys struct{ set *jose.JSONWebKeySet }

func (s *swapKeys) KeySet(context.Context) (*jose.JSONWebKeySet, error) { return s.set, nil }

// TestRememberedTokensFollowTheKeysAndTheClock: a token that verified is
// remembered, but only while the key source returns the same set and
// until the token expires; a remembered token says nothing of another
// one, even one that differs from it in its signature alone.
func TestRememberedTokensFollowTheKeysAndTheClock(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	jwk := jose.JSONWebKey{Key: pub, KeyID: "k1", Algorithm: string(jose.EdDSA), Use: "sig"}
	keys := &swapKeys{set: &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk}}}
	v, err := NewVerifier(dev.IssuerName, dev.Audience, keys)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	v.now = func() time.Time { return now }
	exp := now.Add(time.Hour)
	tok := sign(t, priv, "k1", jose.EdDSA, jwt.Claims{Issuer: dev.IssuerName, Audience: jwt.Audience{dev.Audience}, Subject: "alice",
		Expiry: jwt.NewNumericDate(exp)}, []string{"auditor"})
	check := func(what string, tok string, want bool) {
		t.Helper()
		p, err := v.Verify(context.Background(), tok)
		if got := err == nil && p.Subject == "alice" && p.HasRole("auditor"); got != want {
			t.Fatalf("%s: accepted %v (%+v, %v), want %v", what, got, p, err, want)
		}
	}
	check("first use", tok, true)
	check("remembered", tok, true)
	// One character inside the signature changed: another token (not the
	// last, whose low bits are padding a lenient decoder ignores).
	i := len(tok) - 10
	other := tok[:i] + string("AB"[btoi(tok[i] == 'A')]) + tok[i+1:]
	check("a token differing in its signature", other, false)

	now = exp.Add(clockSkew + time.Second)
	check("past its expiry", tok, false)
	now = exp.Add(-time.Minute)

	keys.set = &jose.JSONWebKeySet{} // the key was rotated out
	check("after its key left the set", tok, false)
	keys.set = &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk}}
	check("with the key back, checked again", tok, true)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// BenchmarkVerifyRepeatedToken is one caller's token on every request, as
// a tile reader or a gateway sends it.
func BenchmarkVerifyRepeatedToken(b *testing.B) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	keys := &swapKeys{set: &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: pub, KeyID: "k1", Algorithm: string(jose.EdDSA), Use: "sig"}}}}
	v, _ := NewVerifier(dev.IssuerName, dev.Audience, keys)
	s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: jose.JSONWebKey{Key: priv, KeyID: "k1"}}, (&jose.SignerOptions{}).WithType("JWT"))
	tok, _ := jwt.Signed(s).Claims(jwt.Claims{Issuer: dev.IssuerName, Audience: jwt.Audience{dev.Audience}, Subject: "reader",
		Expiry: jwt.NewNumericDate(time.Now().Add(time.Hour))}).Claims(claims{Roles: []string{"auditor"}}).Serialize()
	ctx := context.Background()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// Package identity verifies the bearer JWTs that callers present and issues
// tokens for local development.
//
// A token is accepted only when it is signed with an asymmetric algorithm the
// verifier allows (never "none", never an HMAC), by a key in the configured
// JWKS selected by the token's kid, and when its issuer, audience, expiry and
// not-before claims hold. The roles claim lists the caller's roles; what each
// role may do is decided elsewhere, by policy.
package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// allowedAlgorithms are the only signature algorithms a token may use.
// Symmetric algorithms are excluded so that a public key can never be used as
// an HMAC secret, and "none" is never accepted.
var allowedAlgorithms = []jose.SignatureAlgorithm{
	jose.EdDSA, jose.ES256, jose.ES384, jose.RS256, jose.PS256,
}

// clockSkew is how far the issuer's clock may be from ours when checking
// exp and nbf.
const clockSkew = 30 * time.Second

// maxTokenBytes bounds the token we are willing to parse.
const maxTokenBytes = 8 << 10

// ErrInvalidToken is wrapped by every verification failure. Its text and the
// texts wrapped in it never contain the token.
var ErrInvalidToken = errors.New("invalid token")

// Principal is a verified caller.
type Principal struct {
	Subject string   `json:"subject"`
	Roles   []string `json:"roles"`
}

// HasRole reports whether p holds role.
func (p Principal) HasRole(role string) bool {
	for _, r := range p.Roles {
		if r == role {
			return true
		}
	}
	return false
}

// claims are the token's claims beyond the registered ones.
type claims struct {
	Roles []string `json:"roles"`
}

// KeySource supplies the JWKS that token signatures are checked against.
type KeySource interface {
	KeySet(ctx context.Context) (*jose.JSONWebKeySet, error)
}

// Verifier checks bearer tokens. It is safe for concurrent use.
type Verifier struct {
	issuer   string
	audience string
	keys     KeySource
	now      func() time.Time
}

// NewVerifier returns a Verifier for tokens from issuer intended for
// audience, signed by keys from src. Issuer and audience are required.
func NewVerifier(issuer, audience string, src KeySource) (*Verifier, error) {
	if issuer == "" || audience == "" {
		return nil, errors.New("identity: issuer and audience are required")
	}
	if src == nil {
		return nil, errors.New("identity: a JWKS source is required")
	}
	return &Verifier{issuer: issuer, audience: audience, keys: src, now: time.Now}, nil
}

// Verify parses and checks raw, returning the caller it identifies. Every
// failure wraps ErrInvalidToken.
func (v *Verifier) Verify(ctx context.Context, raw string) (Principal, error) {
	if raw == "" || len(raw) > maxTokenBytes {
		return Principal{}, fmt.Errorf("%w: missing or oversized", ErrInvalidToken)
	}
	tok, err := jwt.ParseSigned(raw, allowedAlgorithms)
	if err != nil {
		return Principal{}, fmt.Errorf("%w: malformed or disallowed algorithm", ErrInvalidToken)
	}
	if len(tok.Headers) != 1 {
		return Principal{}, fmt.Errorf("%w: expected one signature", ErrInvalidToken)
	}
	kid := tok.Headers[0].KeyID
	if kid == "" {
		return Principal{}, fmt.Errorf("%w: no kid", ErrInvalidToken)
	}
	set, err := v.keys.KeySet(ctx)
	if err != nil {
		return Principal{}, fmt.Errorf("identity: load keys: %w", err)
	}
	candidates := set.Key(kid)
	if len(candidates) == 0 {
		return Principal{}, fmt.Errorf("%w: unknown kid", ErrInvalidToken)
	}
	var (
		reg   jwt.Claims
		extra claims
		ok    bool
	)
	for _, k := range candidates {
		if !k.IsPublic() {
			continue
		}
		if k.Algorithm != "" && k.Algorithm != tok.Headers[0].Algorithm {
			continue
		}
		if err := tok.Claims(k.Key, &reg, &extra); err == nil {
			ok = true
			break
		}
	}
	if !ok {
		return Principal{}, fmt.Errorf("%w: bad signature", ErrInvalidToken)
	}
	if err := reg.ValidateWithLeeway(jwt.Expected{
		Issuer:      v.issuer,
		AnyAudience: jwt.Audience{v.audience},
		Time:        v.now(),
	}, clockSkew); err != nil {
		return Principal{}, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	if reg.Expiry == nil {
		return Principal{}, fmt.Errorf("%w: no exp", ErrInvalidToken)
	}
	if reg.Subject == "" {
		return Principal{}, fmt.Errorf("%w: no sub", ErrInvalidToken)
	}
	roles := extra.Roles
	if roles == nil {
		roles = []string{}
	}
	return Principal{Subject: reg.Subject, Roles: roles}, nil
}

// FileKeys reads a JWKS from a file and reads it again when its modification
// time changes, so keys can be rotated without a restart.
type FileKeys struct {
	path string

	mu      sync.Mutex // guards the cache below
	modTime time.Time
	set     *jose.JSONWebKeySet
}

// NewFileKeys returns a KeySource for the JWKS file at path, reading it once
// now so that a bad file is reported at start-up.
func NewFileKeys(path string) (*FileKeys, error) {
	f := &FileKeys{path: path}
	if _, err := f.KeySet(context.Background()); err != nil {
		return nil, err
	}
	return f, nil
}

// KeySet returns the file's keys.
func (f *FileKeys) KeySet(context.Context) (*jose.JSONWebKeySet, error) {
	st, err := os.Stat(f.path)
	if err != nil {
		return nil, fmt.Errorf("identity: jwks file: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.set != nil && st.ModTime().Equal(f.modTime) {
		return f.set, nil
	}
	b, err := os.ReadFile(f.path)
	if err != nil {
		return nil, fmt.Errorf("identity: jwks file: %w", err)
	}
	set, err := parseKeySet(b)
	if err != nil {
		return nil, fmt.Errorf("identity: jwks file %s: %w", f.path, err)
	}
	f.set, f.modTime = set, st.ModTime()
	return set, nil
}

// URLKeys fetches a JWKS over HTTP(S) and caches it for a refresh interval.
type URLKeys struct {
	url     string
	client  *http.Client
	refresh time.Duration

	mu      sync.Mutex // serialises fetches and guards the cache
	fetched time.Time
	set     *jose.JSONWebKeySet
}

// jwksRefresh is how long a fetched JWKS is used before it is fetched again;
// short enough that a rotated key is picked up within minutes.
const jwksRefresh = 5 * time.Minute

// NewURLKeys returns a KeySource for the JWKS at url.
func NewURLKeys(url string) *URLKeys {
	return &URLKeys{url: url, client: &http.Client{Timeout: 10 * time.Second}, refresh: jwksRefresh}
}

// KeySet returns the cached keys, fetching them when stale. If a refresh
// fails the last good set is kept.
func (u *URLKeys) KeySet(ctx context.Context) (*jose.JSONWebKeySet, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.set != nil && time.Since(u.fetched) < u.refresh {
		return u.set, nil
	}
	set, err := u.fetch(ctx)
	if err != nil {
		if u.set != nil {
			return u.set, nil
		}
		return nil, err
	}
	u.set, u.fetched = set, time.Now()
	return set, nil
}

func (u *URLKeys) fetch(ctx context.Context) (*jose.JSONWebKeySet, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.url, nil)
	if err != nil {
		return nil, fmt.Errorf("identity: jwks url: %w", err)
	}
	resp, err := u.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("identity: fetch jwks: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("identity: fetch jwks: status %d", resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("identity: fetch jwks: %w", err)
	}
	return parseKeySet(b)
}

// OpenKeySource returns a FileKeys or URLKeys for location, chosen by
// whether it starts with http:// or https://.
func OpenKeySource(location string) (KeySource, error) {
	if strings.HasPrefix(location, "https://") || strings.HasPrefix(location, "http://") {
		return NewURLKeys(location), nil
	}
	return NewFileKeys(location)
}

// parseKeySet decodes a JWKS and refuses one that holds private or
// symmetric keys: a verifier must only ever see public keys.
func parseKeySet(b []byte) (*jose.JSONWebKeySet, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("parse jwks: %w", err)
	}
	if len(set.Keys) == 0 {
		return nil, errors.New("jwks has no keys")
	}
	for _, k := range set.Keys {
		if !k.IsPublic() {
			return nil, fmt.Errorf("jwks key %q is not a public key", k.KeyID)
		}
	}
	return &set, nil
}

package vaultclient

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"golang.org/x/mod/sumdb/note"

	"github.com/mediatorhq/mediator/redact"
)

// TransitSigner is a note.Signer whose Ed25519 private key never leaves
// Vault: each signature is one call to Transit's sign endpoint with the key
// version the verifier key was made from.
type TransitSigner struct {
	client   *vaultapi.Client
	path     string // <mount>/sign/<key>
	version  int
	name     string
	hash     uint32
	verifier string
	past     []string // verifier keys of earlier versions
}

// signTimeout bounds one signing call; note.Signer has no context.
const signTimeout = 10 * time.Second

// NewTransitSigner reads the public half of the Transit ed25519 key
// mount/key (its latest version) and returns a signer for notes named name.
func NewTransitSigner(ctx context.Context, client *vaultapi.Client, mount, key, name string) (*TransitSigner, error) {
	sec, err := client.Logical().ReadWithContext(ctx, mount+"/keys/"+key)
	if err != nil {
		return nil, fmt.Errorf("vaultclient: read transit key %s: %w", key, err)
	}
	if sec == nil || sec.Data == nil {
		return nil, fmt.Errorf("vaultclient: transit key %s/%s does not exist (run the Vault bootstrap)", mount, key)
	}
	if t, _ := sec.Data["type"].(string); t != "ed25519" {
		return nil, fmt.Errorf("vaultclient: transit key %s is %q, want ed25519", key, t)
	}
	version, err := intField(sec.Data["latest_version"])
	if err != nil {
		return nil, fmt.Errorf("vaultclient: transit key %s: latest_version: %w", key, err)
	}
	keys, _ := sec.Data["keys"].(map[string]any)
	kv, _ := keys[strconv.Itoa(version)].(map[string]any)
	pubB64, _ := kv["public_key"].(string)
	pub, err := base64.StdEncoding.DecodeString(pubB64)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("vaultclient: transit key %s has no usable public key", key)
	}
	vkey, err := note.NewEd25519VerifierKey(name, ed25519.PublicKey(pub))
	if err != nil {
		return nil, fmt.Errorf("vaultclient: verifier key: %w", err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("vaultclient: verifier key: %w", err)
	}
	var past []string
	for ver := 1; ver < version; ver++ {
		kv, _ := keys[strconv.Itoa(ver)].(map[string]any)
		b64, _ := kv["public_key"].(string)
		if old, err := base64.StdEncoding.DecodeString(b64); err == nil && len(old) == ed25519.PublicKeySize {
			if vk, err := note.NewEd25519VerifierKey(name, ed25519.PublicKey(old)); err == nil {
				past = append(past, vk)
			}
		}
	}
	return &TransitSigner{client: client, path: mount + "/sign/" + key, version: version, name: name, hash: v.KeyHash(), verifier: vkey, past: past}, nil
}

// PastVerifierKeys returns the verifier keys of the key's earlier versions
// (those before a rotation), which checked the checkpoints signed before.
func (s *TransitSigner) PastVerifierKeys() []string { return s.past }

// Name implements note.Signer.
func (s *TransitSigner) Name() string { return s.name }

// KeyHash implements note.Signer.
func (s *TransitSigner) KeyHash() uint32 { return s.hash }

// VerifierKey returns the note verifier key ("name+hash+base64") that checks
// this signer's signatures.
func (s *TransitSigner) VerifierKey() string { return s.verifier }

// Sign implements note.Signer: a pure Ed25519 signature over msg by Vault.
func (s *TransitSigner) Sign(msg []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), signTimeout)
	defer cancel()
	sec, err := s.client.Logical().WriteWithContext(ctx, s.path, map[string]any{
		"input":       base64.StdEncoding.EncodeToString(msg),
		"key_version": s.version,
	})
	if err != nil {
		return nil, fmt.Errorf("vaultclient: transit sign: %w", err)
	}
	sig, _ := sec.Data["signature"].(string)
	prefix := "vault:v" + strconv.Itoa(s.version) + ":"
	if !strings.HasPrefix(sig, prefix) {
		return nil, errors.New("vaultclient: transit sign: unexpected signature format")
	}
	raw, err := base64.StdEncoding.DecodeString(sig[len(prefix):])
	if err != nil || len(raw) != ed25519.SignatureSize {
		return nil, errors.New("vaultclient: transit sign: bad signature encoding")
	}
	return raw, nil
}

// PseudonymKeys serves the pseudonymization HMAC key, created in and
// exported from an exportable Transit key, cached in memory. A rotated
// Transit key is picked up at the next refresh. When Vault cannot be reached
// the cached key keeps serving for up to maxStale, then Current fails, so
// ingest fails closed rather than storing what it cannot pseudonymize.
type PseudonymKeys struct {
	client   *vaultapi.Client
	path     string // <mount>/export/hmac-key/<key>/latest
	refresh  time.Duration
	maxStale time.Duration

	mu         sync.Mutex // guards the fields below; never held across a Vault call
	cur        redact.PseudonymKey
	fetched    time.Time
	refreshing bool // a background refresh is running
}

// Cache lifetimes for the pseudonym key.
const (
	pseudonymRefresh  = 5 * time.Minute
	pseudonymMaxStale = time.Hour
)

// NewPseudonymKeys returns a cache for the HMAC key of the Transit key
// mount/key.
func NewPseudonymKeys(client *vaultapi.Client, mount, key string) *PseudonymKeys {
	return &PseudonymKeys{client: client, path: mount + "/export/hmac-key/" + key + "/latest",
		refresh: pseudonymRefresh, maxStale: pseudonymMaxStale}
}

// WithMaxAge sets how long the cached key keeps serving without Vault
// (default 1 h); refreshes come at most every half of it. It returns p.
func (p *PseudonymKeys) WithMaxAge(d time.Duration) *PseudonymKeys {
	if d > 0 {
		p.mu.Lock()
		p.maxStale = d
		p.refresh = min(pseudonymRefresh, d/2)
		p.mu.Unlock()
	}
	return p
}

// Current returns the key to pseudonymize with now. Ingest calls it on
// every request, so it never waits for Vault while it holds a usable key: a
// due refresh runs in the background and the cached key serves meanwhile.
// Only with no key at all (first use, or past maxStale) does it fetch
// inline.
func (p *PseudonymKeys) Current(ctx context.Context) (redact.PseudonymKey, error) {
	p.mu.Lock()
	age := time.Since(p.fetched)
	cur := p.cur
	usable := cur.Key != nil && age < p.maxStale
	if usable && (age < p.refresh || p.refreshing) {
		p.mu.Unlock()
		return cur, nil
	}
	if usable {
		p.refreshing = true
		p.mu.Unlock()
		go p.refreshInBackground()
		return cur, nil
	}
	p.mu.Unlock()
	k, err := p.fetch(ctx)
	if err != nil {
		return redact.PseudonymKey{}, err
	}
	p.store(k)
	return k, nil
}

// refreshTimeout bounds a background refresh.
const refreshTimeout = 10 * time.Second

func (p *PseudonymKeys) refreshInBackground() {
	ctx, cancel := context.WithTimeout(context.Background(), refreshTimeout)
	defer cancel()
	k, err := p.fetch(ctx)
	if err != nil {
		// Keep serving the cached key; Current fetches inline once it is
		// older than maxStale, and fails closed if Vault is still away.
		p.mu.Lock()
		p.refreshing = false
		p.mu.Unlock()
		return
	}
	p.store(k)
}

func (p *PseudonymKeys) store(k redact.PseudonymKey) {
	p.mu.Lock()
	defer p.mu.Unlock()
	// The replaced key is not zeroed: a request that got it may still be
	// using it.
	p.cur, p.fetched, p.refreshing = k, time.Now(), false
}

func (p *PseudonymKeys) fetch(ctx context.Context) (redact.PseudonymKey, error) {
	sec, err := p.client.Logical().ReadWithContext(ctx, p.path)
	if err != nil {
		return redact.PseudonymKey{}, fmt.Errorf("vaultclient: pseudonym key: %w", err)
	}
	if sec == nil || sec.Data == nil {
		return redact.PseudonymKey{}, errors.New("vaultclient: pseudonym key: not found (run the Vault bootstrap)")
	}
	keys, _ := sec.Data["keys"].(map[string]any)
	if len(keys) != 1 {
		return redact.PseudonymKey{}, errors.New("vaultclient: pseudonym key: expected exactly one version")
	}
	for v, k := range keys {
		version, err := strconv.Atoi(v)
		s, _ := k.(string)
		raw, derr := base64.StdEncoding.DecodeString(s)
		if err != nil || derr != nil || len(raw) < 32 {
			return redact.PseudonymKey{}, errors.New("vaultclient: pseudonym key: malformed export")
		}
		return redact.PseudonymKey{Version: version, Key: raw}, nil
	}
	panic("vaultclient: PseudonymKeys.fetch: no key after checking there is one")
}

func intField(v any) (int, error) {
	switch n := v.(type) {
	case json.Number:
		i, err := n.Int64()
		return int(i), err
	case float64:
		return int(n), nil
	case int:
		return n, nil
	}
	return 0, fmt.Errorf("not a number: %T", v)
}

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
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"golang.org/x/mod/sumdb/note"
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

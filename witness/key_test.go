package witness

import (
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

// TestVerifierKeyIsTheSignersKey: the verifier key derived from a name
// and an Ed25519 public key is exactly the one NewSigner gives for that
// key's seed, and it verifies the signer's cosignatures; the same key
// under another name is another verifier key; a key of the wrong size is
// refused.
func TestVerifierKeyIsTheSignersKey(t *testing.T) {
	for _, name := range []string{"custodian-1", "acme-legal", "witness.example/w1"} {
		seed := make([]byte, ed25519.SeedSize)
		rand.Read(seed)
		signer, want, err := NewSigner(name, seed)
		if err != nil {
			t.Fatal(err)
		}
		pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
		got, err := VerifierKey(name, pub)
		if err != nil || got != want {
			t.Fatalf("%s: VerifierKey %q %v, NewSigner %q", name, got, err, want)
		}
		v, err := NewVerifier(got)
		if err != nil || v.Name() != name || v.KeyHash() != signer.KeyHash() {
			t.Fatalf("%s: verifier %v", name, err)
		}
		msg := "mediator/audit\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
		signed, err := note.Sign(&note.Note{Text: msg}, signer)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := note.Open(signed, note.VerifierList(v)); err != nil {
			t.Fatalf("%s: the derived key does not verify the signer's cosignature: %v", name, err)
		}
		other, err := VerifierKey(name+"-x", pub)
		if err != nil || other == got || !strings.HasPrefix(other, name+"-x+") {
			t.Fatalf("another name, the same key: %q %v", other, err)
		}
	}
	if _, err := VerifierKey("custodian-1", make([]byte, 31)); err == nil {
		t.Fatal("a 31-byte key was accepted")
	}
}

package audit

import (
	"crypto/rand"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

// TestParseCheckpointKey: the verifier key derived from a note signer key
// is the one note.GenerateKey made with it, for keys whose base64 data
// contains '+', and a key named for another origin is refused.
func TestParseCheckpointKey(t *testing.T) {
	for range 50 {
		skey, vkey, err := note.GenerateKey(rand.Reader, "mediator/audit")
		if err != nil {
			t.Fatal(err)
		}
		k, err := ParseCheckpointKey(skey+"\n", "mediator/audit")
		if err != nil {
			t.Fatal(err)
		}
		if k.VerifierKey() != vkey || k.Name() != "mediator/audit" {
			t.Fatalf("verifier key %q, want %q", k.VerifierKey(), vkey)
		}
	}
	skey, _, _ := note.GenerateKey(rand.Reader, "other")
	if _, err := ParseCheckpointKey(skey, "mediator/audit"); err == nil {
		t.Fatal("a key named for another origin was accepted")
	}
	if _, err := ParseCheckpointKey("PRIVATE+KEY+mediator/audit+00000000+AQID", "mediator/audit"); err == nil {
		t.Fatal("a malformed key was accepted")
	}
}

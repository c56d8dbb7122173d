package approval

import (
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"
)

// TestRevocationSignatureBindsEveryField: a revocation signature verifies
// only for the request id and digest it was made over, with the key that
// made it; it is never the request's own signature, an approval or a
// hold statement, and neither of those is a revocation.
func TestRevocationSignatureBindsEveryField(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	otherPub, _, _ := ed25519.GenerateKey(rand.Reader)
	const id = "7d1c3f1e-0d7e-4c36-9d1b-6f1f7b2c9a10"
	digest := "sha256:" + strings.Repeat("ab", 32)
	sig := SignRevocation(priv, id, digest)
	if !VerifyRevocation(pub, id, digest, sig) {
		t.Fatal("a revocation signature does not verify")
	}
	if got := string(RevocationMessage(id, digest)); got != "mediator-request-revocation-v1\n"+id+"\n"+digest+"\n" {
		t.Errorf("the message is %q", got)
	}
	for name, args := range map[string][2]string{
		"another request":           {"7d1c3f1e-0d7e-4c36-9d1b-6f1f7b2c9a11", digest},
		"another digest":            {id, "sha256:" + strings.Repeat("cd", 32)},
		"the fields run together":   {id + "\n" + digest, ""},
		"the id and digest swapped": {digest, id},
	} {
		if VerifyRevocation(pub, args[0], args[1], sig) {
			t.Errorf("the revocation signature verifies for %s", name)
		}
	}
	if VerifyRevocation(otherPub, id, digest, sig) || VerifyRevocation(pub, id, digest, sig[:10]) || VerifyRevocation(pub[:10], id, digest, sig) {
		t.Error("a revocation verifies with another key, or a short signature or key verifies")
	}
	// No other signature of the officer's is a revocation, nor the reverse.
	if VerifyRevocation(pub, id, digest, SignRequest(priv, digest)) || VerifyRequest(pub, digest, sig) {
		t.Error("the request's signature and a revocation are interchangeable")
	}
	if VerifyRevocation(pub, id, digest, ed25519.Sign(priv, Message(id, digest, Deny, "olga"))) || Verify(pub, id, digest, Deny, "olga", sig) {
		t.Error("a deny vote and a revocation are interchangeable")
	}
	if VerifyHold(pub, id, digest, HoldPlace, "olga", sig) {
		t.Error("a revocation verifies as a hold statement")
	}
}

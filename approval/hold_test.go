package approval

import (
	"crypto/ed25519"
	"crypto/rand"
	"testing"
)

// TestHoldSignatureBindsEveryField: a hold signature verifies only for
// the hold, conversation, action and signer it was made over, and never
// as an approval of anything.
func TestHoldSignatureBindsEveryField(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	const id = "7d1c3f1e-0d7e-4c36-9d1b-6f1f7b2c9a10"
	sig := SignHold(priv, id, "conv-a", HoldLift, "lena")
	if !VerifyHold(pub, id, "conv-a", HoldLift, "lena", sig) {
		t.Fatal("a lift signature does not verify")
	}
	for name, args := range map[string][4]string{
		"another hold":         {"7d1c3f1e-0d7e-4c36-9d1b-6f1f7b2c9a11", "conv-a", HoldLift, "lena"},
		"another conversation": {id, "conv-b", HoldLift, "lena"},
		"a placement":          {id, "conv-a", HoldPlace, "lena"},
		"another signer":       {id, "conv-a", HoldLift, "sam"},
	} {
		if VerifyHold(pub, args[0], args[1], args[2], args[3], sig) {
			t.Errorf("the lift signature verifies for %s", name)
		}
	}
	if Verify(pub, id, "conv-a", Approve, "lena", sig) || VerifyHold(pub, id, "conv-a", HoldLift, "lena", sig[:10]) {
		t.Error("a hold signature verifies as an approval, or a short one as a hold")
	}
}

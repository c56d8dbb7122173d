package approval

import "crypto/ed25519"

// The two actions a hold statement names.
const (
	HoldPlace = "place"
	HoldLift  = "lift"
)

// HoldMessageFormat describes HoldMessage for people: a signer's tool
// shows exactly what a hold signature covers.
const HoldMessageFormat = `"mediator-hold-v1\n" + hold id + "\n" + conversation id + "\n" + action + "\n" + signer id + "\n"`

// HoldMessage is exactly what a roster member signs with Ed25519 to place
// (HoldPlace) or lift (HoldLift) a legal hold (HoldMessageFormat). Binding
// all four means a signature counts for one action by one person on one
// hold of one conversation, and nothing else; the prefix keeps it apart
// from every approval and request signature.
func HoldMessage(holdID, conversationID, action, signerID string) []byte {
	return []byte("mediator-hold-v1\n" + holdID + "\n" + conversationID + "\n" + action + "\n" + signerID + "\n")
}

// SignHold is priv's signature over HoldMessage.
func SignHold(priv ed25519.PrivateKey, holdID, conversationID, action, signerID string) []byte {
	return ed25519.Sign(priv, HoldMessage(holdID, conversationID, action, signerID))
}

// VerifyHold reports whether sig is pub's Ed25519 signature over
// HoldMessage(holdID, conversationID, action, signerID). Malformed keys
// and signatures are simply not valid.
func VerifyHold(pub ed25519.PublicKey, holdID, conversationID, action, signerID string, sig []byte) bool {
	if len(pub) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize {
		return false
	}
	return ed25519.Verify(pub, HoldMessage(holdID, conversationID, action, signerID), sig)
}

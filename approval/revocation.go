package approval

import "crypto/ed25519"

// RevocationMessageFormat describes RevocationMessage for people: the
// officer's tool shows exactly what a revocation signature covers.
const RevocationMessageFormat = `"mediator-request-revocation-v1\n" + request id + "\n" + digest + "\n"`

// RevocationMessage is exactly what the filing officer signs with Ed25519
// to withdraw their request (RevocationMessageFormat). The digest covers
// the whole canonical request, its requester included, so a signature
// withdraws one request as filed and is made only with its officer's key;
// the prefix keeps it apart from the request's own signature
// (RequestMessage), every approval and every hold statement.
func RevocationMessage(requestID, digest string) []byte {
	return []byte("mediator-request-revocation-v1\n" + requestID + "\n" + digest + "\n")
}

// SignRevocation is the officer's signature over RevocationMessage.
func SignRevocation(priv ed25519.PrivateKey, requestID, digest string) []byte {
	return ed25519.Sign(priv, RevocationMessage(requestID, digest))
}

// VerifyRevocation reports whether sig is pub's Ed25519 signature over
// RevocationMessage(requestID, digest). Malformed keys and signatures are
// simply not valid.
func VerifyRevocation(pub ed25519.PublicKey, requestID, digest string, sig []byte) bool {
	if len(pub) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize {
		return false
	}
	return ed25519.Verify(pub, RevocationMessage(requestID, digest), sig)
}

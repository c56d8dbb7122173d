package custodian

import (
	"bytes"
	"encoding/base64"
	"errors"
	"regexp"
)

// PKCS11Config names non-extractable AES keys on a PKCS#11 token.
type PKCS11Config struct {
	Module     string // path of the PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so
	TokenLabel string
	PIN        string // secret: never log it
	// KeyLabel is the key new shares are wrapped with.
	KeyLabel string
	// PreviousKeyLabels are keys rotated out: shares wrapped with them
	// still unwrap, and Rewrap moves them to KeyLabel.
	PreviousKeyLabels []string
}

const (
	pkcs11Prefix   = "p11:v2:"
	pkcs11NonceLen = 12
)

// validKeyLabel keeps labels unambiguous inside a wrapped share.
var validKeyLabel = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// parsePKCS11Share splits a wrapped share into its key label and the nonce
// and ciphertext.
func parsePKCS11Share(wrapped []byte) (string, []byte, error) {
	rest, ok := bytes.CutPrefix(wrapped, []byte(pkcs11Prefix))
	if !ok {
		return "", nil, errors.New("pkcs11 unwrap: not a pkcs11 share")
	}
	label, b64, ok := bytes.Cut(rest, []byte(":"))
	if !ok || !validKeyLabel.Match(label) {
		return "", nil, errors.New("pkcs11 unwrap: malformed share")
	}
	raw, err := base64.StdEncoding.DecodeString(string(b64))
	if err != nil || len(raw) < pkcs11NonceLen+16 {
		return "", nil, errors.New("pkcs11 unwrap: malformed share")
	}
	return string(label), raw, nil
}

package custodian

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"regexp"

	"github.com/mediatorhq/mediator/secretfile"
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

// settings reads the PIN f names (pin_file, else the variable pin_env) and
// returns the token's settings.
func (f *PKCS11File) settings() (PKCS11Config, error) {
	pin := os.Getenv(f.PINEnv)
	if f.PINFile != "" {
		var err error
		if pin, err = secretfile.Read(f.PINFile); err != nil {
			return PKCS11Config{}, fmt.Errorf("custodian: pkcs11 pin: %w", err)
		}
	}
	return PKCS11Config{Module: f.Module, TokenLabel: f.TokenLabel, PIN: pin, KeyLabel: f.KeyLabel,
		PreviousKeyLabels: f.PreviousKeyLabels}, nil
}

// InitPKCS11Key makes cfg's pkcs11 key_label on its token unless the token
// has it (EnsurePKCS11Key), for `mediator custodian init`, and returns
// whether it made it. cfg must have a pkcs11 section.
func InitPKCS11Key(cfg Config) (created bool, err error) {
	if cfg.PKCS11 == nil {
		return false, errors.New("custodian: the configuration has no pkcs11 section")
	}
	settings, err := cfg.PKCS11.settings()
	if err != nil {
		return false, err
	}
	return EnsurePKCS11Key(settings)
}

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

package mirror

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/mediatorhq/mediator/secretfile"
	"github.com/mediatorhq/mediator/witness"
)

// File is a mirror's configuration file (JSON; docs/audit.md, "A mirror a
// regulator runs").
type File struct {
	// Listen is the address it serves on, e.g. ":8470".
	Listen string `json:"listen"`
	// DatabaseURL or DatabaseURLFile is its own PostgreSQL: not the log's.
	DatabaseURL     string `json:"database_url"`
	DatabaseURLFile string `json:"database_url_file"`
	// Name is its cosigner name, e.g. "regulator.example/mirror-1".
	Name string `json:"name"`
	// KeyFile holds its Ed25519 cosigning key (mirror init writes it).
	KeyFile string `json:"key_file"`
	// ReadTokenFile holds the bearer token its readers send.
	ReadTokenFile string `json:"read_token_file"`
	// PublicReads serves the copy to anyone, without a token.
	PublicReads bool `json:"public_reads"`
	// LogKey is the log's checkpoint verifier key (`mediator audit
	// verifier-key`); its name is the log's origin. LogPreviousKeys are
	// its keys before a rotation.
	LogKey          string   `json:"log_key"`
	LogPreviousKeys []string `json:"log_previous_keys"`
	TLSCertFile     string   `json:"tls_cert_file"`
	TLSKeyFile      string   `json:"tls_key_file"`
}

// ParseFile reads a configuration file, refusing unknown fields and
// missing required ones.
func ParseFile(b []byte) (File, error) {
	var f File
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return f, fmt.Errorf("mirror: config: %w", err)
	}
	var missing []string
	for name, v := range map[string]string{"listen": f.Listen, "name": f.Name, "key_file": f.KeyFile, "log_key": f.LogKey} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if f.DatabaseURL == "" && f.DatabaseURLFile == "" {
		missing = append(missing, "database_url or database_url_file")
	}
	if len(missing) > 0 {
		return f, fmt.Errorf("mirror: config: required: %s", strings.Join(missing, ", "))
	}
	if !f.PublicReads && f.ReadTokenFile == "" {
		return f, errors.New("mirror: config: read_token_file is required unless public_reads is true (the log's entries are redacted metadata, still not for everyone)")
	}
	if (f.TLSCertFile == "") != (f.TLSKeyFile == "") {
		return f, errors.New("mirror: config: tls_cert_file and tls_key_file go together")
	}
	return f, nil
}

// Loaded is what a File names, read: the secrets and keys.
type Loaded struct {
	DatabaseURL string
	Options     Options
	// VerifierKey is the mirror's cosignature verifier key, for the log's
	// policy file (`witness NAME VKEY URL`).
	VerifierKey string
}

// Load reads the files f names.
func (f File) Load() (Loaded, error) {
	var l Loaded
	var err error
	l.DatabaseURL = f.DatabaseURL
	if f.DatabaseURLFile != "" {
		if l.DatabaseURL, err = secretfile.Read(f.DatabaseURLFile); err != nil {
			return l, fmt.Errorf("mirror: database_url_file: %w", err)
		}
	}
	for _, k := range append([]string{f.LogKey}, f.LogPreviousKeys...) {
		v, err := note.NewVerifier(k)
		if err != nil {
			return l, fmt.Errorf("mirror: log key %q: %w", k, err)
		}
		l.Options.LogVerifiers = append(l.Options.LogVerifiers, v)
	}
	l.Options.Origin = l.Options.LogVerifiers[0].Name()
	seed, err := readSeed(f.KeyFile)
	if err != nil {
		return l, err
	}
	if l.Options.Signer, l.VerifierKey, err = witness.NewSigner(f.Name, seed); err != nil {
		return l, fmt.Errorf("mirror: key_file: %w", err)
	}
	if f.ReadTokenFile != "" {
		if l.Options.ReadToken, err = secretfile.Read(f.ReadTokenFile); err != nil {
			return l, fmt.Errorf("mirror: read_token_file: %w", err)
		}
		if len(l.Options.ReadToken) < 16 {
			return l, errors.New("mirror: read_token_file: the token is shorter than 16 characters")
		}
	}
	l.Options.PublicReads = f.PublicReads
	return l, nil
}

// GenerateKey writes a new cosigning key to path (mode 0600), refusing
// to overwrite one.
func GenerateKey(path string) error {
	seed := make([]byte, 32)
	if _, err := rand.Read(seed); err != nil {
		return err
	}
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("mirror: key_file: %w", err)
	}
	if _, err := fmt.Fprintln(fh, base64.StdEncoding.EncodeToString(seed)); err != nil {
		fh.Close()
		return fmt.Errorf("mirror: key_file: %w", err)
	}
	return fh.Close()
}

func readSeed(path string) ([]byte, error) {
	text, err := secretfile.Read(path)
	if err != nil {
		return nil, fmt.Errorf("mirror: key_file: %w", err)
	}
	seed, err := base64.StdEncoding.DecodeString(text)
	if err != nil || len(seed) != 32 {
		return nil, errors.New("mirror: key_file does not hold a base64 Ed25519 seed of 32 bytes")
	}
	return seed, nil
}

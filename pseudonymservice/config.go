package pseudonymservice

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/mediatorhq/mediator/pseudonym"
	"github.com/mediatorhq/mediator/ratelimit"
	"github.com/mediatorhq/mediator/secretfile"
)

// File is the pseudonym service's configuration file (`mediator
// pseudonym serve --config FILE`, docs/pseudonyms.md). Secrets are in the
// files it names, never in it.
type File struct {
	// Listen is the address the API listens on, host:port.
	Listen string `json:"listen"`
	// TLSCertFile and TLSKeyFile, if set, serve HTTPS.
	TLSCertFile string `json:"tls_cert_file,omitempty"`
	TLSKeyFile  string `json:"tls_key_file,omitempty"`
	// KeyFile holds the VOPRF key (`mediator pseudonym keygen`), 0600:
	// its text form, or, when Transit is set, its Transit ciphertext.
	KeyFile string `json:"key_file"`
	// Transit, if set, is the Vault Transit key the key files are
	// encrypted under.
	Transit *TransitFile `json:"transit,omitempty"`
	// PreviousKeyFile, if set, holds the key KeyFile's replaces, still
	// evaluated during a rotation's overlap.
	PreviousKeyFile string `json:"previous_key_file,omitempty"`
	// Callers are the clients answered, each with the file holding its
	// bearer token.
	Callers []CallerFile `json:"callers"`
	// MetricsTokenFile, if set, holds the token GET /metrics needs.
	MetricsTokenFile string `json:"metrics_token_file,omitempty"`
	// Rate and Burst bound the identifiers each caller may have
	// evaluated per second and at once (DefaultLimit when 0).
	Rate  float64 `json:"rate,omitzero"`
	Burst int     `json:"burst,omitzero"`
}

// CallerFile names a caller and the file holding its token.
type CallerFile struct {
	Name      string `json:"name"`
	TokenFile string `json:"token_file"`
}

// ParseFile parses a configuration file strictly (unknown fields are
// errors) and checks that it names everything the service needs.
func ParseFile(b []byte) (File, error) {
	var f File
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return File{}, fmt.Errorf("pseudonym: config: %w", err)
	}
	if _, _, err := net.SplitHostPort(f.Listen); err != nil {
		return File{}, fmt.Errorf("pseudonym: config: listen must be host:port: %w", err)
	}
	if (f.TLSCertFile == "") != (f.TLSKeyFile == "") {
		return File{}, errors.New("pseudonym: config: tls_cert_file and tls_key_file go together")
	}
	if f.KeyFile == "" || len(f.Callers) == 0 {
		return File{}, errors.New("pseudonym: config: key_file and at least one caller are required")
	}
	seen := map[string]bool{}
	for _, c := range f.Callers {
		if c.Name == "" || c.TokenFile == "" || seen[c.Name] {
			return File{}, fmt.Errorf("pseudonym: config: each caller needs a unique name and a token_file (%q)", c.Name)
		}
		seen[c.Name] = true
	}
	if f.Transit != nil {
		if err := f.Transit.check(); err != nil {
			return File{}, fmt.Errorf("pseudonym: config: %w", err)
		}
	}
	if f.Rate < 0 || f.Burst < 0 {
		return File{}, errors.New("pseudonym: config: rate and burst must not be negative")
	}
	return f, nil
}

// Load reads the keys and the callers' tokens the file names; with
// Transit, it logs in to the service's Vault and decrypts the keys there.
func (f File) Load(ctx context.Context, log *slog.Logger) (ServiceConfig, error) {
	var vault *vaultapi.Client
	if f.Transit != nil {
		var err error
		if vault, err = f.Transit.Connect(ctx, log); err != nil {
			return ServiceConfig{}, err
		}
	}
	readKey := func(field, path string) (*pseudonym.Key, error) {
		text, err := secretfile.Read(path)
		if err != nil {
			return nil, fmt.Errorf("pseudonym: %s: %w", field, err)
		}
		var k *pseudonym.Key
		if vault != nil {
			k, err = unwrapKey(ctx, vault, *f.Transit, text)
		} else {
			k, err = pseudonym.ParseKey([]byte(text))
		}
		if err != nil {
			return nil, fmt.Errorf("pseudonym: %s: %w", field, err)
		}
		return k, nil
	}
	key, err := readKey("key_file", f.KeyFile)
	if err != nil {
		return ServiceConfig{}, err
	}
	cfg := ServiceConfig{Key: key, Limit: ratelimit.Limit{Rate: f.Rate, Burst: f.Burst}}
	if f.PreviousKeyFile != "" {
		if cfg.PreviousKey, err = readKey("previous_key_file", f.PreviousKeyFile); err != nil {
			return ServiceConfig{}, err
		}
	}
	for _, c := range f.Callers {
		tok, err := secretfile.Read(c.TokenFile)
		if err != nil {
			return ServiceConfig{}, fmt.Errorf("pseudonym: caller %s: token_file: %w", c.Name, err)
		}
		cfg.Callers = append(cfg.Callers, Caller{Name: c.Name, Token: []byte(tok)})
	}
	if f.MetricsTokenFile != "" {
		tok, err := secretfile.Read(f.MetricsTokenFile)
		if err != nil {
			return ServiceConfig{}, fmt.Errorf("pseudonym: metrics_token_file: %w", err)
		}
		cfg.MetricsToken = []byte(tok)
	}
	return cfg, nil
}

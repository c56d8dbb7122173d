package escrow

import (
	"bytes"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"

	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/seal"
	"github.com/mediatorhq/mediator/secretfile"
	"github.com/mediatorhq/mediator/shares"
)

// CustodianFile is the mediator's --custodians file (docs/custodians.md):
// the custodian set new deposits are sealed for, in order, and where each
// custodian service listens. The keys are the custodians' public keys, as
// each custodian publishes them (GET /v1/custodian) and its operator
// confirms them out of band; depositors pin the set's digest.
type CustodianFile struct {
	Threshold  int              `json:"threshold"`
	Custodians []CustodianEntry `json:"custodians"`
	// CAFile, if set, is a PEM bundle of the certificate authorities that
	// sign the custodians' TLS certificates, trusted instead of the
	// system's roots for calls to custodians.
	CAFile string `json:"ca_file,omitempty"`
	// ClientCertFile and ClientKeyFile, if set (both or neither), are the
	// client certificate (PEM, with any intermediates) and its key that
	// the mediator presents to custodians whose client_ca_file asks for
	// one (mutual TLS). Read at start.
	ClientCertFile string `json:"client_cert_file,omitempty"`
	ClientKeyFile  string `json:"client_key_file,omitempty"`
}

// CustodianEntry is one custodian of a CustodianFile. TokenFile holds the
// bearer token the mediator calls it with.
type CustodianEntry struct {
	Name       string            `json:"name"`
	URL        string            `json:"url"`
	TokenFile  string            `json:"token_file"`
	HPKEKey    seal.PublicKey    `json:"hpke_public_key"`
	SigningKey ed25519.PublicKey `json:"signing_key"`
}

// ParseCustodians reads a custodians file (JSON, unknown fields refused)
// and checks the set it describes.
func ParseCustodians(b []byte) (CustodianFile, error) {
	var f CustodianFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return f, fmt.Errorf("escrow: custodians file: %w", err)
	}
	if err := f.Set().Validate(); err != nil {
		return f, fmt.Errorf("escrow: custodians file: %w", err)
	}
	if (f.ClientCertFile == "") != (f.ClientKeyFile == "") {
		return f, errors.New("escrow: custodians file: client_cert_file and client_key_file go together")
	}
	for _, c := range f.Custodians {
		if err := roster.CheckCustodianURL(c.URL); err != nil {
			return f, fmt.Errorf("escrow: custodians file: custodian %s: %w", c.Name, err)
		}
		if c.TokenFile == "" {
			return f, fmt.Errorf("escrow: custodians file: custodian %s: token_file is required", c.Name)
		}
	}
	return f, nil
}

// Set is the custodian set the file describes.
func (f CustodianFile) Set() shares.Set {
	s := shares.Set{Threshold: f.Threshold}
	for _, c := range f.Custodians {
		s.Custodians = append(s.Custodians, shares.Custodian{Name: c.Name, HPKEKey: c.HPKEKey, SigningKey: c.SigningKey})
	}
	return s
}

// Remotes connects to each custodian of the file, reading its token file.
func (f CustodianFile) Remotes() ([]*Remote, error) {
	hc, err := f.httpClient()
	if err != nil {
		return nil, err
	}
	out := make([]*Remote, len(f.Custodians))
	for i, c := range f.Custodians {
		tok, err := secretfile.Read(c.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("escrow: custodian %s: %w", c.Name, err)
		}
		out[i] = NewRemote(c.Name, c.URL, tok, hc)
	}
	return out, nil
}

// httpClient is the client the mediator calls custodians with: nil (the
// default) unless the file names a CA bundle, which is then the only one
// its TLS trusts, or a client certificate, which it presents to a
// custodian that asks for one.
func (f CustodianFile) httpClient() (*http.Client, error) {
	if f.CAFile == "" && f.ClientCertFile == "" {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.CAFile != "" {
		pem, err := os.ReadFile(f.CAFile)
		if err != nil {
			return nil, fmt.Errorf("escrow: custodians file: ca_file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("escrow: custodians file: ca_file %s holds no PEM certificate", f.CAFile)
		}
	}
	if f.ClientCertFile != "" {
		cert, err := tls.LoadX509KeyPair(f.ClientCertFile, f.ClientKeyFile)
		if err != nil {
			return nil, fmt.Errorf("escrow: custodians file: client_cert_file, client_key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return &http.Client{Timeout: remoteTimeout, Transport: &http.Transport{MaxIdleConnsPerHost: 32, TLSClientConfig: tc}}, nil
}

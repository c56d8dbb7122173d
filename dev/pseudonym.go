package dev

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/mediatorhq/mediator/pseudonym"
	"github.com/mediatorhq/mediator/pseudonymservice"
)

// The dev pseudonym service's files in the state dir, each 0600 and
// created on first use: its VOPRF key, and the tokens of its two callers.
const (
	pseudonymKeyFile          = "pseudonym.key"
	pseudonymTokenFile        = "pseudonym-gateway.token"
	pseudonymOfficerTokenFile = "pseudonym-officer.token"
)

// The names the dev pseudonym service knows its callers by: the dev
// gateway's agent, and the dev officer's CLI. Each is counted and limited
// on its own.
const (
	PseudonymCaller        = "dev-gateway"
	PseudonymOfficerCaller = "dev-officer"
)

// PseudonymTokens are the token files of the dev pseudonym service's
// callers.
type PseudonymTokens struct {
	Gateway, Officer string
}

// PseudonymService returns the dev pseudonym service's configuration: its
// key from stateDir and two callers, PseudonymCaller and
// PseudonymOfficerCaller, with their tokens, all created on first use so
// that pseudonyms stay the same across restarts of one state dir. It also
// returns the token files' paths.
func PseudonymService(stateDir string) (pseudonymservice.ServiceConfig, PseudonymTokens, error) {
	var none PseudonymTokens
	keyPath := filepath.Join(stateDir, pseudonymKeyFile)
	if _, err := os.Stat(keyPath); errors.Is(err, os.ErrNotExist) {
		key, err := pseudonym.GenerateKey()
		if err != nil {
			return pseudonymservice.ServiceConfig{}, none, err
		}
		text, err := key.MarshalText()
		if err != nil {
			return pseudonymservice.ServiceConfig{}, none, err
		}
		if err := os.WriteFile(keyPath, append(text, '\n'), 0o600); err != nil {
			return pseudonymservice.ServiceConfig{}, none, fmt.Errorf("dev: pseudonym key: %w", err)
		}
	}
	tokens := PseudonymTokens{Gateway: filepath.Join(stateDir, pseudonymTokenFile), Officer: filepath.Join(stateDir, pseudonymOfficerTokenFile)}
	for _, path := range []string{tokens.Gateway, tokens.Officer} {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			if err := os.WriteFile(path, []byte(rand.Text()+"\n"), 0o600); err != nil {
				return pseudonymservice.ServiceConfig{}, none, fmt.Errorf("dev: pseudonym token: %w", err)
			}
		}
	}
	f := pseudonymservice.File{Listen: "127.0.0.1:0", KeyFile: keyPath,
		Callers: []pseudonymservice.CallerFile{{Name: PseudonymCaller, TokenFile: tokens.Gateway}, {Name: PseudonymOfficerCaller, TokenFile: tokens.Officer}}}
	cfg, err := f.Load(context.Background(), nil)
	if err != nil {
		return pseudonymservice.ServiceConfig{}, none, fmt.Errorf("dev: %w", err)
	}
	return cfg, tokens, nil
}

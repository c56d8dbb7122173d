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
// created on first use: its VOPRF key, and the token of its one caller,
// the dev gateway.
const (
	pseudonymKeyFile   = "pseudonym.key"
	pseudonymTokenFile = "pseudonym-gateway.token"
)

// PseudonymCaller is the name the dev pseudonym service knows its caller
// by.
const PseudonymCaller = "dev-gateway"

// PseudonymService returns the dev pseudonym service's configuration: its
// key from stateDir and one caller, PseudonymCaller, with its token, both
// created on first use so that pseudonyms stay the same across restarts
// of one state dir. It also returns the token file's path.
func PseudonymService(stateDir string) (pseudonymservice.ServiceConfig, string, error) {
	keyPath := filepath.Join(stateDir, pseudonymKeyFile)
	if _, err := os.Stat(keyPath); errors.Is(err, os.ErrNotExist) {
		key, err := pseudonym.GenerateKey()
		if err != nil {
			return pseudonymservice.ServiceConfig{}, "", err
		}
		text, err := key.MarshalText()
		if err != nil {
			return pseudonymservice.ServiceConfig{}, "", err
		}
		if err := os.WriteFile(keyPath, append(text, '\n'), 0o600); err != nil {
			return pseudonymservice.ServiceConfig{}, "", fmt.Errorf("dev: pseudonym key: %w", err)
		}
	}
	tokenPath := filepath.Join(stateDir, pseudonymTokenFile)
	if _, err := os.Stat(tokenPath); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(tokenPath, []byte(rand.Text()+"\n"), 0o600); err != nil {
			return pseudonymservice.ServiceConfig{}, "", fmt.Errorf("dev: pseudonym token: %w", err)
		}
	}
	f := pseudonymservice.File{Listen: "127.0.0.1:0", KeyFile: keyPath,
		Callers: []pseudonymservice.CallerFile{{Name: PseudonymCaller, TokenFile: tokenPath}}}
	cfg, err := f.Load(context.Background(), nil)
	if err != nil {
		return pseudonymservice.ServiceConfig{}, "", fmt.Errorf("dev: %w", err)
	}
	return cfg, tokenPath, nil
}

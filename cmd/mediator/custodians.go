package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	vaultapi "github.com/hashicorp/vault/api"

	vaultsetup "github.com/mediatorhq/mediator/deploy/vault"
	"github.com/mediatorhq/mediator/escrow"
	"github.com/mediatorhq/mediator/vaultclient"
)

// custodianFile is the --custodians file: who holds the shares.
// docs/escrow.md documents it.
type custodianFile struct {
	Threshold  int             `json:"threshold"`
	Custodians []custodianSpec `json:"custodians"`
}

type custodianSpec struct {
	Name    string    `json:"name"`
	Wrapper vaultPart `json:"wrapper"`
	Store   vaultPart `json:"store"`
}

// vaultPart is a wrapper or a store. An empty vault_addr means the
// service's own Vault connection.
type vaultPart struct {
	Type         string `json:"type"` // "vault-transit" or "pkcs11" (wrapper), "vault-kv" (store)
	VaultAddr    string `json:"vault_addr"`
	TokenFile    string `json:"token_file"`
	RoleID       string `json:"role_id"`
	SecretIDFile string `json:"secret_id_file"`
	Mount        string `json:"mount"`
	Key          string `json:"key"`    // transit key
	Prefix       string `json:"prefix"` // kv path prefix

	// pkcs11 wrapper: the module, token and key labels (current, then keys
	// rotated out whose shares must still unwrap); the PIN comes from
	// pin_file or the environment variable named by pin_env, never the file.
	Module            string   `json:"module"`
	TokenLabel        string   `json:"token_label"`
	KeyLabel          string   `json:"key_label"`
	PreviousKeyLabels []string `json:"previous_key_labels"`
	PINFile           string   `json:"pin_file"`
	PINEnv            string   `json:"pin_env"`
}

// defaultThreshold is K when nothing says otherwise (N is 5).
const defaultThreshold = 3

// loadCustodians builds the custodians from cfg.Custodians, or, without a
// file, the bootstrap's five custodian keys on the service's own Vault.
func loadCustodians(ctx context.Context, cfg serveConfig, own *vaultapi.Client, log *slog.Logger, metrics *vaultclient.Metrics) ([]escrow.Custodian, int, error) {
	if cfg.Custodians == "" {
		// One Vault holds every custodian's key, so one store holds their
		// shares: one write-once KV entry per deposit.
		store := escrow.KVStore{Client: own, Mount: vaultsetup.KVMount, Prefix: vaultsetup.SharePrefix}
		var cs []escrow.Custodian
		for i := 1; i <= vaultsetup.DefaultCustodians; i++ {
			name := vaultsetup.CustodianKey(i)
			cs = append(cs, escrow.Custodian{
				Name:    name,
				Wrapper: escrow.NewTransitWrapper(own, vaultsetup.TransitMount, name),
				Store:   store,
			})
		}
		return cs, defaultThreshold, nil
	}
	b, err := os.ReadFile(cfg.Custodians)
	if err != nil {
		return nil, 0, fmt.Errorf("custodians: %w", err)
	}
	var f custodianFile
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, 0, fmt.Errorf("custodians file %s: %w", cfg.Custodians, err)
	}
	if f.Threshold == 0 {
		f.Threshold = defaultThreshold
	}
	clients := map[string]*vaultapi.Client{}
	client := func(p vaultPart) (*vaultapi.Client, error) {
		if p.VaultAddr == "" {
			return own, nil
		}
		k := p.VaultAddr + "|" + p.TokenFile + "|" + p.RoleID
		if c, ok := clients[k]; ok {
			return c, nil
		}
		vc := vaultclient.Config{Addr: p.VaultAddr, RoleID: p.RoleID, Metrics: metrics}
		var err error
		if p.TokenFile != "" {
			vc.Token, err = readSecretFile(p.TokenFile)
		} else if p.SecretIDFile != "" {
			vc.SecretID, err = readSecretFile(p.SecretIDFile)
		}
		if err != nil {
			return nil, err
		}
		c, err := vaultclient.Connect(ctx, log, vc)
		if err != nil {
			return nil, err
		}
		clients[k] = c
		return c, nil
	}
	var cs []escrow.Custodian
	for _, s := range f.Custodians {
		if (s.Wrapper.Type != "vault-transit" && s.Wrapper.Type != "pkcs11") || s.Store.Type != "vault-kv" {
			return nil, 0, fmt.Errorf("custodian %q: supported are wrappers \"vault-transit\" and \"pkcs11\", and store \"vault-kv\"", s.Name)
		}
		sc, err := client(s.Store)
		if err != nil {
			return nil, 0, fmt.Errorf("custodian %q store: %w", s.Name, err)
		}
		if s.Store.Mount == "" || s.Store.Prefix == "" {
			return nil, 0, fmt.Errorf("custodian %q: store mount and prefix are required", s.Name)
		}
		wrapper, err := custodianWrapper(s, client)
		if err != nil {
			return nil, 0, err
		}
		cs = append(cs, escrow.Custodian{
			Name:    s.Name,
			Wrapper: wrapper,
			Store:   escrow.KVStore{Client: sc, Mount: s.Store.Mount, Prefix: s.Store.Prefix},
		})
	}
	if len(cs) == 0 {
		return nil, 0, errors.New("custodians file lists no custodians")
	}
	return cs, f.Threshold, nil
}

// custodianWrapper builds a custodian's wrapper: Vault Transit, or a key on
// a PKCS#11 token.
func custodianWrapper(s custodianSpec, client func(vaultPart) (*vaultapi.Client, error)) (escrow.Wrapper, error) {
	w := s.Wrapper
	if w.Type == "pkcs11" {
		pin := os.Getenv(w.PINEnv)
		if w.PINFile != "" {
			var err error
			if pin, err = readSecretFile(w.PINFile); err != nil {
				return nil, fmt.Errorf("custodian %q: %w", s.Name, err)
			}
		}
		hsm, err := escrow.OpenPKCS11(escrow.PKCS11Config{Module: w.Module, TokenLabel: w.TokenLabel, PIN: pin,
			KeyLabel: w.KeyLabel, PreviousKeyLabels: w.PreviousKeyLabels})
		if err != nil {
			return nil, fmt.Errorf("custodian %q: %w", s.Name, err)
		}
		return hsm, nil
	}
	if w.Mount == "" || w.Key == "" {
		return nil, fmt.Errorf("custodian %q: wrapper mount and key are required", s.Name)
	}
	wc, err := client(w)
	if err != nil {
		return nil, fmt.Errorf("custodian %q wrapper: %w", s.Name, err)
	}
	return escrow.NewTransitWrapper(wc, w.Mount, w.Key), nil
}

func readSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return strings.TrimSpace(string(b)), nil
}

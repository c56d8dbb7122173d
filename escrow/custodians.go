package escrow

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"

	vaultapi "github.com/hashicorp/vault/api"

	vaultsetup "github.com/mediatorhq/mediator/deploy/vault"
	"github.com/mediatorhq/mediator/secretfile"
	"github.com/mediatorhq/mediator/vaultclient"
)

// CustodianFile is the --custodians file: who holds the shares.
// docs/escrow.md documents it.
type CustodianFile struct {
	Threshold  int             `json:"threshold"`
	Custodians []CustodianSpec `json:"custodians"`
}

// CustodianSpec is one custodian of a CustodianFile.
type CustodianSpec struct {
	Name    string    `json:"name"`
	Wrapper VaultPart `json:"wrapper"`
	Store   VaultPart `json:"store"`
}

// VaultPart is a wrapper or a store. An empty vault_addr means the
// service's own Vault connection.
type VaultPart struct {
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

// DefaultCustodians are the bootstrap's five custodian keys on the
// service's own Vault (deploy/vault), threshold 3: one Vault holds every
// custodian's key, so one store holds their shares, one write-once KV entry
// per deposit.
func DefaultCustodians(own *vaultapi.Client) ([]Custodian, int) {
	store := KVStore{Client: own, Mount: vaultsetup.KVMount, Prefix: vaultsetup.SharePrefix}
	var cs []Custodian
	for i := 1; i <= vaultsetup.DefaultCustodians; i++ {
		name := vaultsetup.CustodianKey(i)
		cs = append(cs, Custodian{Name: name, Wrapper: NewTransitWrapper(own, vaultsetup.TransitMount, name), Store: store})
	}
	return cs, defaultThreshold
}

// ParseCustodians reads a custodians file (JSON, unknown fields refused);
// the threshold defaults to 3.
func ParseCustodians(b []byte) (CustodianFile, error) {
	var f CustodianFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return f, fmt.Errorf("escrow: custodians file: %w", err)
	}
	if f.Threshold == 0 {
		f.Threshold = defaultThreshold
	}
	if len(f.Custodians) == 0 {
		return f, errors.New("escrow: custodians file lists no custodians")
	}
	return f, nil
}

// OpenCustodians connects f's custodians: an empty vault_addr means own,
// the service's Vault connection; other Vaults are logged in to once each.
func OpenCustodians(ctx context.Context, log *slog.Logger, f CustodianFile, own *vaultapi.Client, metrics *vaultclient.Metrics) ([]Custodian, int, error) {
	clients := map[string]*vaultapi.Client{}
	client := func(p VaultPart) (*vaultapi.Client, error) {
		if p.VaultAddr == "" {
			return own, nil
		}
		k := p.VaultAddr + "|" + p.TokenFile + "|" + p.RoleID
		if c, ok := clients[k]; ok {
			return c, nil
		}
		c, err := vaultclient.Connect(ctx, log, vaultclient.Config{Addr: p.VaultAddr, RoleID: p.RoleID,
			TokenFile: p.TokenFile, SecretIDFile: p.SecretIDFile, Metrics: metrics})
		if err != nil {
			return nil, err
		}
		clients[k] = c
		return c, nil
	}
	var cs []Custodian
	for _, s := range f.Custodians {
		if (s.Wrapper.Type != "vault-transit" && s.Wrapper.Type != "pkcs11") || s.Store.Type != "vault-kv" {
			return nil, 0, fmt.Errorf("escrow: custodian %q: supported are wrappers \"vault-transit\" and \"pkcs11\", and store \"vault-kv\"", s.Name)
		}
		sc, err := client(s.Store)
		if err != nil {
			return nil, 0, fmt.Errorf("escrow: custodian %q store: %w", s.Name, err)
		}
		if s.Store.Mount == "" || s.Store.Prefix == "" {
			return nil, 0, fmt.Errorf("escrow: custodian %q: store mount and prefix are required", s.Name)
		}
		wrapper, err := custodianWrapper(s, client)
		if err != nil {
			return nil, 0, err
		}
		cs = append(cs, Custodian{Name: s.Name, Wrapper: wrapper, Store: KVStore{Client: sc, Mount: s.Store.Mount, Prefix: s.Store.Prefix}})
	}
	return cs, f.Threshold, nil
}

// custodianWrapper builds a custodian's wrapper: Vault Transit, or a key on
// a PKCS#11 token.
func custodianWrapper(s CustodianSpec, client func(VaultPart) (*vaultapi.Client, error)) (Wrapper, error) {
	w := s.Wrapper
	if w.Type == "pkcs11" {
		pin := os.Getenv(w.PINEnv)
		if w.PINFile != "" {
			var err error
			if pin, err = secretfile.Read(w.PINFile); err != nil {
				return nil, fmt.Errorf("escrow: custodian %q: %w", s.Name, err)
			}
		}
		hsm, err := OpenPKCS11(PKCS11Config{Module: w.Module, TokenLabel: w.TokenLabel, PIN: pin,
			KeyLabel: w.KeyLabel, PreviousKeyLabels: w.PreviousKeyLabels})
		if err != nil {
			return nil, fmt.Errorf("escrow: custodian %q: %w", s.Name, err)
		}
		return hsm, nil
	}
	if w.Mount == "" || w.Key == "" {
		return nil, fmt.Errorf("escrow: custodian %q: wrapper mount and key are required", s.Name)
	}
	wc, err := client(w)
	if err != nil {
		return nil, fmt.Errorf("escrow: custodian %q wrapper: %w", s.Name, err)
	}
	return NewTransitWrapper(wc, w.Mount, w.Key), nil
}

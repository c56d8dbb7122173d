package pseudonymservice

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/mediatorhq/mediator/pseudonym"
	"github.com/mediatorhq/mediator/vaultclient"
)

// TransitFile names the service's own Vault and the Transit key that
// keeps its VOPRF key: key_file (and previous_key_file) then hold the
// Transit ciphertext of the key ("vault:v1:…"), never the key, and
// whoever reads the file learns nothing without the service's Vault
// login. The Transit key should be aes256-gcm96 and not exportable.
type TransitFile struct {
	// Addr is the Vault address; the login is an AppRole (role id and
	// secret id files) or a token file (a Vault Agent sink).
	Addr         string `json:"addr"`
	RoleIDFile   string `json:"role_id_file,omitempty"`
	SecretIDFile string `json:"secret_id_file,omitempty"`
	TokenFile    string `json:"token_file,omitempty"`
	// Mount is the Transit mount ("transit" when empty); Key the key's
	// name.
	Mount string `json:"mount,omitempty"`
	Key   string `json:"key"`
}

func (t TransitFile) mount() string {
	if t.Mount == "" {
		return "transit"
	}
	return strings.Trim(t.Mount, "/")
}

func (t TransitFile) check() error {
	if t.Addr == "" || t.Key == "" {
		return errors.New("transit needs addr and key")
	}
	if (t.TokenFile == "") == (t.RoleIDFile == "" || t.SecretIDFile == "") {
		return errors.New("transit needs either token_file or role_id_file and secret_id_file")
	}
	return nil
}

// Connect logs in to the service's Vault.
func (t TransitFile) Connect(ctx context.Context, log *slog.Logger) (*vaultapi.Client, error) {
	c, err := vaultclient.Connect(ctx, log, vaultclient.Config{Addr: t.Addr, RoleIDFile: t.RoleIDFile, SecretIDFile: t.SecretIDFile, TokenFile: t.TokenFile})
	if err != nil {
		return nil, fmt.Errorf("pseudonym: transit: %w", err)
	}
	return c, nil
}

// WrapKey returns key's text form encrypted under the Transit key: what
// key_file holds when the config names transit.
func WrapKey(ctx context.Context, c *vaultapi.Client, t TransitFile, key *pseudonym.Key) (string, error) {
	text, err := key.MarshalText()
	if err != nil {
		return "", err
	}
	sec, err := c.Logical().WriteWithContext(ctx, t.mount()+"/encrypt/"+t.Key,
		map[string]any{"plaintext": base64.StdEncoding.EncodeToString(text)})
	clear(text)
	if err != nil {
		return "", fmt.Errorf("pseudonym: transit encrypt: %w", err)
	}
	ct, _ := sec.Data["ciphertext"].(string)
	if !strings.HasPrefix(ct, "vault:") {
		return "", errors.New("pseudonym: transit encrypt: no ciphertext in the answer")
	}
	return ct, nil
}

// unwrapKey decrypts a key_file's Transit ciphertext. Its errors never
// hold the plaintext.
func unwrapKey(ctx context.Context, c *vaultapi.Client, t TransitFile, ciphertext string) (*pseudonym.Key, error) {
	sec, err := c.Logical().WriteWithContext(ctx, t.mount()+"/decrypt/"+t.Key, map[string]any{"ciphertext": strings.TrimSpace(ciphertext)})
	if err != nil {
		return nil, fmt.Errorf("pseudonym: transit decrypt: %w", err)
	}
	b64, _ := sec.Data["plaintext"].(string)
	text, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, errors.New("pseudonym: transit decrypt: the answer is not base64")
	}
	defer clear(text)
	return pseudonym.ParseKey(text)
}

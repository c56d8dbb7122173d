package custodian

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/shares"
)

// Config is a custodian's configuration file (`mediator custodian serve
// --config FILE`, docs/custodians.md). It names the custodian's own
// credentials; secrets are in the files it names, never in it.
type Config struct {
	// Name is the custodian's name in the custodian set, info strings and
	// receipts.
	Name string `json:"name"`
	// Listen is the address the API listens on, host:port.
	Listen string `json:"listen"`
	// TLSCertFile and TLSKeyFile, if set, serve HTTPS.
	TLSCertFile string `json:"tls_cert_file,omitempty"`
	TLSKeyFile  string `json:"tls_key_file,omitempty"`
	// ClientCAFile, if set (with TLS), is a PEM bundle of the authorities
	// whose client certificates the custodian accepts: every call that
	// needs the mediator's or the operator's token then also needs a
	// client certificate one of them signed (mutual TLS). Public routes
	// take none.
	ClientCAFile string `json:"client_ca_file,omitempty"`

	// Vault is the custodian's own Vault: its KV v2 store and, unless
	// PKCS11 is set, its Transit key.
	Vault   VaultLogin     `json:"vault"`
	Transit *TransitConfig `json:"transit,omitempty"`
	PKCS11  *PKCS11File    `json:"pkcs11,omitempty"`
	KV      KVConfig       `json:"kv"`

	// MediatorTokenFile holds the bearer token the mediator (the
	// coordinator) calls with; OperatorTokenFile the custodian operator's
	// (rewrap, metrics).
	MediatorTokenFile string `json:"mediator_token_file"`
	OperatorTokenFile string `json:"operator_token_file"`

	// RosterGenesis is the digest of the roster's first version, which
	// this custodian pins: it trusts approvers only from a chain that
	// verifies from it (docs/access.md).
	RosterGenesis string `json:"roster_genesis"`
	// Witness, if set, makes the custodian a witness of the mediator's
	// audit log (POST /add-checkpoint, C2SP tlog-witness).
	Witness *WitnessConfig `json:"witness,omitempty"`
	// PolicyDir, if set, holds the custodian's own release.rego and
	// data.json; else the embedded ones.
	PolicyDir string `json:"policy_dir,omitempty"`

	// MinRetention is the least age at which the custodian destroys a
	// share (default 2160h, 90 days): a coordinator cannot shorten
	// retention below it. Set it to the retention the law requires.
	MinRetention Duration `json:"min_retention,omitzero"`
	// AbortWindow is how long after storing a share the coordinator may
	// abort it because the deposit failed elsewhere (default 10m).
	AbortWindow Duration `json:"abort_window,omitzero"`
	// PublicRate is how many calls per second each caller address may
	// make to the routes that need no credential and make the custodian
	// work (roster pushes, deny votes, revocations, signed holds, status,
	// inventory), with bursts of twice as many; default 10. Behind a
	// proxy every caller shares the proxy's address.
	PublicRate float64 `json:"public_rate,omitzero"`
	// HPKEGrace is how long an HPKE key of this custodian's that a roster
	// version replaced still opens deposits, from when the custodian
	// first saw that version (default 168h, docs/custodians.md).
	HPKEGrace Duration `json:"hpke_grace,omitzero"`
}

// VaultLogin is how the custodian logs in to its Vault: an AppRole (role id
// and a secret id file) or a token file.
type VaultLogin struct {
	Addr         string `json:"addr"`
	RoleID       string `json:"role_id,omitempty"`
	RoleIDFile   string `json:"role_id_file,omitempty"`
	SecretIDFile string `json:"secret_id_file,omitempty"`
	TokenFile    string `json:"token_file,omitempty"`
}

// TransitConfig names the custodian's Transit key (aes256-gcm96, derived,
// not exportable).
type TransitConfig struct {
	Mount string `json:"mount"`
	Key   string `json:"key"`
}

// PKCS11File names the custodian's key on a PKCS#11 token; the PIN comes
// from PINFile or the environment variable PINEnv.
type PKCS11File struct {
	Module            string   `json:"module"`
	TokenLabel        string   `json:"token_label"`
	KeyLabel          string   `json:"key_label"`
	PreviousKeyLabels []string `json:"previous_key_labels,omitempty"`
	PINFile           string   `json:"pin_file,omitempty"`
	PINEnv            string   `json:"pin_env,omitempty"`
}

// KVConfig is where the custodian keeps its identity, shares and records:
// a KV v2 mount and a prefix of its own.
type KVConfig struct {
	Mount  string `json:"mount"`
	Prefix string `json:"prefix"`
}

// Duration is a time.Duration written as "24h".
type Duration struct{ time.Duration }

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration is a string such as \"24h\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalJSON writes a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// Defaults.
const (
	defaultMinRetention = 90 * 24 * time.Hour
	defaultAbortWindow  = 10 * time.Minute
	defaultPublicRate   = 10
	defaultHPKEGrace    = 7 * 24 * time.Hour
)

// fillDefaults sets the durations left zero to their defaults.
func (c *Config) fillDefaults() {
	if c.MinRetention.Duration == 0 {
		c.MinRetention.Duration = defaultMinRetention
	}
	if c.AbortWindow.Duration == 0 {
		c.AbortWindow.Duration = defaultAbortWindow
	}
	if c.PublicRate == 0 {
		c.PublicRate = defaultPublicRate
	}
	if c.HPKEGrace.Duration == 0 {
		c.HPKEGrace.Duration = defaultHPKEGrace
	}
}

// ParseConfig reads a configuration file (JSON, unknown fields refused),
// fills in defaults, and reports every problem at once.
func ParseConfig(b []byte) (Config, error) {
	var c Config
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("custodian: config: %w", err)
	}
	c.fillDefaults()
	var errs []string
	if !shares.ValidID(c.Name) {
		errs = append(errs, "name is required (1–128 printable bytes)")
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, "listen must be host:port")
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, "tls_cert_file and tls_key_file go together")
	}
	if c.ClientCAFile != "" && (c.TLSCertFile == "" || c.TLSKeyFile == "") {
		errs = append(errs, "client_ca_file needs tls_cert_file and tls_key_file: client certificates are asked for only over TLS")
	}
	if c.Vault.Addr == "" {
		errs = append(errs, "vault.addr is required")
	}
	if c.Vault.TokenFile == "" && (c.Vault.RoleID == "" && c.Vault.RoleIDFile == "" || c.Vault.SecretIDFile == "") {
		errs = append(errs, "vault needs role_id (or role_id_file) and secret_id_file, or token_file")
	}
	switch {
	case (c.Transit == nil) == (c.PKCS11 == nil):
		errs = append(errs, "set exactly one of transit and pkcs11")
	case c.Transit != nil && (c.Transit.Mount == "" || c.Transit.Key == ""):
		errs = append(errs, "transit needs mount and key")
	case c.PKCS11 != nil && (c.PKCS11.Module == "" || c.PKCS11.TokenLabel == "" || c.PKCS11.KeyLabel == ""):
		errs = append(errs, "pkcs11 needs module, token_label and key_label")
	}
	if c.KV.Mount == "" || strings.Trim(c.KV.Prefix, "/") == "" {
		errs = append(errs, "kv needs mount and prefix")
	}
	if c.MediatorTokenFile == "" || c.OperatorTokenFile == "" {
		errs = append(errs, "mediator_token_file and operator_token_file are required")
	}
	if c.RosterGenesis != "" && !roster.ValidDigest(c.RosterGenesis) {
		errs = append(errs, "roster_genesis must be the sha256: digest of the roster's first version")
	}
	if c.MinRetention.Duration < 0 || c.AbortWindow.Duration < 0 || c.HPKEGrace.Duration < 0 {
		errs = append(errs, "durations must not be negative")
	}
	if len(errs) > 0 {
		return c, errors.New("custodian: config: " + strings.Join(errs, "; "))
	}
	return c, nil
}

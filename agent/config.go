package agent

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	jsonv2 "github.com/go-json-experiment/json"

	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/secretfile"
)

// DefaultRosterRefresh is how often the agent verifies the roster chain
// again when the configuration does not say: a version a quorum adopted
// is sealed to within a minute, and the chain is verified once a minute,
// never per deposit.
const DefaultRosterRefresh = time.Minute

// minRosterRefresh bounds roster_refresh from below: each refresh fetches
// and verifies the whole chain.
const minRosterRefresh = time.Second

// Config is the agent's configuration, as Load reads it from its file
// (strict JSON; every secret is in a file it names, never in it):
//
//	{
//	  "listen": "unix:///run/mediator/agent.sock",   // or "127.0.0.1:PORT", "[::1]:PORT", "localhost:PORT"
//	  "mediator_url": "https://mediator.example:8443",
//	  "token_file": "/etc/mediator/agent.token",       // the agent's bearer token at the mediator
//	  "roster_genesis": "sha256:…",                    // the roster genesis the gateway pins
//	  "pseudonym_token_file": "/etc/mediator/pseudonym.token",
//	  "state_file": "/var/lib/mediator/agent-state.json",
//	  "cache_size": 100000,                            // optional: identifiers remembered
//	  "roster_refresh": "1m",                          // optional: how often the chain is verified again
//	  "ca_file": "/etc/mediator/ca.pem"                // optional: the only CAs trusted for the mediator's TLS
//	}
type Config struct {
	// Listen is where the agent listens: a unix socket or a loopback TCP
	// address, never anything another host could reach.
	Listen Address
	// MediatorURL is the mediator's base URL.
	MediatorURL string
	// RosterGenesis is the digest of the roster genesis the chain is
	// verified from.
	RosterGenesis string
	// StateFile keeps the newest roster version verified, across
	// restarts (State).
	StateFile string
	// CacheSize is how many identifiers the pseudonym client remembers:
	// pseudonym.DefaultCacheSize when 0, none when negative.
	CacheSize int
	// RosterRefresh is how often the roster chain is verified again.
	RosterRefresh time.Duration
	// RootCAs, when not nil, are the only authorities trusted for the
	// mediator's TLS (ca_file). The pseudonym service is reached with
	// the system's authorities.
	RootCAs *x509.CertPool

	// token authenticates the agent to the mediator, pseudonymToken to
	// the pseudonym service. Neither is ever logged (Secrets).
	token, pseudonymToken string
}

// file is the configuration file as written.
type file struct {
	Listen             string `json:"listen"`
	MediatorURL        string `json:"mediator_url"`
	TokenFile          string `json:"token_file"`
	RosterGenesis      string `json:"roster_genesis"`
	PseudonymTokenFile string `json:"pseudonym_token_file"`
	StateFile          string `json:"state_file"`
	CacheSize          int    `json:"cache_size"`
	RosterRefresh      string `json:"roster_refresh"`
	CAFile             string `json:"ca_file"`
}

// Load reads the configuration file at path, strictly (an unknown or
// repeated field is an error), checks every field, and reads the tokens
// and the CA bundle the file names. A listen address that is neither a
// unix socket nor loopback is refused here, before anything starts.
// Errors name the file and the field, never a secret.
func Load(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("agent: config: %w", err)
	}
	var f file
	if err := jsonv2.Unmarshal(b, &f, jsonv2.RejectUnknownMembers(true)); err != nil {
		return Config{}, fmt.Errorf("agent: config %s: %w", path, err)
	}
	cfg, err := f.check()
	if err != nil {
		return Config{}, fmt.Errorf("agent: config %s: %w", path, err)
	}
	if err := f.load(&cfg); err != nil {
		return Config{}, fmt.Errorf("agent: config %s: %w", path, err)
	}
	return cfg, nil
}

// check validates the fields that need no file and returns them parsed.
func (f file) check() (Config, error) {
	var cfg Config
	var err error
	if cfg.Listen, err = ParseAddress(f.Listen); err != nil {
		return Config{}, err
	}
	if f.MediatorURL == "" {
		return Config{}, errors.New("mediator_url is required")
	}
	if u, err := url.Parse(f.MediatorURL); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return Config{}, errors.New("mediator_url must be an http:// or https:// URL with a host")
	}
	cfg.MediatorURL = f.MediatorURL
	if !roster.ValidDigest(f.RosterGenesis) {
		return Config{}, errors.New("roster_genesis must be the genesis digest you pin (sha256: and 64 hex digits)")
	}
	cfg.RosterGenesis = f.RosterGenesis
	for _, req := range [][2]string{{"token_file", f.TokenFile}, {"pseudonym_token_file", f.PseudonymTokenFile}, {"state_file", f.StateFile}} {
		if req[1] == "" {
			return Config{}, fmt.Errorf("%s is required", req[0])
		}
	}
	cfg.StateFile = f.StateFile
	if st, err := os.Stat(filepath.Dir(f.StateFile)); err != nil || !st.IsDir() {
		return Config{}, fmt.Errorf("state_file: its directory %s does not exist", filepath.Dir(f.StateFile))
	}
	cfg.CacheSize = f.CacheSize
	cfg.RosterRefresh = DefaultRosterRefresh
	if f.RosterRefresh != "" {
		d, err := time.ParseDuration(f.RosterRefresh)
		if err != nil || d < minRosterRefresh {
			return Config{}, fmt.Errorf("roster_refresh must be a duration of at least %s (such as 30s, 1m, 5m)", minRosterRefresh)
		}
		cfg.RosterRefresh = d
	}
	return cfg, nil
}

// load reads the tokens and the CA bundle into cfg.
func (f file) load(cfg *Config) error {
	var err error
	if cfg.token, err = secretfile.Read(f.TokenFile); err != nil {
		return fmt.Errorf("token_file: %w", err)
	}
	if cfg.pseudonymToken, err = secretfile.Read(f.PseudonymTokenFile); err != nil {
		return fmt.Errorf("pseudonym_token_file: %w", err)
	}
	if f.CAFile != "" {
		pem, err := os.ReadFile(f.CAFile)
		if err != nil {
			return fmt.Errorf("ca_file: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return fmt.Errorf("ca_file %s holds no PEM certificate", f.CAFile)
		}
	}
	return nil
}

// Secrets are the configuration's secret values, the two tokens: for a
// log's mask, the last line of defence.
func (c Config) Secrets() []string { return []string{c.token, c.pseudonymToken} }

// Address is where the agent listens: Network "unix" with the socket's
// absolute path, or "tcp" with a host:port whose host is a loopback
// address or localhost.
type Address struct {
	Network string
	Address string
}

// String is the address as the configuration writes it.
func (a Address) String() string {
	if a.Network == "unix" {
		return "unix://" + a.Address
	}
	return a.Address
}

// ErrNotLocal: the listen address could be reached from another host.
// The agent takes raw identifiers and keys from callers it does not
// authenticate, so only this host's may reach it.
var ErrNotLocal = errors.New("the agent listens only on a unix socket (unix:///path) or a loopback address (127.0.0.1:PORT, [::1]:PORT, localhost:PORT)")

// ParseAddress parses a listen address: "unix:///absolute/path.sock",
// or host:port with host a loopback IP (127.0.0.0/8, ::1) or localhost.
// Anything else (an empty host, 0.0.0.0, any other address or name) is
// ErrNotLocal.
func ParseAddress(s string) (Address, error) {
	if s == "" {
		return Address{}, fmt.Errorf("listen is required: %w", ErrNotLocal)
	}
	if path, ok := strings.CutPrefix(s, "unix://"); ok {
		if !filepath.IsAbs(path) || filepath.Clean(path) != path {
			return Address{}, fmt.Errorf("listen %q: a unix socket needs a clean absolute path (unix:///run/mediator/agent.sock)", s)
		}
		return Address{Network: "unix", Address: path}, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return Address{}, fmt.Errorf("listen %q: %w", s, ErrNotLocal)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return Address{}, fmt.Errorf("listen %q: the port must be a number from 0 to 65535", s)
	}
	if !loopbackHost(host) {
		return Address{}, fmt.Errorf("listen %q: %w", s, ErrNotLocal)
	}
	return Address{Network: "tcp", Address: s}, nil
}

// loopbackHost reports whether host is localhost or a loopback IP.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Zone() == "" && ip.Unmap().IsLoopback()
}

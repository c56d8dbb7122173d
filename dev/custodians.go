package dev

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/custodian"
	vaultsetup "github.com/mediatorhq/mediator/deploy/vault"
	"github.com/mediatorhq/mediator/escrow"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/wire"
)

// CustodianThreshold is K for the dev custodians (N is
// vaultsetup.DefaultCustodians).
const CustodianThreshold = 3

// Custodian is one dev custodian, prepared: its configuration (written to
// ConfigPath) and the bearer tokens it accepts. It runs as a listener of
// `mediator dev` or as a process of its own (`mediator custodian serve
// --config ConfigPath`).
type Custodian struct {
	Name          string
	ConfigPath    string
	Config        custodian.Config
	URL           string
	MediatorToken string
	OperatorToken string
	// MediatorTokenFile is the file holding MediatorToken, for the
	// mediator's custodians file.
	MediatorTokenFile string
	// Info is the custodian's public keys, created by custodian.Init.
	Info wire.CustodianInfo
	// Genesis is the roster's first version, which the custodian pins
	// (every dev custodian pins the same one).
	Genesis roster.Roster
}

// CustodianOptions prepare dev custodians.
type CustodianOptions struct {
	// Dir holds their files (configs, tokens), 0700.
	Dir string
	// Approvers are the approvers of the genesis roster every custodian
	// pins.
	Approvers []roster.Approver
	// PKCS11 replaces custodian i's Transit key (1-based) with a key on a
	// PKCS#11 token.
	PKCS11 map[int]*custodian.PKCS11File
	// PolicyDir, if set for custodian i, is its own release policy.
	PolicyDir map[int]string
	// MinRetention is every custodian's minimum retention (default 90 days).
	MinRetention time.Duration
	// Generation, if set, gives each custodian a fresh identity and store
	// under its prefix (custodians/<name>/<generation>): tests sharing one
	// Vault start each set anew.
	Generation string
	// WitnessLogs, if set, make every custodian a witness of these logs.
	WitnessLogs []custodian.WitnessLog
	// Addrs, if set, are the addresses custodian i (0-based) listens on,
	// for a caller that holds the ports open itself; by default each gets a
	// free port of 127.0.0.1.
	Addrs []string
	// Pseudonym, if set, is the pseudonym service the genesis names.
	Pseudonym *roster.PseudonymService
}

// PrepareCustodians bootstraps vaultsetup.DefaultCustodians custodians on
// the Vault admin (a token allowed to manage it) points at: each gets its
// own Transit key, KV prefix, policy and AppRole (deploy/vault), its own
// tokens, its identity (custodian.Init), and a configuration file in
// opts.Dir listening on a free port of 127.0.0.1 that pins the genesis
// roster of opts.Approvers and these custodians (Genesis).
func PrepareCustodians(ctx context.Context, admin *vaultapi.Client, opts CustodianOptions) ([]Custodian, error) {
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("dev: custodians dir: %w", err)
	}
	if len(opts.Approvers) == 0 {
		return nil, errors.New("dev: custodians need the approvers of their genesis roster")
	}
	addrs := opts.Addrs
	if len(addrs) < vaultsetup.DefaultCustodians {
		free, err := freeLocalAddrs(vaultsetup.DefaultCustodians - len(addrs))
		if err != nil {
			return nil, err
		}
		addrs = append(append([]string(nil), addrs...), free...)
	}
	var out []Custodian
	for i := 1; i <= vaultsetup.DefaultCustodians; i++ {
		name := vaultsetup.CustodianName(i)
		setup, err := vaultsetup.BootstrapCustodian(ctx, admin, name)
		if err != nil {
			return nil, err
		}
		addr := addrs[i-1]
		c := Custodian{Name: name, URL: "http://" + addr, MediatorToken: rand.Text(), OperatorToken: rand.Text()}
		files := map[string]string{"secret-id": setup.SecretID, "mediator-token": c.MediatorToken, "operator-token": c.OperatorToken}
		paths := map[string]string{}
		for what, secret := range files {
			p := filepath.Join(opts.Dir, name+"."+what)
			if err := os.WriteFile(p, []byte(secret+"\n"), 0o600); err != nil {
				return nil, fmt.Errorf("dev: custodian %s: %w", name, err)
			}
			paths[what] = p
		}
		c.MediatorTokenFile = paths["mediator-token"]
		prefix := setup.KVPrefix
		if opts.Generation != "" {
			prefix += "/" + opts.Generation
		}
		cfg := custodian.Config{Name: name, Listen: addr,
			Vault:             custodian.VaultLogin{Addr: admin.Address(), RoleID: setup.RoleID, SecretIDFile: paths["secret-id"]},
			KV:                custodian.KVConfig{Mount: vaultsetup.KVMount, Prefix: prefix},
			MediatorTokenFile: paths["mediator-token"], OperatorTokenFile: paths["operator-token"],
			PolicyDir: opts.PolicyDir[i]}
		if len(opts.WitnessLogs) > 0 {
			cfg.Witness = &custodian.WitnessConfig{Logs: opts.WitnessLogs}
		}
		if opts.MinRetention > 0 {
			cfg.MinRetention.Duration = opts.MinRetention
		}
		if p := opts.PKCS11[i]; p != nil {
			cfg.PKCS11 = p
		} else {
			cfg.Transit = &custodian.TransitConfig{Mount: vaultsetup.TransitMount, Key: setup.TransitKey}
		}
		c.ConfigPath = filepath.Join(opts.Dir, name+".json")
		c.Config = cfg
		if c.Info, err = custodian.Init(ctx, cfg, nil); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	genesis := Genesis(opts.Approvers, out)
	genesis.Pseudonym = opts.Pseudonym
	digest, err := genesis.Digest()
	if err != nil {
		return nil, err
	}
	for i := range out {
		c := &out[i]
		c.Genesis = genesis
		c.Config.RosterGenesis = digest
		if err := writeJSONFile(c.ConfigPath, c.Config, 0o600); err != nil {
			return nil, err
		}
		// Read back as the custodian will: checked, with its defaults.
		b, err := os.ReadFile(c.ConfigPath)
		if err != nil {
			return nil, fmt.Errorf("dev: %w", err)
		}
		if c.Config, err = custodian.ParseConfig(b); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Genesis is the first roster version for these approvers and custodians:
// each custodian at its URL with the keys it created, threshold
// CustodianThreshold, and the default roster rule.
func Genesis(approvers []roster.Approver, cs []Custodian) roster.Roster {
	r := roster.Roster{Version: 1, Approvers: approvers, Threshold: CustodianThreshold, Rule: roster.DefaultRule()}
	for _, c := range cs {
		r.Custodians = append(r.Custodians, roster.Custodian{Name: c.Name, URL: c.URL, HPKEKey: c.Info.HPKEKey, SigningKey: c.Info.SigningKey})
	}
	return r
}

// WaitCustodians waits until every custodian answers its public key
// document, and writes the mediator's custodians file at path: the set
// (threshold CustodianThreshold) with the keys the custodians publish. It
// returns the set's digest, which depositors pin.
func WaitCustodians(ctx context.Context, cs []Custodian, path string, within time.Duration) (string, error) {
	f := escrow.CustodianFile{Threshold: CustodianThreshold}
	deadline := time.Now().Add(within)
	for _, c := range cs {
		var info wire.CustodianInfo
		for {
			var err error
			if info, err = fetchInfo(ctx, c.URL); err == nil {
				break
			}
			if time.Now().After(deadline) {
				return "", fmt.Errorf("dev: custodian %s did not answer within %s: %w", c.Name, within, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if info.Name != c.Name {
			return "", fmt.Errorf("dev: %s answers as %q", c.URL, info.Name)
		}
		f.Custodians = append(f.Custodians, escrow.CustodianEntry{Name: c.Name, URL: c.URL, TokenFile: c.MediatorTokenFile,
			HPKEKey: info.HPKEKey, SigningKey: info.SigningKey})
	}
	if err := writeJSONFile(path, f, 0o600); err != nil {
		return "", err
	}
	return f.Set().Digest()
}

func fetchInfo(ctx context.Context, url string) (wire.CustodianInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v1/custodian", nil)
	if err != nil {
		return wire.CustodianInfo{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return wire.CustodianInfo{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return wire.CustodianInfo{}, errors.New(resp.Status)
	}
	var info wire.CustodianInfo
	return info, json.NewDecoder(resp.Body).Decode(&info)
}

// freeLocalAddrs returns n distinct 127.0.0.1 addresses with ports free
// now: all n are held open until all are chosen, so the system cannot hand
// out one port twice.
func freeLocalAddrs(n int) ([]string, error) {
	out := make([]string, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("dev: free port: %w", err)
		}
		defer l.Close()
		out = append(out, "127.0.0.1:"+strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
	}
	return out, nil
}

func writeJSONFile(path string, v any, mode os.FileMode) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("dev: %s: %w", path, err)
	}
	if err := os.WriteFile(path, append(b, '\n'), mode); err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	return nil
}

// Approver is a dev approver: an approver id (the token subject), roles and
// a signing key kept in the state directory.
type Approver struct {
	ID      string
	Roles   []string
	KeyFile string
	Public  ed25519.PublicKey
}

// devApprovers are the roster entries `mediator dev` makes: dual control
// needs an approver of each required role, and requests an officer who
// signs them.
var devApprovers = []struct {
	id, role string
}{{"dev-legal", "legal"}, {"dev-security", "security"}, {"dev-officer", roster.RoleOfficer}}

// Approvers returns the dev approvers, making their signing keys (0600) in
// stateDir on first use.
func Approvers(stateDir string) ([]Approver, error) {
	var out []Approver
	for _, a := range devApprovers {
		path := filepath.Join(stateDir, a.id+".key")
		file, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			if file, _, err = approval.NewSigningKey(); err == nil {
				err = os.WriteFile(path, file, 0o600)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("dev: approver key %s: %w", a.id, err)
		}
		priv, err := approval.ParseSigningKey(file)
		if err != nil {
			return nil, fmt.Errorf("dev: approver key %s: %w", a.id, err)
		}
		out = append(out, Approver{ID: a.id, Roles: []string{a.role}, KeyFile: path, Public: priv.Public().(ed25519.PublicKey)})
		clear(priv)
	}
	return out, nil
}

// RosterApprovers is the dev approvers as the roster lists them.
func RosterApprovers(as []Approver) []roster.Approver {
	out := make([]roster.Approver, len(as))
	for i, a := range as {
		out[i] = roster.Approver{ID: a.ID, Roles: a.Roles, PublicKey: a.Public}
	}
	return out
}

// WitnessQuorum is how many dev custodians must cosign a checkpoint before
// the dev instance publishes it.
const WitnessQuorum = CustodianThreshold

// WriteWitnesses writes the mediator's witnesses file for custodians that
// witness its log: each custodian by its name, URL and the witness key its
// public key document shows, with quorum WitnessQuorum.
func WriteWitnesses(ctx context.Context, cs []Custodian, path string) error {
	var ws []map[string]string
	for _, c := range cs {
		info, err := fetchInfo(ctx, c.URL)
		if err != nil {
			return fmt.Errorf("dev: custodian %s: %w", c.Name, err)
		}
		if info.WitnessKey == "" {
			return fmt.Errorf("dev: custodian %s is not a witness", c.Name)
		}
		ws = append(ws, map[string]string{"name": c.Name, "url": c.URL, "verifier_key": info.WitnessKey})
	}
	return writeJSONFile(path, map[string]any{"quorum": WitnessQuorum, "witnesses": ws}, 0o600)
}

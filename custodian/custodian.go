// Package custodian is the custodian service (`mediator custodian serve`):
// one share holder of the escrow, run by its own organisation with its own
// credentials, whose correctness never depends on the caller being honest.
//
// A custodian keeps its HPKE and Ed25519 private keys, and every share it
// holds, wrapped by its own Vault Transit key or HSM, in its own Vault KV
// store. It stores a share only when the share opens as its own share of
// the key named (the HPKE info binds it), and signs a receipt. It releases
// a share only when it has checked the release itself: the request parsed
// from its canonical bytes, every approval's signature against the
// approvers of a roster chain that verifies from the genesis it pins, its
// own copy of the release policy, and its own record of what it stored and
// when. Only then is the share re-sealed to the request's recipient, never
// to the caller, once per request: a write-once record keeps what was
// given, and the same release asked again (its answer lost) gets the same
// sealed bytes and receipt. The mediator coordinates and logs; it cannot
// open a share.
//
// A release runs in phases (release.go, releaseshares.go), each stating
// what holds when it returns: verify the request and roster, check the log
// evidence, decide, check each share against the custodian's own records,
// open and seal, and record the release write-once.
package custodian

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/mediatorhq/mediator/policy"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/secretfile"
	"github.com/mediatorhq/mediator/vaultclient"
	"github.com/mediatorhq/mediator/wire"
	"github.com/mediatorhq/mediator/witness"
)

// Custodian is one running custodian. It is safe for concurrent use.
type Custodian struct {
	cfg        Config
	vault      *vaultapi.Client
	wrapper    Wrapper
	store      *store
	id         *identity
	keys       *keyring // the HPKE keys that open deposits (hpkekeys.go)
	rosterMu   sync.Mutex
	verified   verifiedChain // under rosterMu
	index      *depositIndex // nil until serving
	commitMu   sync.Mutex    // orders commits and aborts
	witness    *witness.Witness
	witnessKey string
	policy     *policy.Engine
	mediator   [sha256.Size]byte // SHA-256 of the mediator's bearer token
	operator   [sha256.Size]byte // SHA-256 of the operator's bearer token
	clientCAs  *x509.CertPool    // client_ca_file: who may call with a token; nil for any caller
	log        *slog.Logger
	metrics    *Metrics
	now        func() time.Time
	closers    []func() error
}

// Open connects the custodian to its Vault (and HSM), loads or makes its
// keys, reads the approvers it trusts and loads its release policy, which
// must pass the policy package's data checks and probes.
func Open(ctx context.Context, cfg Config, log *slog.Logger, metrics *Metrics) (*Custodian, error) {
	if !roster.ValidDigest(cfg.RosterGenesis) {
		return nil, errors.New("custodian: roster_genesis is required to serve: the sha256: digest of the roster's first version (`mediator custodian init` prints this custodian's keys for it)")
	}
	return open(ctx, cfg, log, metrics, true)
}

// Init creates the custodian's identity in its store if it has none, and
// returns its public keys: what the team founding the roster writes into
// the genesis, before any custodian can pin it. It loads no policy and
// serves nothing. The HPKE key it returns is always the first, made with
// the identity, even after rotations (RotateHPKE returns each new one;
// Info the one in force).
func Init(ctx context.Context, cfg Config, log *slog.Logger) (wire.CustodianInfo, error) {
	c, err := open(ctx, cfg, log, nil, false)
	if err != nil {
		return wire.CustodianInfo{}, err
	}
	defer c.Close()
	return wire.CustodianInfo{Name: cfg.Name, HPKEKey: c.id.hpkePub, SigningKey: c.id.publicSigningKey()}, nil
}

func open(ctx context.Context, cfg Config, log *slog.Logger, metrics *Metrics, serving bool) (*Custodian, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.fillDefaults()
	c := &Custodian{cfg: cfg, log: log, metrics: metrics, now: time.Now}
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()
	var err error
	for _, t := range []struct {
		file string
		dst  *[sha256.Size]byte
	}{{cfg.MediatorTokenFile, &c.mediator}, {cfg.OperatorTokenFile, &c.operator}} {
		tok, err := secretfile.Read(t.file)
		if err != nil {
			return nil, fmt.Errorf("custodian: %w", err)
		}
		*t.dst = sha256.Sum256([]byte(tok))
	}
	if subtle.ConstantTimeCompare(c.mediator[:], c.operator[:]) == 1 {
		return nil, errors.New("custodian: the mediator's token and the operator's token must differ")
	}
	if serving && cfg.ClientCAFile != "" {
		if c.clientCAs, err = loadClientCAs(cfg.ClientCAFile); err != nil {
			return nil, err
		}
	}
	if serving {
		if c.policy, err = policy.LoadRelease(ctx, cfg.PolicyDir); err != nil {
			if metrics != nil {
				metrics.policyRefused.Inc()
			}
			log.Error("release policy refused; the custodian does not serve", "custodian", cfg.Name, "err", err)
			return nil, fmt.Errorf("custodian: release policy: %w", err)
		}
	}
	var vm *vaultclient.Metrics
	if metrics != nil {
		vm = metrics.vault
	}
	c.vault, err = vaultclient.Connect(ctx, log, vaultclient.Config{Addr: cfg.Vault.Addr, RoleID: cfg.Vault.RoleID,
		RoleIDFile: cfg.Vault.RoleIDFile, SecretIDFile: cfg.Vault.SecretIDFile, TokenFile: cfg.Vault.TokenFile, Metrics: vm})
	if err != nil {
		return nil, fmt.Errorf("custodian: %w", err)
	}
	if c.wrapper, err = c.openWrapper(); err != nil {
		return nil, err
	}
	c.store = newStore(c.vault, cfg.KV.Mount, cfg.KV.Prefix)
	if c.id, err = loadIdentity(ctx, cfg.Name, c.store, c.wrapper); err != nil {
		return nil, err
	}
	if c.keys, err = c.loadKeyring(ctx); err != nil {
		return nil, err
	}
	if serving {
		if c.index, err = loadIndex(ctx, c.store, c.now().Add(-cfg.AbortWindow.Duration-time.Minute)); err != nil {
			return nil, err
		}
	}
	if serving && cfg.Witness != nil {
		if c.witness, c.witnessKey, err = c.openWitness(); err != nil {
			return nil, err
		}
	}
	ok = true
	if serving {
		version := c.showRosterVersion(ctx)
		c.logKeyInForce("custodian ready", version, "policy_revision", c.policy.Revision(), "roster_genesis", cfg.RosterGenesis,
			"escrows_known", c.index.size())
	}
	return c, nil
}

// openWrapper connects the custodian's Transit key or HSM.
func (c *Custodian) openWrapper() (Wrapper, error) {
	if t := c.cfg.Transit; t != nil {
		return NewTransitWrapper(c.vault, t.Mount, t.Key), nil
	}
	settings, err := c.cfg.PKCS11.settings()
	if err != nil {
		return nil, err
	}
	hsm, err := OpenPKCS11(settings)
	if err != nil {
		return nil, err
	}
	c.closers = append(c.closers, hsm.Close)
	return hsm, nil
}

// Close releases the HSM session, if any.
func (c *Custodian) Close() error {
	var errs []error
	for _, f := range c.closers {
		errs = append(errs, f())
	}
	c.closers = nil
	return errors.Join(errs...)
}

// Name is the custodian's name.
func (c *Custodian) Name() string { return c.cfg.Name }

// Info is the custodian's public face: its keys and policy revision. Its
// HPKE key is the key in force, the one the newest roster version it
// verified lists for it; none (a zero key) when that version lists no key
// it holds.
func (c *Custodian) Info() wire.CustodianInfo {
	pub, _ := c.keys.inForceKey()
	return wire.CustodianInfo{Name: c.cfg.Name, HPKEKey: pub, SigningKey: c.id.publicSigningKey(),
		PolicyRevision: c.policy.Revision(), WitnessKey: c.witnessKey}
}

// Ready probes the custodian's Vault.
func (c *Custodian) Ready(ctx context.Context) error { return vaultclient.Ready(ctx, c.vault) }

// aad is the wrapping context of a share: conversation and key id.
func aad(conversationID, keyID string) []byte {
	return []byte(conversationID + "\x00" + keyID)
}

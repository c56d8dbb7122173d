// Package custodians runs the five dev custodians inside a test
// process, each its own listener with its own Vault AppRole limited to its
// own key and prefix, on the test binary's real Vault: what package tests
// of escrow and access deposit to and release from. End-to-end tests run
// them as processes of their own instead.
package custodians

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/mediatorhq/mediator/custodian"
	vaultsetup "github.com/mediatorhq/mediator/deploy/vault"
	"github.com/mediatorhq/mediator/dev"
	"github.com/mediatorhq/mediator/escrow"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/shares"
	"github.com/mediatorhq/mediator/test/harness"
)

// Set is five running custodians and what the mediator needs of them.
type Set struct {
	Custodians []dev.Custodian
	Running    []*custodian.Custodian
	Metrics    []*custodian.Metrics
	File       escrow.CustodianFile
	Digest     string
	servers    []*http.Server
	held       []net.Listener // each custodian's first listener
	t          testing.TB
}

// Prepare makes five custodians on the Vault admin points at (a token
// allowed to manage it), pinning the genesis roster of opts.Approvers (two
// approvers no one holds the keys of, when none are given): each its own
// Transit key, AppRole and, with a
// fresh generation unless opts names one, identity and store; their
// configurations in opts.Dir (a temporary directory by default). Each
// custodian's port is held open from now on, so that nothing else takes it
// before the custodian serves: close held[i] just before serving custodian
// i.
func Prepare(t testing.TB, admin *vaultapi.Client, opts dev.CustodianOptions) (cs []dev.Custodian, held []net.Listener, dir string) {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.Generation == "" {
		opts.Generation = strings.ToLower(rand.Text()[:10])
	}
	if len(opts.Approvers) == 0 {
		// Tests that release nothing still need a genesis to pin: two
		// approvers whose keys no one keeps.
		for _, a := range [][2]string{{"nobody-legal", "legal"}, {"nobody-security", "security"}} {
			pub, _, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			opts.Approvers = append(opts.Approvers, roster.Approver{ID: a[0], Roles: []string{a[1]}, PublicKey: pub})
		}
	}
	held = make([]net.Listener, vaultsetup.DefaultCustodians)
	opts.Addrs = make([]string, len(held))
	for i := range held {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		held[i], opts.Addrs[i] = l, l.Addr().String()
	}
	t.Cleanup(func() {
		for _, l := range held {
			if l != nil { // a custodian that served took its listener
				l.Close()
			}
		}
	})
	cs, err := dev.PrepareCustodians(context.Background(), admin, opts)
	if err != nil {
		t.Fatal(err)
	}
	return cs, held, opts.Dir
}

// Start prepares five custodians on the Vault of env and runs them in this
// process until the test ends.
func Start(t testing.TB, env *harness.Env, opts dev.CustodianOptions) *Set {
	t.Helper()
	ctx := context.Background()
	admin, err := vaultapi.NewClient(&vaultapi.Config{Address: env.Vault.Addr})
	if err != nil {
		t.Fatal(err)
	}
	admin.SetToken(env.Vault.Token)
	cs, held, dir := Prepare(t, admin, opts)
	s := &Set{Custodians: cs, t: t, Running: make([]*custodian.Custodian, len(cs)), servers: make([]*http.Server, len(cs)),
		Metrics: make([]*custodian.Metrics, len(cs)), held: held}
	for i := range cs {
		s.Run(i)
	}
	t.Cleanup(func() {
		for i := range s.servers {
			s.Stop(i)
		}
	})
	path := filepath.Join(dir, "mediator-custodians.json")
	if s.Digest, err = dev.WaitCustodians(ctx, cs, path, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if s.File, err = readFile(path); err != nil {
		t.Fatal(err)
	}
	return s
}

// Run starts custodian i (again, after Stop).
func (s *Set) Run(i int) {
	s.t.Helper()
	m := custodian.NewMetrics()
	c, err := custodian.Open(context.Background(), s.Custodians[i].Config, nil, m)
	if err != nil {
		s.t.Fatalf("custodian %s: %v", s.Custodians[i].Name, err)
	}
	ln := s.held[i]
	s.held[i] = nil
	for range 50 {
		if ln != nil {
			break
		}
		if ln, err = net.Listen("tcp", s.Custodians[i].Config.Listen); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond) // the port of a stopped custodian may linger
	}
	if err != nil {
		s.t.Fatalf("custodian %s: %v", s.Custodians[i].Name, err)
	}
	srv := &http.Server{Handler: c.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.t.Errorf("custodian %s: %v", s.Custodians[i].Name, err)
		}
	}()
	s.Running[i], s.servers[i], s.Metrics[i] = c, srv, m
}

// Counter returns the value of counter family name of custodian i (since
// it last started) with the given label values, in label order; 0 when it
// has none.
func (s *Set) Counter(i int, name string, labelValues ...string) float64 {
	fams, err := s.Metrics[i].Registry.Gather()
	if err != nil {
		s.t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) != len(labelValues) {
				continue
			}
			for j, l := range m.GetLabel() {
				if l.GetValue() != labelValues[j] {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// Stop stops custodian i, as if its host went down.
func (s *Set) Stop(i int) {
	if s.servers[i] == nil {
		return
	}
	_ = s.servers[i].Close()
	_ = s.Running[i].Close()
	s.servers[i], s.Running[i] = nil, nil
}

// Escrow returns an escrow service on these custodians, keeping its
// escrows in deposits and their destruction and holds in lifecycle.
func (s *Set) Escrow(t testing.TB, deposits escrow.DepositRows, lifecycle escrow.LifecycleRows) *escrow.Service {
	t.Helper()
	return s.EscrowWith(t, escrow.Config{Deposits: deposits, Lifecycle: lifecycle})
}

// EscrowWith returns an escrow service configured as cfg, on these
// custodians (its Set and Remotes are theirs).
func (s *Set) EscrowWith(t testing.TB, cfg escrow.Config) *escrow.Service {
	t.Helper()
	remotes, err := s.File.Remotes()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Set, cfg.Remotes = s.File.Set(), remotes
	svc, err := escrow.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// SharesSet is the custodian set as depositors pin it.
func (s *Set) SharesSet() shares.Set { return s.File.Set() }

// Signer returns custodian i's public receipt key.
func (s *Set) Signer(i int) ed25519.PublicKey { return s.File.Custodians[i].SigningKey }

func readFile(path string) (escrow.CustodianFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return escrow.CustodianFile{}, err
	}
	return escrow.ParseCustodians(b)
}

// Genesis is the roster genesis every custodian of the set pins.
func (s *Set) Genesis() roster.Roster { return s.Custodians[0].Genesis }

// GenesisDigest is the digest of Genesis.
func (s *Set) GenesisDigest() string {
	d, err := s.Genesis().Digest()
	if err != nil {
		s.t.Fatal(err)
	}
	return d
}

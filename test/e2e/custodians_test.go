package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mediatorhq/mediator/dev"
	"github.com/mediatorhq/mediator/dev/servers"
	"github.com/mediatorhq/mediator/test/harness/custodians"
)

// custodianProcs are the five custodians, each a `mediator custodian
// serve` process of its own, with its own Vault AppRole limited to its own
// Transit key (or, for custodian-5 when asked, a SoftHSM2 token) and KV
// prefix.
type custodianProcs struct {
	cs     []dev.Custodian
	procs  []*process
	file   string // the mediator's custodians file
	digest string // the set's digest, as depositors pin it
	dir    string
}

// startCustodians prepares and starts five custodians on v (the shared
// Vault when nil) trusting approvers, and writes the mediator's custodians
// file.
func startCustodians(t *testing.T, v *servers.Vault, opts dev.CustodianOptions) *custodianProcs {
	t.Helper()
	if v == nil {
		v = env.Vault
	}
	cs, held, dir := custodians.Prepare(t, adminVault(t, v), opts)
	c := &custodianProcs{cs: cs, procs: make([]*process, len(cs)), dir: dir, file: filepath.Join(dir, "mediator-custodians.json")}
	for i := range cs {
		held[i].Close()
		c.start(t, i)
	}
	var err error
	if c.digest, err = dev.WaitCustodians(context.Background(), cs, c.file, 60*time.Second); err != nil {
		for _, p := range c.procs {
			t.Log(p.Output())
		}
		t.Fatal(err)
	}
	return c
}

// start runs custodian i's process.
func (c *custodianProcs) start(t *testing.T, i int) {
	t.Helper()
	c.procs[i] = start(t, nil, "custodian", "serve", "--config", c.cs[i].ConfigPath)
	waitStatus(t, c.procs[i], c.cs[i].URL+"/readyz", 200, 60*time.Second)
}

// stop stops custodian i, as its host going down.
func (c *custodianProcs) stop(t *testing.T, i int) {
	t.Helper()
	_ = c.procs[i].stop(t, syscall.SIGKILL)
}

// output is every custodian's log.
func (c *custodianProcs) output() string {
	var b strings.Builder
	for _, p := range c.procs {
		b.WriteString(p.Output())
	}
	return b.String()
}

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mediatorhq/mediator/dev"
	"github.com/mediatorhq/mediator/loadgen"
)

// TestTwoInstancesKeepOneLog: two mediator processes on one database, both
// ingesting and depositing at once, make one gapless log that verifies, and
// concurrent deposits of one key id through both make one escrow.
func TestTwoInstancesKeepOneLog(t *testing.T) {
	cs := startCustodians(t, nil, dev.CustodianOptions{})
	a := startServe(t, serveOpts{custodians: cs})
	b := startServe(t, serveOpts{dsn: a.dsn, custodians: cs})
	instances := []*instance{a, b}
	for _, in := range instances {
		in.waitReady(t, 60*time.Second)
	}
	var accepted atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(3 * time.Second)
	for i, in := range instances {
		tok, _ := in.issuer.Issue(fmt.Sprintf("gw-%d", i), []string{"ingest"}, time.Hour)
		for w := range 2 {
			wg.Go(func() {
				var body bytes.Buffer
				for n := 0; time.Now().Before(deadline); n++ {
					body.Reset()
					loadgen.WriteBatch(&body, fmt.Sprintf("scale-%d-%d", i, w), int64(n*200), 200)
					code, resp := post(t, in.base+"/v1/events", "application/json", tok, body.Bytes())
					if code != 200 {
						t.Errorf("instance %d: ingest %d %v", i, code, resp)
						return
					}
					accepted.Add(int64(resp["accepted"].(float64)))
				}
			})
		}
	}
	// Meanwhile, the same key id deposited through both instances at once.
	key := make([]byte, 32)
	rand.Read(key)
	ids := make([]string, 6)
	for j := range ids {
		in := instances[j%2]
		tok, _ := in.issuer.Issue("gw-deposit", []string{"depositor"}, time.Hour)
		gw, _ := newClient(in.base, tok, http.DefaultClient)
		wg.Go(func() {
			d, err := gw.Deposit(context.Background(), cs.digest, conv("conv-race"), "k", key)
			if err != nil {
				t.Errorf("deposit: %v", err)
				return
			}
			ids[j] = d.EscrowID
		})
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("concurrent deposits of one key id made several escrows: %v", ids)
		}
	}
	if accepted.Load() < 1000 {
		t.Fatalf("only %d events accepted", accepted.Load())
	}

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, a.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var count, maxSeq, escrows int64
	if err := conn.QueryRow(ctx, "SELECT count(*), coalesce(max(seq), -1) FROM audit_entries").Scan(&count, &maxSeq); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM escrow_keys").Scan(&escrows); err != nil {
		t.Fatal(err)
	}
	if count != maxSeq+1 || escrows != 1 || count != accepted.Load()+1 {
		t.Fatalf("log: %d entries, max seq %d, %d escrows; %d events accepted (+1 deposit)", count, maxSeq, escrows, accepted.Load())
	}
	aud, _ := b.issuer.Issue("aud", []string{"auditor"}, time.Hour)
	signedCheckpoint(t, b, aud, count)
	op := []string{"DATABASE_URL=" + a.dsn, "VAULT_ADDR=" + env.Vault.Addr, "VAULT_TOKEN=" + env.Vault.Token, "MEDIATOR_LOG_ORIGIN=mediator/audit"}
	out, stderr, err := runCmd(t, op, "audit", "verify")
	if err != nil || !strings.Contains(out, fmt.Sprintf("ok: %d entries", count)) {
		t.Fatalf("audit verify: %v\n%s\n%s", err, out, stderr)
	}
}

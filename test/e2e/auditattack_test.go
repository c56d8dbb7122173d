package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestCheckpointTableAndColumnsAttacks plays the service's database role
// (a superuser with the append-only triggers off) against a running
// service:
//   - a checkpoint row with a huge tree size, which used to silence
//     checkpointing for good: refused, counted, never served, and
//     checkpointing goes on;
//   - an unsigned row planted at the next size: refused, counted, never
//     served, and checkpointing goes on past it;
//   - an entry's occurred_at moved out of an export's window: the entry is
//     hidden from the time-bounded export, and audit verify names it.
func TestCheckpointTableAndColumnsAttacks(t *testing.T) {
	in := startServe(t, serveOpts{})
	in.waitReady(t, 60*time.Second)
	gw, _ := in.issuer.Issue("gateway-1", []string{"ingest"}, time.Hour)
	aud, _ := in.issuer.Issue("auditor-1", []string{"auditor"}, time.Hour)
	send := func(from, n int) {
		t.Helper()
		var evs []map[string]any
		for i := from; i < from+n; i++ {
			evs = append(evs, event(fmt.Sprintf("att-%d", i), conv("conv-att"), nil))
		}
		if code, body := post(t, in.base+"/v1/events", "application/json", gw, batch(evs...)); code != 200 {
			t.Fatalf("events: %d %v", code, body)
		}
	}
	send(0, 10)
	signedCheckpoint(t, in, aud, 10)

	db, err := pgx.Connect(context.Background(), in.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	mustExec(t, db, "SET session_replication_role = replica")
	mustExec(t, db, `INSERT INTO audit_checkpoints (tree_size, root_hash, note) VALUES (999999999, $1, 'mediator/audit\n999999999\nAAAA\n\n— forged x\n')`, make([]byte, 32))
	send(10, 5)
	if n, _ := signedCheckpoint(t, in, aud, 15); n != 15 {
		t.Fatalf("checkpointing after a row ahead of the tree: %d", n)
	}
	if got := gauge(t, in, `mediator_audit_checkpoint_refused_total{reason="ahead_of_tree"}`); got == "" || got == "0" {
		t.Fatalf("the refused row was not counted: %q", got)
	}
	_, text := getText(t, in.base+"/v1/audit/checkpoint", aud)
	if strings.Contains(text, "999999999") {
		t.Fatalf("the forged row is served: %s", text)
	}

	// An unsigned row at the next size: the size stays unsigned, the next
	// one is signed over the genuine tree, and the row is never served.
	mustExec(t, db, `INSERT INTO audit_checkpoints (tree_size, root_hash, note) VALUES (16, $1, 'mediator/audit\n16\nAAAA\n\n— forged x\n')`, make([]byte, 32))
	send(15, 1)
	time.Sleep(1500 * time.Millisecond) // a round at size 16 meets the planted row
	send(16, 2)
	if n, _ := signedCheckpoint(t, in, aud, 18); n != 18 {
		t.Fatalf("checkpointing past a planted row: %d", n)
	}
	if got := gauge(t, in, `mediator_audit_checkpoint_refused_total{reason="unsigned"}`); got == "" || got == "0" {
		t.Fatalf("the unsigned row was not counted: %q", got)
	}

	// occurred_at moved a month back: the entry drops out of the export
	// of the last day, and audit verify names it.
	mustExec(t, db, `UPDATE audit_entries SET occurred_at = occurred_at - interval '30 days' WHERE seq = 4`)
	from := time.Now().Add(-24 * time.Hour).UTC().Format(time.RFC3339)
	_, bundle := getText(t, in.base+"/v1/audit/export?conversation_id="+conv("conv-att")+"&from="+from, aud)
	if strings.Contains(bundle, `"seq":4,`) {
		t.Fatal("the moved entry is still in the export; the attack did not take")
	}
	_, vkey := getText(t, in.base+"/v1/audit/verifier-key", aud)
	out, _, err := runCmd(t, []string{"DATABASE_URL=" + in.dsn}, "audit", "verify", "--key", strings.TrimSpace(vkey))
	if err == nil || !strings.Contains(out, "seq 4: the row's occurred_at differs from its leaf") || !strings.Contains(out, "checkpoint 999999999") {
		t.Fatalf("audit verify after the edits: %v\n%s", err, out)
	}
}

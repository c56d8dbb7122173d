package e2e

import (
	"context"
	"crypto/rand"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestDeployRunbook runs every sh block of docs/deploy.md, the production
// runbook, as its parties would: the database administrator makes the
// owner and the runtime role, the owner migrates, three custodian
// organisations (one on SoftHSM2) and the pseudonym service's start their
// own processes, the founding team drafts and pins the genesis, the
// mediator serves as the runtime role, the ceremony adopts the genesis, a
// gateway's agent deposits a key, an officer gets it released under two
// approvals, and an auditor verifies the log with its witnesses. Every
// process comes from the runbook's commands and files alone.
func TestDeployRunbook(t *testing.T) {
	suffix := strings.ToLower(rand.Text()[:8])
	owner, runtime := "runbook_owner_"+suffix, "runbook_app_"+suffix
	admin := env.PG.AdminURL
	// Roles are cluster-wide: dropped once the database (which the owner
	// owns) is gone. Cleanups run last-in first-out.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Errorf("drop runbook roles: %v", err)
			return
		}
		defer conn.Close(ctx)
		for _, r := range []string{runtime, owner} {
			if _, err := conn.Exec(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{r}.Sanitize()); err != nil {
				t.Errorf("drop role %s: %v", r, err)
			}
		}
	})
	db, err := url.Parse(env.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	pw, _ := db.User.Password()
	ports := []string{freePort(t), freePort(t), freePort(t)}
	out := runGuideWithin(t, "deploy.md", 14, 6*time.Minute,
		"PGHOST="+db.Hostname(), "PGPORT="+db.Port(), "PGDATABASE="+strings.TrimPrefix(db.Path, "/"), "PGUSER="+db.User.Username(),
		"PGPASSWORD="+pw, "PGSSLMODE=disable",
		"MEDIATOR_DB_OWNER="+owner, "MEDIATOR_DB_USER="+runtime,
		"VAULT_ADDR="+env.Vault.Addr, "VAULT_TOKEN="+env.Vault.Token,
		"MEDIATOR_PORT="+freePort(t), "CUSTODIAN_PORTS="+strings.Join(ports, " "), "PSEUDONYM_PORT="+freePort(t), "AGENT_PORT="+freePort(t))
	for _, want := range []string{
		"the log's verifier key: mediator.example.com/audit+",
		`"status":"ready"`,
		"trust-hsm",
		"genesis sha256:",
		"ok: roster version 1",
		`"escrow_id":`,
		"the released key is the deposited key",
		"cosigned by the quorum of 2",
		"checkpoints verified",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the runbook's output lacks %q:\n%s", want, out)
		}
	}
	// The tables belong to the owner, and the runtime role the service ran
	// as owns nothing: it could not DISABLE TRIGGER.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, db.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var tableOwner string
	var runtimeOwns int
	if err := conn.QueryRow(ctx, `SELECT tableowner FROM pg_tables WHERE tablename = 'audit_entries'`).Scan(&tableOwner); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE tableowner = $1`, runtime).Scan(&runtimeOwns); err != nil {
		t.Fatal(err)
	}
	if tableOwner != owner || runtimeOwns != 0 {
		t.Errorf("audit_entries belongs to %q (want %q); the runtime role owns %d tables (want 0)", tableOwner, owner, runtimeOwns)
	}
	var entries int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM audit_entries`).Scan(&entries); err != nil || entries < 5 {
		t.Errorf("the runbook's log holds %d entries (%v); want the roster, events, deposit, request, approvals and release", entries, err)
	}
}

// freePort is a free loopback port's number.
func freePort(t *testing.T) string {
	addr := freeAddr(t)
	return addr[strings.LastIndexByte(addr, ':')+1:]
}

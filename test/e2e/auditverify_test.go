package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mediatorhq/mediator/witness"
)

// exitStatus is a finished command's exit status, 0 without an error.
func exitStatus(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	t.Fatalf("the command did not run: %v", err)
	return -1
}

// TestAuditVerifyNonDefaultOrigin runs `mediator audit verify` as the
// runbook does (the Vault environment, no --key: the key is the service's
// Transit key, read from Vault) against a service whose log has an origin
// of its own:
//   - with MEDIATOR_LOG_ORIGIN set to it, the intact log is ok, and the
//     output says what was not checked (no witness policy), as text and as
//     one JSON object naming the signed tree;
//   - with the default origin, it is a configuration error, "origin X
//     expected, Y found", exit 3, never a failed verification;
//   - with MEDIATOR_WITNESSES, the variable serve reads, the witnesses are
//     checked (and no witness cosigned this log);
//   - a tampered entry still fails, exit 1, naming its seq, whatever the
//     origin given.
func TestAuditVerifyNonDefaultOrigin(t *testing.T) {
	const origin = "verify.e2e.example/audit"
	in := startServe(t, serveOpts{extraEnv: []string{"MEDIATOR_LOG_ORIGIN=" + origin}})
	in.waitReady(t, 60*time.Second)
	gw, _ := in.issuer.Issue("gateway-1", []string{"ingest"}, time.Hour)
	aud, _ := in.issuer.Issue("auditor-1", []string{"auditor"}, time.Hour)
	var evs []map[string]any
	for i := range 12 {
		evs = append(evs, event(fmt.Sprintf("origin-%d", i), conv("conv-origin"), nil))
	}
	if code, body := post(t, in.base+"/v1/events", "application/json", gw, batch(evs...)); code != 200 {
		t.Fatalf("events: %d %v", code, body)
	}
	db, err := pgx.Connect(context.Background(), in.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	var entries int64
	if err := db.QueryRow(context.Background(), "SELECT count(*) FROM audit_entries").Scan(&entries); err != nil {
		t.Fatal(err)
	}
	size, root := signedCheckpoint(t, in, aud, entries)
	if size != entries {
		t.Fatalf("checkpoint of %d entries, the log holds %d", size, entries)
	}
	vaultOp := []string{"DATABASE_URL=" + in.dsn, "VAULT_ADDR=" + env.Vault.Addr, "VAULT_TOKEN=" + env.Vault.Token}
	op := append([]string{"MEDIATOR_LOG_ORIGIN=" + origin}, vaultOp...)

	step(t, "the intact log verifies under its origin, with the key from Vault", func(t *testing.T) {
		out, stderr, err := runCmd(t, op, "audit", "verify")
		if err != nil {
			t.Fatalf("audit verify: %v\n%s\n%s", err, out, stderr)
		}
		for _, want := range []string{
			fmt.Sprintf("ok: %d entries and ", entries),
			"checkpoints of origin " + origin + ", with ",
			"(Vault Transit key mediator-transit/mediator-checkpoint, ",
			"not checked: witness cosignatures (no witness policy configured: --witnesses/MEDIATOR_WITNESSES)\n",
			fmt.Sprintf("not checked: that the log was not cut short or rolled back: compare tree size %d and root %s", entries, base64.StdEncoding.EncodeToString(root[:])),
		} {
			if !strings.Contains(out, want) {
				t.Errorf("no %q in:\n%s", want, out)
			}
		}
		if stderr != "" {
			t.Errorf("progress on a stderr that is not a terminal: %q", stderr)
		}
	})

	step(t, "--output json is one object with the result", func(t *testing.T) {
		out, stderr, err := runCmd(t, op, "audit", "verify", "--output", "json")
		if err != nil {
			t.Fatalf("audit verify: %v\n%s\n%s", err, out, stderr)
		}
		var r struct {
			OK               bool            `json:"ok"`
			Entries          int64           `json:"entries"`
			TreeSize         int64           `json:"tree_size"`
			Root             string          `json:"root"`
			Origin           string          `json:"origin"`
			Checkpoints      int             `json:"checkpoints"`
			CheckpointSize   int64           `json:"checkpoint_size"`
			WitnessesChecked bool            `json:"witnesses_checked"`
			NotChecked       []string        `json:"not_checked"`
			FirstFailure     json.RawMessage `json:"first_failure"`
			OriginMismatch   json.RawMessage `json:"origin_mismatch"`
		}
		if err := json.Unmarshal([]byte(out), &r); err != nil || strings.Count(strings.TrimSpace(out), "\n") != 0 {
			t.Fatalf("not one JSON object: %v\n%s", err, out)
		}
		if !r.OK || r.Entries != entries || r.TreeSize != entries || r.Root != base64.StdEncoding.EncodeToString(root[:]) || r.Origin != origin ||
			r.Checkpoints < 1 || r.CheckpointSize != entries || r.WitnessesChecked || len(r.NotChecked) == 0 ||
			string(r.FirstFailure) != "null" || string(r.OriginMismatch) != "null" {
			t.Fatalf("%s", out)
		}
	})

	step(t, "the default origin is a configuration error, not a failure", func(t *testing.T) {
		out, stderr, err := runCmd(t, vaultOp, "audit", "verify")
		if exitStatus(t, err) != 3 || !strings.Contains(out, "origin mediator/audit expected, "+origin+" found (in the stored checkpoints)") ||
			strings.Contains(out, "FAIL") || strings.Contains(strings.ToLower(out), "tamper") {
			t.Fatalf("audit verify with the default origin: %v\n%s\n%s", err, out, stderr)
		}
	})

	step(t, "MEDIATOR_WITNESSES is checked", func(t *testing.T) {
		seed := make([]byte, 32)
		seed[0] = 1
		_, wkey, err := witness.NewSigner("witness.e2e.example", seed)
		if err != nil {
			t.Fatal(err)
		}
		policy := filepath.Join(t.TempDir(), "witnesses.json")
		b, _ := json.Marshal(map[string]any{"quorum": 1, "witnesses": []map[string]string{{"name": "witness.e2e.example", "url": "https://witness.e2e.example", "verifier_key": wkey}}})
		if err := os.WriteFile(policy, b, 0o600); err != nil {
			t.Fatal(err)
		}
		out, stderr, err := runCmd(t, append([]string{"MEDIATOR_WITNESSES=" + policy}, op...), "audit", "verify")
		if exitStatus(t, err) != 1 || !strings.Contains(out, "cosigned by 0 witnesses, short of the policy's quorum witnesses: 1 of (witness.e2e.example)") || strings.Contains(out, "not checked: witness") {
			t.Fatalf("audit verify with a witness policy no witness met: %v\n%s\n%s", err, out, stderr)
		}
	})

	// A superuser edits one leaf, with the append-only triggers off.
	mustExec(t, db, "SET session_replication_role = replica")
	mustExec(t, db, `UPDATE audit_entries SET leaf = leaf || '\x20'::bytea WHERE seq = 3`)

	step(t, "a tampered entry fails under the log's origin", func(t *testing.T) {
		out, stderr, err := runCmd(t, op, "audit", "verify")
		if exitStatus(t, err) != 1 || !strings.Contains(out, "first bad seq: 3\n") || !strings.Contains(out, "verification FAILED") || strings.Contains(out, "\nok: ") {
			t.Fatalf("audit verify of a tampered log: %v\n%s\n%s", err, out, stderr)
		}
		out, _, err = runCmd(t, op, "audit", "verify", "--output", "json")
		var r struct {
			OK           bool `json:"ok"`
			FirstFailure *struct {
				Seq     *int64 `json:"seq"`
				Problem string `json:"problem"`
			} `json:"first_failure"`
		}
		if exitStatus(t, err) != 1 || json.Unmarshal([]byte(out), &r) != nil || r.OK || r.FirstFailure == nil || r.FirstFailure.Seq == nil ||
			*r.FirstFailure.Seq != 3 || !strings.Contains(r.FirstFailure.Problem, "seq 3") {
			t.Fatalf("%v\n%s", err, out)
		}
	})

	step(t, "a tampered entry fails under the default origin too", func(t *testing.T) {
		out, stderr, err := runCmd(t, vaultOp, "audit", "verify")
		if exitStatus(t, err) != 1 || !strings.Contains(out, "first bad seq: 3\n") || !strings.Contains(out, "verification FAILED") ||
			!strings.Contains(out, "origin mediator/audit expected, "+origin+" found") {
			t.Fatalf("audit verify of a tampered log, default origin: %v\n%s\n%s", err, out, stderr)
		}
	})
}

package e2e

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/note"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/custodian"
	"github.com/mediatorhq/mediator/dev"
	"github.com/mediatorhq/mediator/seal"
)

// TestReleaseNeedsTheLog: five custodian processes witness the audit log
// (a checkpoint is published once three cosigned it) and release a share
// only for a request and approvals proven to be in the log under a
// checkpoint they cosigned themselves. A lawful release goes through.
// Then the mediator skips the log: approvals written into its tables with
// genuine signatures but no log entry, and a request filed the same way.
// Every custodian refuses, naming what the log lacks. Then a forked and a
// rolled-back checkpoint signed with the log's own key: every witness
// refuses both. Last, with three of the five witnesses down, nothing newer
// is published until they are back.
func TestReleaseNeedsTheLog(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	skey, vkey, err := note.GenerateKey(rand.Reader, "mediator/audit")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "checkpoint.key")
	os.WriteFile(keyFile, []byte(skey), 0o600)
	keys, listed := e2eApprovers()
	cs := startCustodians(t, nil, dev.CustodianOptions{Approvers: listed,
		WitnessLogs: []custodian.WitnessLog{{Origin: "mediator/audit", VerifierKeys: []string{vkey}}}})
	witnesses := filepath.Join(dir, "witnesses.json")
	if err := dev.WriteWitnesses(ctx, cs.cs, witnesses); err != nil {
		t.Fatal(err)
	}
	in := startServe(t, serveOpts{custodians: cs, extraEnv: []string{"MEDIATOR_CHECKPOINT_KEY_FILE=" + keyFile, "MEDIATOR_WITNESSES=" + witnesses}})
	in.waitReady(t, 60*time.Second)
	tok := func(sub string, roles ...string) string { s, _ := in.issuer.Issue(sub, roles, time.Hour); return s }
	admin, olga, aud := tok("ada", "admin"), tok("olga", "officer"), tok("aud", "auditor")
	gw, _ := newClient(in.base, tok("gw", "depositor"), http.DefaultClient)

	step(t, "the gateway escrows a key", func(t *testing.T) {
		key := make([]byte, 32)
		rand.Read(key)
		if _, err := gw.Deposit(ctx, cs.digest, conv("conv-l"), "e1", key); err != nil {
			t.Fatal(err)
		}
	})

	// The lawful release: every custodian finds the request and both
	// approvals in the log it witnessed.
	step(t, "a lawful release goes through under a cosigned checkpoint", func(t *testing.T) {
		runCmd(t, nil, "keygen", "--recipient", "--out", filepath.Join(dir, "olga.key"))
		lawful := approvedRequest(t, in, admin, olga, keys, conv("conv-l"), filepath.Join(dir, "olga.key.pub"))
		oc, _ := newClient(in.base, olga, http.DefaultClient)
		if _, err := oc.Release(ctx, lawful); err != nil {
			t.Fatalf("the lawful release: %v", err)
		}
		_, cp := getText(t, in.base+"/v1/audit/checkpoint", aud)
		if strings.Count(cp, "\n— ") < 4 { // the log's signature and at least three cosignatures
			t.Fatalf("the published checkpoint lacks its cosignatures:\n%s", cp)
		}
	})

	db, err := pgx.Connect(ctx, in.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	mustExec(t, db, "SET session_replication_role = replica")
	insertApprovals := func(t *testing.T, id, digest string, seq int64) {
		for who, k := range keys {
			sig := ed25519.Sign(k, approval.Message(id, digest, "approve", who))
			mustExec(t, db, `INSERT INTO access_approvals (request_id, approver_id, decision, signature, key_id, roles, by_requester, audit_seq)
				VALUES ($1, $2, 'approve', $3, $4, '{}', false, $5)`, id, who, sig, approval.KeyID(k.Public().(ed25519.PublicKey)), seq)
		}
	}
	refusedAll := func(t *testing.T, id, says string) {
		t.Helper()
		code, resp := post(t, in.base+"/v1/access-requests/"+id+"/release", "application/json", olga, []byte(`{}`))
		if code != 403 || errorCode(resp) != "custodians_refused" {
			t.Fatalf("%s: %d %v", says, code, resp)
		}
		msg := fmt.Sprint(resp)
		for _, c := range cs.cs {
			if !strings.Contains(msg, c.Name+": ") {
				t.Errorf("%s did not refuse: %v", c.Name, resp)
			}
		}
		if !strings.Contains(msg, says) {
			t.Errorf("the refusals do not say %q: %v", says, resp)
		}
	}

	// 1. The approvals never logged: the request is filed (and logged),
	// approvals with genuine signatures go straight into the table.
	step(t, "approvals the log lacks are refused by every custodian", func(t *testing.T) {
		r := readyRequestUnapprovedTo(t, in, admin, olga, conv("conv-l"), filepath.Join(dir, "olga.key.pub"))
		var reqSeq int64
		db.QueryRow(ctx, "SELECT audit_seq FROM access_requests WHERE request_id = $1", r.id).Scan(&reqSeq)
		insertApprovals(t, r.id, r.digest, reqSeq)
		refusedAll(t, r.id, "is not in the audit log under a checkpoint this custodian cosigned")
	})

	// 2. The request never logged either: a row with its canonical form,
	// pointing at an entry that is something else.
	step(t, "a request the log lacks is refused by every custodian", func(t *testing.T) {
		pub, _ := os.ReadFile(filepath.Join(dir, "olga.key.pub"))
		var recipient seal.PublicKey
		if err := json.Unmarshal(pub, &recipient); err != nil {
			t.Fatal(err)
		}
		now := time.Now().UTC().Truncate(time.Second)
		ghost := approval.Request{ID: uuid.NewString(), Requester: "olga", CaseID: "case-1", LegalBasis: "court_order", WarrantRef: "W-1",
			Jurisdiction: "US", Justification: "See the case file.", Scope: approval.Scope{ConversationIDs: []string{conv("conv-l")}, From: now.Add(-time.Hour), To: now.Add(time.Hour)},
			Recipient: recipient, CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour)}
		canonical, err := ghost.Canonical()
		if err != nil {
			t.Fatal(err)
		}
		// Signed by olga (the officer colludes, or signed a request the
		// mediator then kept out of the log): only the log check stands.
		mustExec(t, db, `INSERT INTO access_requests (request_id, requester, case_id, legal_basis, warrant_ref, jurisdiction, justification,
		conversation_ids, scope_from, scope_to, recipient_kem_id, recipient_public_key, created_at, expires_at, canonical, digest, audit_seq,
		officer_signature)
		VALUES ($1, 'olga', 'case-1', 'court_order', 'W-1', 'US', 'See the case file.', '{conv-l}', $2, $3, $4, $5, $6, $7, $8, $9, 0, $10)`,
			ghost.ID, ghost.Scope.From, ghost.Scope.To, int(recipient.KEMID), recipient.PublicKey, ghost.CreatedAt, ghost.ExpiresAt, canonical, approval.Digest(canonical),
			approval.SignRequest(e2eOfficerKey(), approval.Digest(canonical)))
		insertApprovals(t, ghost.ID, approval.Digest(canonical), 0)
		refusedAll(t, ghost.ID, "the request is not in the audit log")
	})

	// 3. Whoever holds the log's key signs another history: every witness
	// refuses a fork at the size it cosigned, and a rollback below it.
	step(t, "every witness refuses a fork and a rollback", func(t *testing.T) {
		witnessesRefuseAFork(t, cs, skey)
	})

	// 4. Three of five witnesses down: checkpoints go on being signed, but
	// nothing newer is published; with them back, publication resumes.
	size := func(t *testing.T) int64 {
		_, text := getText(t, in.base+"/v1/audit/checkpoint", aud)
		var n int64
		fmt.Sscan(strings.Split(text, "\n")[1], &n)
		return n
	}
	var before int64 // the size published before they went down
	step(t, "with three witnesses down nothing newer is published", func(t *testing.T) {
		before = size(t)
		for _, i := range []int{0, 1, 2} {
			cs.stop(t, i)
		}
		gwIngest := tok("gw", "ingest")
		if code, body := post(t, in.base+"/v1/events", "application/json", gwIngest, batch(event("wl-1", conv("conv-wl"), nil), event("wl-2", conv("conv-wl"), nil))); code != 200 {
			t.Fatalf("events: %d %v", code, body)
		}
		time.Sleep(3 * time.Second)
		if got := size(t); got != before {
			t.Fatalf("published size %d with three of five witnesses down (was %d)", got, before)
		}
		// Readiness says so, naming the witnesses and nothing else.
		code, body, _ := call(t, "GET", in.base+"/readyz", "")
		if e, _ := body["error"].(map[string]any); code != 503 || e["message"] != "witnesses unreachable" {
			t.Fatalf("readyz with three of five witnesses down: %d %v", code, body)
		}
	})
	// The last chapter, so the custodians it starts may end with it.
	step(t, "with the witnesses back publication resumes", func(t *testing.T) {
		for _, i := range []int{0, 1, 2} {
			cs.start(t, i)
		}
		for deadline := time.Now().Add(20 * time.Second); size(t) <= before; time.Sleep(200 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("publication did not resume: still %d", size(t))
			}
		}
		waitStatus(t, in.proc, in.base+"/readyz", 200, 20*time.Second)
	})
}

// witnessesRefuseAFork sends every custodian witness a checkpoint of the
// size they cosigned last with another root, signed with the log's own
// key (a log that shows two histories), and a smaller one (a rollback):
// each refuses both (409, or 400 for the rollback), and cosigns nothing.
func witnessesRefuseAFork(t *testing.T, cs *custodianProcs, skey string) {
	t.Helper()
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs.cs {
		// The witness's size: ask with old size 0 and read the 409.
		probe := "old 0\n\n" + forkNote(t, signer, 1, 0x01)
		resp, err := http.Post(c.URL+"/add-checkpoint", "text/plain", strings.NewReader(probe))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var size int64
		fmt.Sscan(string(body), &size)
		if resp.StatusCode != http.StatusConflict || size < 1 {
			t.Fatalf("%s: probing its size: %d %q", c.Name, resp.StatusCode, body)
		}
		for name, req := range map[string]struct {
			body string
			want int
		}{
			"a fork at its size":  {fmt.Sprintf("old %d\n\n%s", size, forkNote(t, signer, size, 0x02)), http.StatusConflict},
			"a rollback below it": {fmt.Sprintf("old %d\n\n%s", size, forkNote(t, signer, size-1, 0x03)), http.StatusBadRequest},
		} {
			resp, err := http.Post(c.URL+"/add-checkpoint", "text/plain", strings.NewReader(req.body))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != req.want {
				t.Errorf("%s: %s: %d, want %d", c.Name, name, resp.StatusCode, req.want)
			}
		}
	}
}

// forkNote is a checkpoint of size with a made-up root, signed by signer.
func forkNote(t *testing.T, signer note.Signer, size int64, b byte) string {
	t.Helper()
	root := make([]byte, 32)
	root[0] = b
	text := fmt.Sprintf("mediator/audit\n%d\n%s\n", size, base64.StdEncoding.EncodeToString(root))
	signed, err := note.Sign(&note.Note{Text: text}, signer)
	if err != nil {
		t.Fatal(err)
	}
	return string(signed)
}

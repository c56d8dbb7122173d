package e2e

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/escrow"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/seal"
	"github.com/mediatorhq/mediator/wire"
)

// officerLies is what the chapters in which the host lies about an
// officer's request work with: the instance, a superuser's connection
// (append-only triggers off), the custodians as the mediator calls them
// with the genuine chain, where each keeps its share of the secret, the
// approvers' keys, and the officer's and the attacker's recipient keys.
type officerLies struct {
	in          *instance
	db          *pgx.Conn
	remotes     []*escrow.Remote
	chain       []roster.Signed
	secretRefs  [5]wire.ShareRef
	approvers   map[string]ed25519.PrivateKey
	olgaPub     seal.PublicKey
	malloryPub  seal.PublicKey
	genesis     string
	dir         string
	olgaToken   string
	approverTok func(id string) string
}

// keyFile writes priv as a signing key file, as `mediator keygen
// --approver` writes one, and returns its path.
func (o officerLies) keyFile(t *testing.T, name string, priv ed25519.PrivateKey) string {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"type": "mediator-approver-key-v1", "private_key": priv.Seed()})
	path := filepath.Join(o.dir, name+".key")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// approvalsOver are lena's and sam's genuine approvals of the request
// with these canonical bytes: approvers fooled into signing it.
func (o officerLies) approvalsOver(canonical []byte) []wire.EvidenceApproval {
	req, _ := approval.Parse(canonical)
	var out []wire.EvidenceApproval
	for _, who := range []string{"lena", "sam"} {
		out = append(out, wire.EvidenceApproval{ApproverID: who, Decision: "approve", ApprovedAt: time.Now().UTC(),
			Signature: ed25519.Sign(o.approvers[who], approval.Message(req.ID, approval.Digest(canonical), "approve", who))})
	}
	return out
}

// custodiansRefuse hands every custodian the request with these bytes
// and officer signature, the approvals and the secret's share, and
// fails unless each refuses it for want of the officer's signature.
func (o officerLies) custodiansRefuse(t *testing.T, what string, canonical, sig []byte, approvals []wire.EvidenceApproval) {
	t.Helper()
	for i, r := range o.remotes {
		ans, err := r.Release(context.Background(), wire.ReleaseEvidence{Roster: o.chain, Canonical: canonical, OfficerSignature: sig,
			Approvals: approvals, Shares: []wire.ShareRef{o.secretRefs[i]}})
		var refused *escrow.RefusedError
		if !errors.As(err, &refused) || !strings.Contains(strings.Join(refused.Reasons, ";"), "not signed by an officer") {
			t.Errorf("%s: %s: %+v %v", r.Name, what, ans, err)
		}
	}
}

// chapterSwappedRecipient: olga files a request for the secret
// conversation to her own key; the host, a superuser, swaps the
// recipient key in the stored request for its own. Her signature no
// longer verifies: the approver's tool refuses to sign, the mediator
// refuses the approval, and every custodian refuses the swapped request
// even with genuine approvals of it.
func chapterSwappedRecipient(t *testing.T, o officerLies) {
	code, created := post(t, o.in.base+"/v1/access-requests", "application/json", o.olgaToken, signedRequestBody(t, conv("conv-secret"), o.olgaPub))
	if code != 201 {
		t.Fatalf("olga files her request: %d %v", code, created)
	}
	id := fmt.Sprint(created["id"])
	var canonical, sig []byte
	if err := o.db.QueryRow(context.Background(), "SELECT canonical, officer_signature FROM access_requests WHERE request_id = $1", id).Scan(&canonical, &sig); err != nil {
		t.Fatal(err)
	}
	req, err := approval.Parse(canonical)
	if err != nil {
		t.Fatal(err)
	}
	req.Recipient = o.malloryPub
	swapped, _ := req.Canonical()
	mustExec(t, o.db, `UPDATE access_requests SET canonical = $2, digest = $3, recipient_kem_id = $4, recipient_public_key = $5 WHERE request_id = $1`,
		id, swapped, approval.Digest(swapped), int(o.malloryPub.KEMID), o.malloryPub.PublicKey)

	lenaKey := o.keyFile(t, "lena-signing", o.approvers["lena"])
	env := []string{"MEDIATOR_URL=" + o.in.base, "MEDIATOR_TOKEN=" + o.approverTok("lena"), "MEDIATOR_ROSTER_GENESIS=" + o.genesis}
	out, stderr, err := runCmd(t, env, "request", "approve", id, "--key", lenaKey, "--yes")
	if err == nil || !strings.Contains(stderr, "not signed by an officer") {
		t.Fatalf("lena's tool on the swapped request: %v\n%s%s", err, out, stderr)
	}
	if strings.Contains(stderr, o.malloryPub.Fingerprint()) {
		t.Errorf("lena's tool showed the swapped request as signable:\n%s", stderr)
	}
	// An approver fooled into signing the swapped digest by other means:
	// the mediator refuses the vote.
	b, _ := json.Marshal(map[string]any{"decision": "approve", "signature": o.approvalsOver(swapped)[0].Signature})
	if code, body := post(t, o.in.base+"/v1/access-requests/"+id+"/approvals", "application/json", o.approverTok("lena"), b); code != 422 || errorCode(body) != "bad_officer_signature" {
		t.Errorf("an approval of the swapped request: %d %v", code, body)
	}
	o.custodiansRefuse(t, "the swapped request with genuine approvals", swapped, sig, o.approvalsOver(swapped))
	// The log holds the request as olga filed it: audit verify names the
	// swap, though the row's columns agree with its swapped bytes.
	aud, _ := o.in.issuer.Issue("aud", []string{"auditor"}, time.Hour)
	_, vkey := getText(t, o.in.base+"/v1/audit/verifier-key", aud)
	out, _, err = runCmd(t, []string{"DATABASE_URL=" + o.in.dsn}, "audit", "verify", "--key", strings.TrimSpace(vkey))
	if err == nil || !strings.Contains(out, "access request "+id+": the stored request differs from what was signed and logged: canonical (the log holds other bytes)") {
		t.Errorf("audit verify on a request swapped with its columns: %v\n%s", err, out)
	}
}

// chapterFiledWithoutTheKey: the host holds olga's bearer token (it saw
// it) but not her signing key, and files a request for the secret to
// its own recipient key. The mediator refuses it unsigned and signed
// with any other key, the CLI with a key that is not hers fails, someone
// with an officer token but not in the roster is no officer, and every
// custodian refuses the request even with genuine approvals of it.
func chapterFiledWithoutTheKey(t *testing.T, o officerLies) {
	before := o.toAttacker(t)
	_, hostKey, _ := ed25519.GenerateKey(nil)
	var body map[string]any
	json.Unmarshal(signedRequestBody(t, conv("conv-secret"), o.malloryPub), &body)
	delete(body, "officer_signature")
	unsigned, _ := json.Marshal(body)
	if code, resp := post(t, o.in.base+"/v1/access-requests", "application/json", o.olgaToken, unsigned); code != 422 || errorCode(resp) != "bad_officer_signature" {
		t.Errorf("an unsigned request in olga's name: %d %v", code, resp)
	}
	// Signed with the host's own key over the request it built.
	now := time.Now().UTC().Truncate(time.Second)
	req := approval.Request{ID: "2f0c1e0a-5b7d-4c1e-9a3b-0d6e8f1a2b3c", Requester: "olga", CaseID: "case-1", LegalBasis: "court_order",
		WarrantRef: "W-1", Jurisdiction: "US", Justification: "See the case file.", Recipient: o.malloryPub, CreatedAt: now,
		ExpiresAt: now.Add(24 * time.Hour), Scope: approval.Scope{ConversationIDs: []string{conv("conv-secret")}, From: now.Add(-48 * time.Hour), To: now.Add(time.Hour)}}
	canonical, _ := req.Canonical()
	hostSig := approval.SignRequest(hostKey, approval.Digest(canonical))
	hostBody, _ := json.Marshal(wire.CreateRequest{ID: req.ID, CaseID: req.CaseID, LegalBasis: req.LegalBasis, WarrantRef: req.WarrantRef,
		Jurisdiction: req.Jurisdiction, Justification: req.Justification, Recipient: req.Recipient, CreatedAt: req.CreatedAt,
		ExpiresAt: req.ExpiresAt, Scope: wire.Scope{ConversationIDs: req.Scope.ConversationIDs, From: req.Scope.From, To: req.Scope.To},
		OfficerSignature: hostSig})
	if code, resp := post(t, o.in.base+"/v1/access-requests", "application/json", o.olgaToken, hostBody); code != 422 || errorCode(resp) != "bad_officer_signature" {
		t.Errorf("a request in olga's name signed with the host's key: %d %v", code, resp)
	}
	tok, _ := o.in.issuer.Issue("mallory", []string{"officer"}, time.Hour)
	if code, resp := post(t, o.in.base+"/v1/access-requests", "application/json", tok, hostBody); code != 403 || errorCode(resp) != "not_an_officer" {
		t.Errorf("a request by an officer token of someone in no roster: %d %v", code, resp)
	}
	// The CLI, run with olga's token and a key that is not hers.
	now = time.Now().UTC()
	env := []string{"MEDIATOR_URL=" + o.in.base, "MEDIATOR_TOKEN=" + o.olgaToken}
	_, stderr, err := runCmd(t, env, "request", "create", "--case", "case-1", "--legal-basis", "court_order", "--warrant", "W-1",
		"--jurisdiction", "US", "--justification", "See the case file.", "--conversation", conv("conv-secret"),
		"--from", now.Add(-48*time.Hour).Format(time.RFC3339), "--to", now.Add(time.Hour).Format(time.RFC3339),
		"--recipient", filepath.Join(o.dir, "mallory.key.pub"), "--key", o.keyFile(t, "host-signing", hostKey))
	if err == nil || !strings.Contains(stderr, "bad_officer_signature") {
		t.Errorf("request create with a key that is not olga's: %v\n%s", err, stderr)
	}
	if n := o.toAttacker(t); n != before {
		t.Errorf("%d requests to the attacker's key were filed", n-before)
	}
	// (The API filed none; below the host writes one into the table.)
	o.custodiansRefuse(t, "a request signed with the host's key", canonical, hostSig, o.approvalsOver(canonical))
	o.custodiansRefuse(t, "an unsigned request", canonical, nil, o.approvalsOver(canonical))

	// The host, a superuser, writes its request into the table itself:
	// the approvers' tools show it as unverified and refuse to sign it.
	mustExec(t, o.db, `INSERT INTO access_requests (request_id, requester, case_id, legal_basis, warrant_ref, jurisdiction, justification,
		conversation_ids, scope_from, scope_to, recipient_kem_id, recipient_public_key, created_at, expires_at, canonical, digest, audit_seq,
		officer_signature)
		VALUES ($1, 'olga', 'case-1', 'court_order', 'W-1', 'US', 'See the case file.', '{conv-secret}', $2, $3, $4, $5, $6, $7, $8, $9, 0, $10)`,
		req.ID, req.Scope.From, req.Scope.To, int(o.malloryPub.KEMID), o.malloryPub.PublicKey, req.CreatedAt, req.ExpiresAt, canonical,
		approval.Digest(canonical), hostSig)
	env = []string{"MEDIATOR_URL=" + o.in.base, "MEDIATOR_TOKEN=" + o.approverTok("sam"), "MEDIATOR_ROSTER_GENESIS=" + o.genesis}
	samKey := o.keyFile(t, "sam-signing", o.approvers["sam"])
	if out, stderr, err := runCmd(t, env, "request", "approve", req.ID, "--key", samKey, "--yes"); err == nil || !strings.Contains(stderr, "not signed by an officer") {
		t.Errorf("sam's tool on the host's own row: %v\n%s%s", err, out, stderr)
	}
	out, stderr, err := runCmd(t, env, "request", "list")
	if err != nil || !strings.Contains(out, req.ID+"  UNVERIFIED") || !strings.Contains(out, "OFFICER") {
		t.Errorf("request list with the host's row: %v\n%s%s", err, out, stderr)
	}
	b, _ := json.Marshal(map[string]any{"decision": "approve", "signature": o.approvalsOver(canonical)[1].Signature})
	if code, body := post(t, o.in.base+"/v1/access-requests/"+req.ID+"/approvals", "application/json", o.approverTok("sam"), b); code != 422 || errorCode(body) != "bad_officer_signature" {
		t.Errorf("an approval of the host's own row: %d %v", code, body)
	}
}

// toAttacker counts the stored requests whose recipient is the
// attacker's key.
func (o officerLies) toAttacker(t *testing.T) int {
	t.Helper()
	var n int
	if err := o.db.QueryRow(context.Background(), "SELECT count(*) FROM access_requests WHERE recipient_public_key = $1", o.malloryPub.PublicKey).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

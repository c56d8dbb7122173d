package e2e

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/escrow"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/wire"
)

// withheldVeto is what the chapter of a withheld deny vote needs from
// TestCompromisedMediator.
type withheldVeto struct {
	in         *instance
	db         *pgx.Conn
	genesis    string
	remotes    []*escrow.Remote // the custodians, as the mediator calls them
	secretRefs [5]wire.ShareRef
}

// chapterWithheldVeto, after the withheld removal (version 3: kim for
// legal, sam for security): the approvers adopt a version 4 that adds vic
// (legal). The officer files a request for the secret conversation; kim
// and sam approve it, and vic denies it with `mediator request approve
// --deny --yes`, whose tool delivers the deny to every custodian itself.
// The mediator, a superuser, deletes vic's deny from its table and asks
// for the release, then hands each custodian evidence with the two
// approvals alone: every custodian refuses, naming vic's veto, and no
// share of the secret leaves a custodian.
func chapterWithheldVeto(t *testing.T, s withheldVeto) {
	ctx := context.Background()
	tok := func(sub string, roles ...string) string { v, _ := s.in.issuer.Issue(sub, roles, time.Hour); return v }
	dir := t.TempDir()
	keys := map[string]ed25519.PrivateKey{"kim": e2eApproverKey("kim"), "sam": e2eApproverKey("sam"), "vic": e2eApproverKey("vic")}

	// Version 4 adds vic; kim and sam, the quorum of version 3, adopt it.
	adminClient, _ := newClient(s.in.base, tok("ada", "admin"), nil)
	served, err := adminClient.RosterChain(ctx)
	if err != nil {
		t.Fatal(err)
	}
	versions, err := roster.VerifyChain(s.genesis, served.Chain)
	if err != nil || len(versions) != 3 {
		t.Fatalf("the chain in force: %d versions, %v", len(versions), err)
	}
	v3 := versions[2]
	draft := wire.RosterDraft{Approvers: slices.Clone(v3.Approvers), Custodians: slices.Clone(v3.Custodians), Threshold: v3.Threshold, Rule: v3.Rule}
	draft.Approvers = append(draft.Approvers, roster.Approver{ID: "vic", Roles: []string{"legal"}, PublicKey: keys["vic"].Public().(ed25519.PublicKey)})
	p, err := adminClient.ProposeRoster(ctx, draft)
	if err != nil || p.Version != 4 {
		t.Fatalf("the proposal that adds vic: version %d, %v", p.Version, err)
	}
	for _, who := range []string{"vic", "kim", "sam"} {
		c, _ := newClient(s.in.base, tok(who, "approver"), nil)
		if p, err = c.SignRoster(ctx, keys[who], who, p.Digest); err != nil {
			t.Fatalf("%s signs version 4: %v", who, err)
		}
	}
	if p.Status != "adopted" {
		t.Fatalf("version 4: %+v", p)
	}

	// The officer files for the secret; kim and sam approve.
	grab := readyRequestUnapprovedTo(t, s.in, tok("ada", "admin"), tok("olga", "officer"), conv("conv-secret"), "")
	for _, who := range []string{"kim", "sam"} {
		sig := ed25519.Sign(keys[who], approval.Message(grab.id, grab.digest, approval.Approve, who))
		b, _ := json.Marshal(map[string]any{"decision": approval.Approve, "signature": sig})
		if code, body := post(t, s.in.base+"/v1/access-requests/"+grab.id+"/approvals", "application/json", tok(who, "approver"), b); code != 201 {
			t.Fatalf("approval by %s: %d %v", who, code, body)
		}
	}

	// vic denies with her tool, which delivers the deny to every
	// custodian of the verified roster itself.
	keyFile := filepath.Join(dir, "vic.key")
	kb, _ := json.Marshal(map[string]any{"type": "mediator-approver-key-v1", "private_key": keys["vic"].Seed()})
	if err := os.WriteFile(keyFile, kb, 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"MEDIATOR_URL=" + s.in.base, "MEDIATOR_TOKEN=" + tok("vic", "approver"), "MEDIATOR_ROSTER_GENESIS=" + s.genesis}
	stdout, stderr, err := runCmd(t, env, "request", "approve", grab.id, "--deny", "--yes", "--key", keyFile)
	if err != nil {
		t.Fatalf("vic's deny: %v\n%s\n%s", err, stdout, stderr)
	}
	for _, c := range v3.Custodians {
		if want := "recorded         custodian " + c.Name + " (" + c.URL + ") holds your deny of request " + grab.id; !strings.Contains(stderr, want) {
			t.Errorf("vic's tool does not report %q:\n%s", want, stderr)
		}
	}
	if strings.Contains(stderr, "WARNING") {
		t.Errorf("vic's deny warns:\n%s", stderr)
	}
	var recorded wire.ApprovalRecorded
	if err := json.Unmarshal([]byte(stdout), &recorded); err != nil {
		t.Errorf("vic's tool does not print the mediator's record: %v\n%s", err, stdout)
	}

	// The mediator withholds the deny: it deletes vic's vote and asks for
	// the release, then hands each custodian the two approvals alone.
	mustExec(t, s.db, `DELETE FROM access_approvals WHERE request_id = $1 AND approver_id = 'vic'`, grab.id)
	code, resp := post(t, s.in.base+"/v1/access-requests/"+grab.id+"/release", "application/json", tok("olga", "officer"), []byte(`{}`))
	if code != 403 || errorCode(resp) != "custodians_refused" || !strings.Contains(fmt.Sprint(resp), "vic voted to deny") {
		t.Errorf("the release without vic's deny: %d %s %.400v", code, errorCode(resp), resp)
	}
	var canonical, officerSig []byte
	if err := s.db.QueryRow(ctx, "SELECT canonical, officer_signature FROM access_requests WHERE request_id = $1", grab.id).Scan(&canonical, &officerSig); err != nil {
		t.Fatal(err)
	}
	var approvals []wire.EvidenceApproval
	rows, _ := s.db.Query(ctx, "SELECT approver_id, decision, signature, approved_at FROM access_approvals WHERE request_id = $1", grab.id)
	for rows.Next() {
		var a wire.EvidenceApproval
		rows.Scan(&a.ApproverID, &a.Decision, &a.Signature, &a.ApprovedAt)
		approvals = append(approvals, a)
	}
	rows.Close()
	if len(approvals) != 2 {
		t.Fatalf("the approvals left in the table: %+v", approvals)
	}
	chain, err := adminClient.RosterChain(ctx)
	if err != nil || len(chain.Chain) != 4 {
		t.Fatalf("the chain with version 4: %v", err)
	}
	for i, r := range s.remotes {
		var refused *escrow.RefusedError
		_, err := r.Release(ctx, wire.ReleaseEvidence{Roster: chain.Chain, Canonical: canonical, OfficerSignature: officerSig,
			Approvals: approvals, Shares: []wire.ShareRef{s.secretRefs[i]}})
		reasons := ""
		if errors.As(err, &refused) {
			reasons = strings.Join(refused.Reasons, "; ")
		}
		if !strings.Contains(reasons, "vic voted to deny") || !strings.Contains(reasons, "vic's deny vote, delivered to this custodian directly") {
			t.Errorf("%s: the release without vic's deny: %v", r.Name, err)
		}
	}
	if n := countSecretReleases(t, s.db); n != 0 {
		t.Fatalf("%d shares of the secret conversation left a custodian", n)
	}
}

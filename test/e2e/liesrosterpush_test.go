package e2e

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/client"
	"github.com/mediatorhq/mediator/escrow"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/wire"
)

// withheldRemoval is what the chapter of a withheld roster removal needs
// from TestCompromisedMediator.
type withheldRemoval struct {
	in           *instance
	db           *pgx.Conn
	genesis      string
	keys         map[string]ed25519.PrivateKey // lena's and sam's
	remotes      []*escrow.Remote              // the custodians, as the mediator calls them
	genuineChain []roster.Signed               // versions 1 and 2, in force
	grab         openRequest                   // the attacker's request for the secret
	secretRefs   [5]wire.ShareRef
}

// chapterWithheldRemoval, the last chapter of TestCompromisedMediator: the
// approvers adopt a version 3 that removes lena (legal) and adds kim in
// her place, with `mediator roster sign --yes`; the signature that
// adopts it pushes the chain to every custodian, which reports version 3.
// lena, removed, then approves the attacker's request for the secret,
// and the mediator, withholding the removal, hands each custodian the
// old chain where she still counts: every custodian refuses it as a
// rollback, and with the new chain her approval does not count. No share
// of the secret leaves a custodian.
func chapterWithheldRemoval(t *testing.T, s withheldRemoval) {
	ctx := context.Background()
	tok := func(sub string, roles ...string) string { v, _ := s.in.issuer.Issue(sub, roles, time.Hour); return v }
	dir := t.TempDir()
	keyFile := func(id string, k ed25519.PrivateKey) string {
		path := filepath.Join(dir, id+".key")
		b, _ := json.Marshal(map[string]any{"type": "mediator-approver-key-v1", "private_key": k.Seed()})
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	as := func(id, role string) []string {
		return []string{"MEDIATOR_URL=" + s.in.base, "MEDIATOR_TOKEN=" + tok(id, role), "MEDIATOR_ROSTER_GENESIS=" + s.genesis}
	}

	cur := s.in.genesis // version 2 lists what the genesis lists
	// kim's key is fixed: the veto chapter has her sign again.
	kim := e2eApproverKey("kim")
	draft := wire.RosterDraft{Custodians: slices.Clone(cur.Custodians), Threshold: cur.Threshold, Rule: cur.Rule}
	for _, a := range cur.Approvers {
		if a.ID != "lena" {
			draft.Approvers = append(draft.Approvers, a)
		}
	}
	draft.Approvers = append(draft.Approvers, roster.Approver{ID: "kim", Roles: []string{"legal"}, PublicKey: kim.Public().(ed25519.PublicKey)})
	adminClient, _ := newClient(s.in.base, tok("ada", "admin"), nil)
	p, err := adminClient.ProposeRoster(ctx, draft)
	if err != nil || p.Version != 3 {
		t.Fatalf("the proposal that removes lena: version %d, %v", p.Version, err)
	}
	// kim proves she holds her key, lena and sam sign toward the quorum;
	// sam's signature adopts version 3, and his tool pushes it.
	var out string
	for _, who := range []struct {
		id  string
		key ed25519.PrivateKey
	}{{"kim", kim}, {"lena", s.keys["lena"]}, {"sam", s.keys["sam"]}} {
		stdout, stderr, err := runCmd(t, as(who.id, "approver"), "roster", "sign", p.Digest, "--key", keyFile(who.id, who.key), "--yes")
		if err != nil {
			t.Fatalf("roster sign by %s: %v\n%s\n%s", who.id, err, stdout, stderr)
		}
		if who.id != "sam" && strings.Contains(stdout, "pushed") {
			t.Errorf("%s's signature did not adopt version 3, yet the tool pushed:\n%s", who.id, stdout)
		}
		out = stdout + stderr
	}
	for _, c := range cur.Custodians {
		if want := "custodian " + c.Name + " (" + c.URL + ") holds roster version 3 (" + p.Digest + ")"; !strings.Contains(out, want) {
			t.Errorf("sam's roster sign does not report %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "WARNING") {
		t.Errorf("sam's roster sign warns:\n%s", out)
	}
	for _, c := range cur.Custodians {
		st, err := client.CustodianRosterStatus(ctx, nil, c.URL)
		if err != nil || st.Version != 3 || st.Digest != p.Digest {
			t.Errorf("%s's roster status after the push: %+v %v", c.Name, st, err)
		}
	}

	// lena, removed, approves the attacker's request; the mediator hands
	// the custodians the chain without version 3, where she still counts.
	var canonical, officerSig []byte
	if err := s.db.QueryRow(ctx, "SELECT canonical, officer_signature FROM access_requests WHERE request_id = $1", s.grab.id).Scan(&canonical, &officerSig); err != nil {
		t.Fatal(err)
	}
	var approvals []wire.EvidenceApproval
	for _, who := range []string{"lena", "sam"} {
		approvals = append(approvals, wire.EvidenceApproval{ApproverID: who, Decision: "approve", ApprovedAt: time.Now().UTC(),
			Signature: ed25519.Sign(s.keys[who], approval.Message(s.grab.id, s.grab.digest, "approve", who))})
	}
	served, err := adminClient.RosterChain(ctx)
	if err != nil || len(served.Chain) != 3 {
		t.Fatalf("the chain with version 3: %d versions, %v", len(served.Chain), err)
	}
	for i, r := range s.remotes {
		var refused *escrow.RefusedError
		_, err := r.Release(ctx, wire.ReleaseEvidence{Roster: s.genuineChain, Canonical: canonical, OfficerSignature: officerSig,
			Approvals: approvals, Shares: []wire.ShareRef{s.secretRefs[i]}})
		if !errors.As(err, &refused) || !strings.Contains(strings.Join(refused.Reasons, ";"), "does not hold version 3") {
			t.Errorf("%s: the chain without the removal: %v", r.Name, err)
		}
		_, err = r.Release(ctx, wire.ReleaseEvidence{Roster: served.Chain, Canonical: canonical, OfficerSignature: officerSig,
			Approvals: approvals, Shares: []wire.ShareRef{s.secretRefs[i]}})
		if !errors.As(err, &refused) || !strings.Contains(strings.Join(refused.Reasons, ";"), "legal") {
			t.Errorf("%s: lena's approval under version 3: %v", r.Name, err)
		}
	}
	if n := countSecretReleases(t, s.db); n != 0 {
		t.Fatalf("%d shares of the secret conversation left a custodian", n)
	}

	// Anyone may push again; a custodian holding version 3 says so.
	stdout, stderr, err := runCmd(t, as("aud", "auditor"), "roster", "push")
	if err != nil || strings.Count(stdout, "holds roster version 3") != len(cur.Custodians) || strings.Contains(stderr, "WARNING") {
		t.Errorf("roster push: %v\n%s\n%s", err, stdout, stderr)
	}
}

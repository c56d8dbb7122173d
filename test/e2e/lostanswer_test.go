package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/mediatorhq/mediator/escrow"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/wire"
)

// lostCustodianAnswer is what the chapter of a custodian's lost answer
// needs of its story.
type lostCustodianAnswer struct {
	in                        *instance
	db                        *pgx.Conn
	remotes                   []*escrow.Remote
	chain                     []roster.Signed // the roster chain in force
	approvers                 map[string]ed25519.PrivateKey
	admin, olga, genesis, dir string            // dir holds olga.key
	want                      map[string][]byte // liesConvo's keys, by "conversation/key id"
}

// chapterLostCustodianAnswer: custodian-1 releases its shares of a request
// and the answer is lost on its way to the mediator (here: the mediator's
// call, made directly, whose answer nobody keeps). The officer's release
// through the mediator then completes with custodian-1's shares: asked
// again, custodian-1 checks everything again and answers the same sealed
// bytes with the same signed receipts, which the mediator's receipt check
// takes and keeps and the officer's client verifies and opens. Asked once
// more, it gives the same bytes again.
func chapterLostCustodianAnswer(t *testing.T, l lostCustodianAnswer) {
	ctx := context.Background()
	c1 := l.remotes[0]
	id := approvedRequest(t, l.in, l.admin, l.olga, l.approvers, liesConvo, filepath.Join(l.dir, "olga.key.pub"))
	ev := wire.ReleaseEvidence{Roster: l.chain}
	if err := l.db.QueryRow(ctx, "SELECT canonical, officer_signature FROM access_requests WHERE request_id = $1", id).
		Scan(&ev.Canonical, &ev.OfficerSignature); err != nil {
		t.Fatal(err)
	}
	rows, _ := l.db.Query(ctx, "SELECT approver_id, decision, signature, approved_at FROM access_approvals WHERE request_id = $1", id)
	for rows.Next() {
		var a wire.EvidenceApproval
		rows.Scan(&a.ApproverID, &a.Decision, &a.Signature, &a.ApprovedAt)
		ev.Approvals = append(ev.Approvals, a)
	}
	rows.Close()
	rows, _ = l.db.Query(ctx, `SELECT s.escrow_id::text, s.locator FROM escrow_custodian_shares s JOIN escrow_keys k USING (escrow_id)
		WHERE k.conversation_id = $1 AND s.custodian = $2`, liesConvo, c1.Name)
	for rows.Next() {
		var r wire.ShareRef
		rows.Scan(&r.EscrowID, &r.Locator)
		ev.Shares = append(ev.Shares, r)
	}
	rows.Close()
	if len(ev.Shares) != len(l.want) {
		t.Fatalf("%d shares of %s at %s, want %d", len(ev.Shares), liesConvo, c1.Name, len(l.want))
	}

	released := func(t *testing.T, what string) map[string]wire.CustodianShare {
		t.Helper()
		ans, err := c1.Release(ctx, ev)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		out := map[string]wire.CustodianShare{}
		for _, sh := range ans.Shares {
			if sh.Error != nil || sh.Receipt == nil {
				t.Fatalf("%s: share %s: %+v", what, sh.EscrowID, sh.Error)
			}
			out[sh.EscrowID] = sh
		}
		return out
	}
	var lost map[string]wire.CustodianShare // the answer that was lost
	same := func(t *testing.T, what string, escrowID string, sealed []byte, receipt string) {
		t.Helper()
		want := lost[escrowID]
		if !bytes.Equal(sealed, want.Sealed) || receipt != want.Receipt.Hash() {
			t.Fatalf("%s: custodian-1's share of %s is not the answer that was lost", what, escrowID)
		}
	}
	lost = released(t, "the release whose answer is lost")

	// The officer releases through the mediator, which kept nothing of
	// custodian-1's and asks it again.
	officer, _ := newClient(l.in.base, l.olga, http.DefaultClient)
	rel, err := officer.Release(ctx, id)
	if err != nil || len(rel.Keys) != len(l.want) {
		t.Fatalf("the officer's release after the lost answer: %+v %v", rel, err)
	}
	for _, k := range rel.Keys {
		n := 0
		for _, sh := range k.Shares {
			if sh.Custodian == c1.Name {
				n++
				same(t, "the officer's release", k.EscrowID, sh.Sealed, sh.Receipt.Hash())
			}
		}
		if n != 1 {
			t.Fatalf("the officer's release holds %d shares of %s by %s, want 1", n, k.EscrowID, c1.Name)
		}
	}
	// The officer's CLI fetches the release, verifies every receipt and
	// opens the keys deposited.
	out := filepath.Join(t.TempDir(), "after-lost.ndjson")
	stdout, stderr, err := officerCLI(t, l.in.base, l.olga, l.genesis, l.dir, id, out)
	if err != nil || !strings.Contains(stderr, "fetching the kept release") || strings.Contains(stderr, "dropped") {
		t.Fatalf("the officer's CLI: %v\n%s\n%s", err, stdout, stderr)
	}
	opened := readOpened(t, out)
	for name, key := range l.want {
		if !bytes.Equal(opened[name], key) {
			t.Fatalf("%s opened into another key than the one deposited", name)
		}
	}

	// Asked once more, custodian-1 gives the same bytes again.
	for escrowID, sh := range released(t, "asked once more") {
		same(t, "asked once more", escrowID, sh.Sealed, sh.Receipt.Hash())
	}
}

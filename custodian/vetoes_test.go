package custodian_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/client"
	"github.com/mediatorhq/mediator/dev"
	"github.com/mediatorhq/mediator/escrow"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/wire"
)

// TestVetoDeliveredDirectly: a third approver's deny vote, posted to a
// custodian with no credential, is recorded once there (the same vote
// again changes nothing); a vote with a bad signature, by no approver, by
// the officer, on bytes that are no canonical request, an approval, or
// with a roster chain the custodian does not accept is refused with a
// code and recorded nowhere. Then a release with two genuine approvals
// and no deny in its evidence, as a mediator withholding the veto would
// send it, is refused by that custodian, naming the veto; another
// custodian, which has no record of it, releases: the refusal is the
// custodian's own record, not the evidence.
func TestVetoDeliveredDirectly(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, dev.CustodianOptions{})
	id, receipts := f.deposit(t, "conv-a", "e1", bytes.Repeat([]byte{7}, 32))
	now := time.Now()
	url := f.set.Custodians[0].URL

	// Version 2 adds vic (legal), a third approver.
	genesis := f.set.Genesis()
	g, _ := genesis.Digest()
	vicPub, vic, _ := ed25519.GenerateKey(rand.Reader)
	f.approvers["vic"] = vic
	v2 := genesis
	v2.Version, v2.Previous = 2, g
	v2.Approvers = append(append([]roster.Approver(nil), genesis.Approvers...), roster.Approver{ID: "vic", Roles: []string{"legal"}, PublicKey: vicPub})
	chain := []roster.Signed{f.chain[0], f.signed(t, v2, "lena", "sam", "vic")}

	canonical, approvals := f.request(t, []string{"conv-a"}, now.Add(-time.Hour), now.Add(time.Hour), "lena", "sam")
	req, _ := approval.Parse(canonical)
	digest := approval.Digest(canonical)
	deny := func(who string, key ed25519.PrivateKey) wire.Veto {
		return wire.Veto{Roster: chain, Canonical: canonical, ApproverID: who, Decision: approval.Deny,
			Signature: ed25519.Sign(key, approval.Message(req.ID, digest, approval.Deny, who))}
	}

	// The refusals first, while nothing is on record.
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	other := req
	other.CaseID = "case-2"
	otherCanonical, _ := other.Canonical()
	for name, c := range map[string]struct {
		veto   wire.Veto
		status int
		code   string
	}{
		"signed with lena's key as vic": {deny("vic", f.approvers["lena"]), 422, "veto_bad_signature"},
		"by no approver":                {deny("zed", stranger), 422, "veto_not_approver"},
		"by the officer":                {deny("olga", f.approvers["olga"]), 422, "veto_not_approver"},
		"not a canonical request": {func() wire.Veto {
			v := deny("vic", vic)
			v.Canonical = append(bytes.Clone(canonical), ' ')
			return v
		}(), 422, "veto_not_canonical"},
		"an approval": {func() wire.Veto {
			v := deny("vic", vic)
			v.Decision = approval.Approve
			v.Signature = ed25519.Sign(vic, approval.Message(req.ID, digest, approval.Approve, "vic"))
			return v
		}(), 422, "veto_not_deny"},
		"no roster chain": {func() wire.Veto { v := deny("vic", vic); v.Roster = nil; return v }(), 422, "roster_missing"},
		"a chain from another genesis": {func() wire.Veto {
			v := deny("vic", vic)
			og := genesis
			og.Threshold = 2
			v.Roster = []roster.Signed{f.signed(t, og, "lena", "sam")}
			return v
		}(), 422, "roster_unverified"},
	} {
		_, err := client.SendVeto(ctx, nil, url, c.veto)
		var e *client.Error
		if !errors.As(err, &e) || e.Status != c.status || e.Code != c.code {
			t.Errorf("%s: %v, want %d %s", name, err, c.status, c.code)
		}
	}
	if got := f.set.Counter(0, "mediator_custodian_vetoes_total", "refused"); got != 7 {
		t.Errorf("refused vetoes counted %v, want 7", got)
	}

	// vic's veto, delivered directly with no credential: recorded.
	rec, err := client.SendVeto(ctx, nil, url, deny("vic", vic))
	if err != nil || rec.Status != "recorded" || rec.RequestID != req.ID || rec.Digest != digest || rec.ApproverID != "vic" ||
		rec.RosterVersion != 2 || rec.Custodian != "custodian-1" {
		t.Fatalf("vic's veto: %+v %v", rec, err)
	}
	again, err := client.SendVeto(ctx, nil, url, deny("vic", vic))
	if err != nil || again.Status != "already_recorded" || !again.RecordedAt.Equal(rec.RecordedAt) {
		t.Errorf("vic's veto again: %+v %v", again, err)
	}
	// The chain it carried is now the version the custodian holds.
	if st, err := client.CustodianRosterStatus(ctx, nil, url); err != nil || st.Version != 2 {
		t.Errorf("roster status after the veto: %+v %v", st, err)
	}
	// Another request's bytes under the same id: the record stands.
	v := deny("vic", vic)
	v.Canonical = otherCanonical
	v.Signature = ed25519.Sign(vic, approval.Message(req.ID, approval.Digest(otherCanonical), approval.Deny, "vic"))
	var e *client.Error
	if _, err := client.SendVeto(ctx, nil, url, v); !errors.As(err, &e) || e.Status != 409 || e.Code != "veto_conflict" {
		t.Errorf("vic's veto of other bytes under the same id: %v", err)
	}
	// The genesis alone is older than what the custodian holds now.
	v = deny("vic", vic)
	v.Roster = f.chain
	if _, err := client.SendVeto(ctx, nil, url, v); !errors.As(err, &e) || e.Status != 409 || e.Code != "roster_rollback" {
		t.Errorf("a veto with an older chain: %v", err)
	}
	// A body past the bound is refused before anything is verified.
	resp, err := http.Post(url+"/v1/vetoes", "application/json", bytes.NewReader(append(bytes.Repeat([]byte(" "), 6<<20), '{', '}')))
	if err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("a 6 MiB veto: %v %v", resp, err)
	}
	if resp != nil {
		resp.Body.Close()
	}
	if got := f.set.Counter(0, "mediator_custodian_vetoes_total", "recorded"); got != 1 {
		t.Errorf("recorded vetoes counted %v, want 1", got)
	}

	// The mediator withholds the veto: lena's and sam's approvals alone.
	ev := func(i int, as []wire.EvidenceApproval) wire.ReleaseEvidence {
		return wire.ReleaseEvidence{Roster: chain, Canonical: canonical, OfficerSignature: f.sig(canonical), Approvals: as, Shares: ref(id, receipts, i)}
	}
	_, err = f.remotes[0].Release(ctx, ev(0, approvals))
	var refused *escrow.RefusedError
	if !errors.As(err, &refused) {
		t.Fatalf("a release withholding vic's veto: %v", err)
	}
	reasons := strings.Join(refused.Reasons, "; ")
	if !strings.Contains(reasons, "vic voted to deny") || !strings.Contains(reasons, "vic's deny vote, delivered to this custodian directly") {
		t.Errorf("the refusal does not name the veto: %s", reasons)
	}
	if got := f.set.Counter(0, "mediator_custodian_veto_withheld_total"); got != 1 {
		t.Errorf("mediator_custodian_veto_withheld_total %v, want 1", got)
	}
	// Evidence that carries the veto is refused too, and is not a
	// withheld veto.
	withDeny := append(append([]wire.EvidenceApproval(nil), approvals...), wire.EvidenceApproval{ApproverID: "vic", Decision: approval.Deny,
		ApprovedAt: time.Now().UTC(), Signature: deny("vic", vic).Signature})
	_, err = f.remotes[0].Release(ctx, ev(0, withDeny))
	if !errors.As(err, &refused) || !strings.Contains(strings.Join(refused.Reasons, ";"), "vic voted to deny") ||
		strings.Contains(strings.Join(refused.Reasons, ";"), "not in the release evidence") {
		t.Errorf("a release carrying vic's veto: %v", err)
	}
	if got := f.set.Counter(0, "mediator_custodian_veto_withheld_total"); got != 1 {
		t.Errorf("mediator_custodian_veto_withheld_total %v after evidence that carries the veto, want 1", got)
	}

	// Custodian 2 never received the veto: the same evidence releases
	// there. That is why the tool delivers it to every custodian.
	ans, err := f.remotes[1].Release(ctx, ev(1, approvals))
	if err != nil || ans.Shares[0].Error != nil {
		t.Fatalf("custodian 2, without the veto: %+v %v", ans, err)
	}
}

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

	"github.com/google/uuid"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/client"
	"github.com/mediatorhq/mediator/dev"
	"github.com/mediatorhq/mediator/escrow"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/wire"
)

// TestRevocationDeliveredDirectly: the filing officer's signed
// revocation, posted to a custodian with no credential, is recorded once
// there (the same revocation again changes nothing); one signed with
// another key, by another officer, by an approver, of a request filed in
// an approver's name, on bytes that are no canonical request, the
// request's own signature offered as a revocation, or with a roster chain
// the custodian does not accept is refused with a code and recorded
// nowhere. Then a release with every approval the policy needs is refused
// by that custodian as revoked by its officer; another custodian, which
// has no record of it, releases: the refusal is the custodian's own
// record, not the evidence.
func TestRevocationDeliveredDirectly(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, dev.CustodianOptions{})
	id, receipts := f.deposit(t, "conv-a", "e1", bytes.Repeat([]byte{7}, 32))
	now := time.Now()
	url := f.set.Custodians[0].URL

	// Version 2 adds omar, another officer.
	genesis := f.set.Genesis()
	g, _ := genesis.Digest()
	omarPub, omar, _ := ed25519.GenerateKey(rand.Reader)
	f.approvers["omar"] = omar
	v2 := genesis
	v2.Version, v2.Previous = 2, g
	v2.Approvers = append(append([]roster.Approver(nil), genesis.Approvers...), roster.Approver{ID: "omar", Roles: []string{roster.RoleOfficer}, PublicKey: omarPub})
	chain := []roster.Signed{f.chain[0], f.signed(t, v2, "lena", "sam", "omar")}

	canonical, approvals := f.request(t, []string{"conv-a"}, now.Add(-time.Hour), now.Add(time.Hour), "lena", "sam")
	req, _ := approval.Parse(canonical)
	digest := approval.Digest(canonical)
	revoke := func(who string, key ed25519.PrivateKey) wire.Revocation {
		return wire.Revocation{Roster: chain, Canonical: canonical, OfficerID: who, Signature: approval.SignRevocation(key, req.ID, digest)}
	}

	// The refusals first, while nothing is on record.
	lenas := req
	lenas.ID, lenas.Requester = uuid.NewString(), "lena"
	lenasCanonical, _ := lenas.Canonical()
	for name, c := range map[string]struct {
		revocation wire.Revocation
		status     int
		code       string
	}{
		"signed with omar's key as olga": {revoke("olga", omar), 422, "revocation_bad_signature"},
		"by another officer":             {revoke("omar", omar), 422, "revocation_not_requester"},
		"by an approver":                 {revoke("lena", f.approvers["lena"]), 422, "revocation_not_requester"},
		"of a request in an approver's name": {wire.Revocation{Roster: chain, Canonical: lenasCanonical, OfficerID: "lena",
			Signature: approval.SignRevocation(f.approvers["lena"], lenas.ID, approval.Digest(lenasCanonical))}, 422, "revocation_not_officer"},
		"the request's own signature": {func() wire.Revocation {
			r := revoke("olga", f.approvers["olga"])
			r.Signature = f.sig(canonical)
			return r
		}(), 422, "revocation_bad_signature"},
		"not a canonical request": {func() wire.Revocation {
			r := revoke("olga", f.approvers["olga"])
			r.Canonical = append(bytes.Clone(canonical), ' ')
			return r
		}(), 422, "revocation_not_canonical"},
		"no roster chain": {func() wire.Revocation { r := revoke("olga", f.approvers["olga"]); r.Roster = nil; return r }(), 422, "roster_missing"},
		"a chain from another genesis": {func() wire.Revocation {
			r := revoke("olga", f.approvers["olga"])
			og := genesis
			og.Threshold = 2
			r.Roster = []roster.Signed{f.signed(t, og, "lena", "sam")}
			return r
		}(), 422, "roster_unverified"},
	} {
		_, err := client.SendRevocation(ctx, nil, url, c.revocation)
		var e *client.Error
		if !errors.As(err, &e) || e.Status != c.status || e.Code != c.code {
			t.Errorf("%s: %v, want %d %s", name, err, c.status, c.code)
		}
	}
	if got := f.set.Counter(0, "mediator_custodian_revocations_total", "refused"); got != 8 {
		t.Errorf("refused revocations counted %v, want 8", got)
	}

	// olga's revocation, delivered directly with no credential: recorded.
	rec, err := client.SendRevocation(ctx, nil, url, revoke("olga", f.approvers["olga"]))
	if err != nil || rec.Status != "recorded" || rec.RequestID != req.ID || rec.Digest != digest || rec.OfficerID != "olga" ||
		rec.RosterVersion != 2 || rec.Custodian != "custodian-1" {
		t.Fatalf("olga's revocation: %+v %v", rec, err)
	}
	again, err := client.SendRevocation(ctx, nil, url, revoke("olga", f.approvers["olga"]))
	if err != nil || again.Status != "already_recorded" || !again.RecordedAt.Equal(rec.RecordedAt) {
		t.Errorf("olga's revocation again: %+v %v", again, err)
	}
	if st, err := client.CustodianRosterStatus(ctx, nil, url); err != nil || st.Version != 2 {
		t.Errorf("roster status after the revocation: %+v %v", st, err)
	}
	// Another request's bytes under the same id: the record stands.
	other := req
	other.CaseID = "case-2"
	otherCanonical, _ := other.Canonical()
	r := wire.Revocation{Roster: chain, Canonical: otherCanonical, OfficerID: "olga",
		Signature: approval.SignRevocation(f.approvers["olga"], req.ID, approval.Digest(otherCanonical))}
	var e *client.Error
	if _, err := client.SendRevocation(ctx, nil, url, r); !errors.As(err, &e) || e.Status != 409 || e.Code != "revocation_conflict" {
		t.Errorf("olga's revocation of other bytes under the same id: %v", err)
	}
	// The genesis alone is older than what the custodian holds now.
	r = revoke("olga", f.approvers["olga"])
	r.Roster = f.chain
	if _, err := client.SendRevocation(ctx, nil, url, r); !errors.As(err, &e) || e.Status != 409 || e.Code != "roster_rollback" {
		t.Errorf("a revocation with an older chain: %v", err)
	}
	// A body past the bound is refused before anything is verified.
	resp, err := http.Post(url+"/v1/revocations", "application/json", bytes.NewReader(append(bytes.Repeat([]byte(" "), 6<<20), '{', '}')))
	if err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("a 6 MiB revocation: %v %v", resp, err)
	}
	if resp != nil {
		resp.Body.Close()
	}
	if got := f.set.Counter(0, "mediator_custodian_revocations_total", "recorded"); got != 1 {
		t.Errorf("recorded revocations counted %v, want 1", got)
	}
	if got := f.set.Counter(0, "mediator_custodian_revocations_total", "already_recorded"); got != 1 {
		t.Errorf("revocations recorded before counted %v, want 1", got)
	}

	// The mediator ignores the revocation and asks with both approvals.
	ev := func(i int) wire.ReleaseEvidence {
		return wire.ReleaseEvidence{Roster: chain, Canonical: canonical, OfficerSignature: f.sig(canonical), Approvals: approvals, Shares: ref(id, receipts, i)}
	}
	_, err = f.remotes[0].Release(ctx, ev(0))
	var refused *escrow.RefusedError
	if !errors.As(err, &refused) || !strings.Contains(strings.Join(refused.Reasons, "; "), "request revoked by its officer (olga, delivered to this custodian directly") {
		t.Fatalf("a release of a revoked request: %v", err)
	}
	if got := f.set.Counter(0, "mediator_custodian_revoked_refused_total"); got != 1 {
		t.Errorf("mediator_custodian_revoked_refused_total %v, want 1", got)
	}
	if got := f.set.Counter(0, "mediator_custodian_releases_total", "refused"); got != 1 {
		t.Errorf("refused releases counted %v, want 1", got)
	}
	if got := f.set.Counter(0, "mediator_custodian_denials_total"); got != 0 {
		t.Errorf("a revoked request's refusal counted as a policy denial: %v", got)
	}

	// Custodian 2 never received the revocation: the same evidence
	// releases there. That is why the tool delivers it to every custodian.
	ans, err := f.remotes[1].Release(ctx, ev(1))
	if err != nil || ans.Shares[0].Error != nil {
		t.Fatalf("custodian 2, without the revocation: %+v %v", ans, err)
	}
}

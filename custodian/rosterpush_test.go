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

	"github.com/mediatorhq/mediator/client"
	"github.com/mediatorhq/mediator/dev"
	"github.com/mediatorhq/mediator/escrow"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/wire"
)

// gauge is the value of custodian i's gauge name.
func gauge(t *testing.T, f *fixture, i int, name string) float64 {
	t.Helper()
	fams, err := f.set.Metrics[i].Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, fam := range fams {
		if fam.GetName() == name && len(fam.GetMetric()) == 1 {
			return fam.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return -1
}

// TestRosterPush: anyone may hand a custodian a roster chain, with no
// credential, and a verified extension is recorded exactly as one a
// release carries: status and metric show it. A chain from another
// genesis, a version its signatures do not adopt, and a chain older than
// what the custodian holds are refused with a code, and change nothing.
// Once a version that removes sam is pushed, a release with the old chain
// (where sam still counts) is refused as a rollback, and one with the new
// chain does not count sam's approval: the mediator cannot withhold the
// removal from a custodian that was told.
func TestRosterPush(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, dev.CustodianOptions{})
	id, receipts := f.deposit(t, "conv-a", "e1", bytes.Repeat([]byte{5}, 32))
	now := time.Now()
	genesis := f.set.Genesis()
	g, _ := genesis.Digest()
	url := f.set.Custodians[0].URL

	// Version 2 adds ola (security); version 3 removes sam.
	olaPub, ola, _ := ed25519.GenerateKey(rand.Reader)
	f.approvers["ola"] = ola
	v2 := genesis
	v2.Version, v2.Previous = 2, g
	v2.Approvers = append(append([]roster.Approver(nil), genesis.Approvers...), roster.Approver{ID: "ola", Roles: []string{"security"}, PublicKey: olaPub})
	v2d, _ := v2.Digest()
	v3 := v2
	v3.Version, v3.Previous = 3, v2d
	v3.Approvers = nil
	for _, a := range v2.Approvers {
		if a.ID != "sam" {
			v3.Approvers = append(v3.Approvers, a)
		}
	}
	v3d, _ := v3.Digest()
	v2chain := []roster.Signed{f.chain[0], f.signed(t, v2, "lena", "sam", "ola")}
	v3chain := append(append([]roster.Signed(nil), v2chain...), f.signed(t, v3, "lena", "sam"))

	status := func(i int) wire.CustodianRoster {
		t.Helper()
		st, err := client.CustodianRosterStatus(ctx, nil, f.set.Custodians[i].URL)
		if err != nil {
			t.Fatalf("roster status of custodian %d: %v", i+1, err)
		}
		return st
	}
	if st := status(0); st.Version != 0 || st.Digest != "" || st.Genesis != g || st.Custodian != "custodian-1" {
		t.Fatalf("status before any version: %+v", st)
	}

	// Version 2, pushed with no credential: recorded.
	ans, err := client.PushRoster(ctx, nil, url, v2chain)
	if err != nil || ans.Version != 2 || ans.Digest != v2d {
		t.Fatalf("push version 2: %+v %v", ans, err)
	}
	if st := status(0); st.Version != 2 || st.Digest != v2d {
		t.Errorf("status after the push: %+v", st)
	}
	if got := gauge(t, f, 0, "mediator_custodian_roster_version"); got != 2 {
		t.Errorf("mediator_custodian_roster_version %v, want 2", got)
	}
	// The same chain again changes nothing and says so.
	if ans, err := client.PushRoster(ctx, nil, url, v2chain); err != nil || ans.Version != 2 {
		t.Errorf("push version 2 again: %+v %v", ans, err)
	}

	otherGenesis := genesis
	otherGenesis.Threshold = 2
	for name, c := range map[string]struct {
		chain  []roster.Signed
		status int
		code   string
	}{
		"another genesis":            {[]roster.Signed{f.signed(t, otherGenesis, "lena", "sam", "olga")}, 422, "roster_unverified"},
		"version 3 signed by lena":   {append(append([]roster.Signed(nil), v2chain...), f.signed(t, v3, "lena")), 422, "roster_unverified"},
		"version 3 with a bad sig":   {append(append([]roster.Signed(nil), v2chain...), f.signed(t, v3, "lena", "olga")), 422, "roster_unverified"},
		"the genesis alone (older)":  {f.chain, 409, "roster_rollback"},
		"no chain at all":            {nil, 422, "roster_missing"},
		"a branch of another digest": {[]roster.Signed{f.chain[0], f.signed(t, otherV2(t, v2), "lena", "sam")}, 409, "roster_rollback"},
	} {
		_, err := client.PushRoster(ctx, nil, url, c.chain)
		var e *client.Error
		if !errors.As(err, &e) || e.Status != c.status || e.Code != c.code {
			t.Errorf("%s: %v, want %d %s", name, err, c.status, c.code)
		}
	}
	if st := status(0); st.Version != 2 || st.Digest != v2d {
		t.Errorf("status after the refused pushes: %+v", st)
	}
	if got := f.set.Counter(0, "mediator_custodian_roster_refused_total"); got != 0 {
		t.Errorf("refused pushes counted as refused releases: %v", got)
	}

	// A body past the bound is refused before anything is verified.
	big := bytes.Repeat([]byte(" "), 5<<20)
	resp, err := http.Post(url+"/v1/roster", "application/json", bytes.NewReader(append(big, []byte(`{"chain":[]}`)...)))
	if err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("a 5 MiB push: %v %v", resp, err)
	}
	if resp != nil {
		resp.Body.Close()
	}

	// Version 3 removes sam; custodians 1 and 2 are told, by a push.
	for i := range 2 {
		if ans, err := client.PushRoster(ctx, nil, f.set.Custodians[i].URL, v3chain); err != nil || ans.Version != 3 || ans.Digest != v3d {
			t.Fatalf("push version 3 to custodian %d: %+v %v", i+1, ans, err)
		}
	}
	if got := gauge(t, f, 1, "mediator_custodian_roster_version"); got != 3 {
		t.Errorf("custodian 2's mediator_custodian_roster_version %v, want 3", got)
	}
	// The mediator withholds version 3: it hands custodian 1 the chain
	// where sam still counts, with lena's and sam's approvals.
	canonical, approvals := f.request(t, []string{"conv-a"}, now.Add(-time.Hour), now.Add(time.Hour), "lena", "sam")
	_, err = f.remotes[0].Release(ctx, wire.ReleaseEvidence{Roster: v2chain, Canonical: canonical, OfficerSignature: f.sig(canonical), Approvals: approvals, Shares: ref(id, receipts, 0)})
	var refused *escrow.RefusedError
	if !errors.As(err, &refused) || !strings.Contains(strings.Join(refused.Reasons, ";"), "does not hold version 3") {
		t.Errorf("the withheld removal, the old chain: %v", err)
	}
	if got := f.set.Counter(0, "mediator_custodian_roster_refused_total"); got != 1 {
		t.Errorf("roster refusals counted %v, want 1", got)
	}
	// With the new chain, sam's approval does not count: no security
	// approver approved.
	_, err = f.remotes[0].Release(ctx, wire.ReleaseEvidence{Roster: v3chain, Canonical: canonical, OfficerSignature: f.sig(canonical), Approvals: approvals, Shares: ref(id, receipts, 0)})
	if !errors.As(err, &refused) || !strings.Contains(strings.Join(refused.Reasons, ";"), "security") {
		t.Errorf("sam's approval under version 3: %v", err)
	}
	// Custodian 3 was never told: the old chain still works there, which
	// is why the tool pushes to every custodian.
	ans3, err := f.remotes[2].Release(ctx, wire.ReleaseEvidence{Roster: v2chain, Canonical: canonical, OfficerSignature: f.sig(canonical), Approvals: approvals, Shares: ref(id, receipts, 2)})
	if err != nil || ans3.Shares[0].Error != nil {
		t.Fatalf("custodian 3, never told of version 3: %+v %v", ans3, err)
	}
	// lena and ola approve under version 3: the release goes through.
	c3, a3 := f.request(t, []string{"conv-a"}, now.Add(-time.Hour), now.Add(time.Hour), "lena", "ola")
	rel, err2 := f.remotes[0].Release(ctx, wire.ReleaseEvidence{Roster: v3chain, Canonical: c3, OfficerSignature: f.sig(c3), Approvals: a3, Shares: ref(id, receipts, 0)})
	if err2 != nil || rel.Shares[0].Error != nil {
		t.Fatalf("release under version 3: %+v %v", rel, err2)
	}
	if got := rel.Shares[0].Receipt.Receipt.RosterDigest; got != v3d {
		t.Errorf("the receipt names roster %s, want version 3 %s", got, v3d)
	}

	// A restarted custodian reports the version it holds from the start.
	f.set.Stop(1)
	f.set.Run(1)
	if got := gauge(t, f, 1, "mediator_custodian_roster_version"); got != 3 {
		t.Errorf("custodian 2 after a restart: mediator_custodian_roster_version %v, want 3", got)
	}
}

// otherV2 is a version 2 unlike v2 (another threshold).
func otherV2(t *testing.T, v2 roster.Roster) roster.Roster {
	t.Helper()
	o := v2
	o.Approvers = v2.Approvers[:3]
	o.Threshold = 2
	return o
}

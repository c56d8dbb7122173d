package custodian_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	vaultapi "github.com/hashicorp/vault/api"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/client"
	"github.com/mediatorhq/mediator/custodian"
	vaultsetup "github.com/mediatorhq/mediator/deploy/vault"
	"github.com/mediatorhq/mediator/dev"
	"github.com/mediatorhq/mediator/escrow"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/seal"
	"github.com/mediatorhq/mediator/shares"
	"github.com/mediatorhq/mediator/test/harness"
	"github.com/mediatorhq/mediator/test/harness/custodians"
	"github.com/mediatorhq/mediator/wire"
)

var env *harness.Env

func TestMain(m *testing.M) { harness.Main(m, &env) }

// fixture is five custodians trusting two approvers, and a depositor's and
// an officer's keys.
type fixture struct {
	set       *custodians.Set
	remotes   []*escrow.Remote
	approvers map[string]ed25519.PrivateKey
	officer   hpke.PrivateKey
	recipient seal.PublicKey
	// chain is the roster chain the custodians are handed: the genesis
	// they pin, signed by both approvers.
	chain []roster.Signed
}

// signed is r signed by the given approvers with their keys in f.
func (f *fixture) signed(t *testing.T, r roster.Roster, signers ...string) roster.Signed {
	t.Helper()
	c, err := r.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	s := roster.Signed{Roster: c}
	for _, id := range signers {
		s.Signatures = append(s.Signatures, roster.Sign(f.approvers[id], roster.Digest(c), id))
	}
	return s
}

func newFixture(t *testing.T, opts dev.CustodianOptions) *fixture {
	t.Helper()
	f := &fixture{approvers: map[string]ed25519.PrivateKey{}}
	for _, a := range [][2]string{{"lena", "legal"}, {"sam", "security"}, {"olga", roster.RoleOfficer}} {
		pub, priv, _ := ed25519.GenerateKey(rand.Reader)
		f.approvers[a[0]] = priv
		opts.Approvers = append(opts.Approvers, roster.Approver{ID: a[0], Roles: []string{a[1]}, PublicKey: pub})
	}
	f.set = custodians.Start(t, env, opts)
	f.chain = []roster.Signed{f.signed(t, f.set.Genesis(), "lena", "sam", "olga")}
	var err error
	if f.remotes, err = f.set.File.Remotes(); err != nil {
		t.Fatal(err)
	}
	file, pub, _ := seal.NewKey(seal.KEMMLKEM768X25519)
	f.officer, _ = seal.ParseKey(file)
	f.recipient = pub
	return f
}

// deposit splits key for a v2 deposit, stores share i with custodian i
// and commits it, returning the escrow id and each custodian's signed
// receipt.
func (f *fixture) deposit(t *testing.T, convo, keyID string, key []byte) (string, []shares.SignedReceipt) {
	t.Helper()
	d := f.depositBody(t, convo, keyID, key, true)
	return d.id, d.receipts
}

// deposited is a deposit made by depositBody.
type deposited struct {
	id       string
	bodies   []wire.ShareToStore // what the mediator forwarded: what a host that saw it can replay
	refs     [][]wire.ShareRef   // custodian i's share
	receipts []shares.SignedReceipt
}

// depositBody is deposit, committing the shares only if commit is set.
func (f *fixture) depositBody(t *testing.T, convo, keyID string, key []byte, commit bool) deposited {
	t.Helper()
	sp, err := shares.NewSplitter(f.set.SharesSet())
	if err != nil {
		t.Fatal(err)
	}
	b := shares.Binding{EscrowID: uuid.NewString(), DepositedAt: shares.FormatTime(time.Now())}
	commitment, sealed, err := sp.SplitBound(convo, keyID, b, key)
	if err != nil {
		t.Fatal(err)
	}
	d := deposited{id: b.EscrowID}
	for i, r := range f.remotes {
		it := wire.ShareToStore{EscrowID: b.EscrowID, ConversationID: convo, KeyID: keyID,
			Index: i + 1, Commitment: commitment, Sealed: sealed[i].Sealed, Depositor: "gw", DepositedAt: b.DepositedAt}
		d.bodies = append(d.bodies, it)
		res, err := r.Store(context.Background(), it)
		if err != nil || res.Error != nil || res.Stored == nil {
			t.Fatalf("store with %s: %v %+v", r.Name, err, res.Error)
		}
		d.refs = append(d.refs, []wire.ShareRef{{EscrowID: b.EscrowID, Locator: res.Stored.Locator}})
		if !commit {
			continue
		}
		com, err := r.Commit(context.Background(), d.refs[i][0])
		if err != nil || com.Error != nil || com.Receipt == nil {
			t.Fatalf("commit with %s: %v %+v", r.Name, err, com.Error)
		}
		if err := com.Receipt.Verify(f.set.Signer(i)); err != nil {
			t.Fatal(err)
		}
		d.receipts = append(d.receipts, *com.Receipt)
	}
	return d
}

// approve is approvals of canonical by the given approvers.
func (f *fixture) approve(canonical []byte, approvers ...string) []wire.EvidenceApproval {
	req, _ := approval.Parse(canonical)
	var as []wire.EvidenceApproval
	for _, id := range approvers {
		as = append(as, wire.EvidenceApproval{ApproverID: id, Decision: "approve", ApprovedAt: time.Now(),
			Signature: ed25519.Sign(f.approvers[id], approval.Message(req.ID, approval.Digest(canonical), "approve", id))})
	}
	return as
}

// sig is the officer olga's signature over a request's canonical bytes.
func (f *fixture) sig(canonical []byte) []byte {
	return approval.SignRequest(f.approvers["olga"], approval.Digest(canonical))
}

// request is a canonical request olga files for convos (sig signs it),
// and approvals by the given approvers.
func (f *fixture) request(t *testing.T, convos []string, from, to time.Time, approvers ...string) ([]byte, []wire.EvidenceApproval) {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Second)
	r := approval.Request{ID: uuid.NewString(), Requester: "olga", CaseID: "case-1", LegalBasis: "court_order", WarrantRef: "W 1",
		Jurisdiction: "US", Justification: "See the case file.", Scope: approval.Scope{ConversationIDs: convos, From: from, To: to},
		Recipient: f.recipient, CreatedAt: now.Add(-time.Minute), ExpiresAt: now.Add(time.Hour)}
	c, err := r.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	digest := approval.Digest(c)
	var as []wire.EvidenceApproval
	for _, id := range approvers {
		as = append(as, wire.EvidenceApproval{ApproverID: id, Decision: "approve", ApprovedAt: time.Now().UTC(),
			Signature: ed25519.Sign(f.approvers[id], approval.Message(r.ID, digest, "approve", id))})
	}
	return c, as
}

func ref(id string, receipts []shares.SignedReceipt, i int) []wire.ShareRef {
	return []wire.ShareRef{{EscrowID: id, Locator: receipts[i].Receipt.Locator}}
}

// TestStoreAndRelease: a custodian stores only a share that opens as its
// own share of the key named, and releases it only for a request it checks
// itself, to the request's recipient, once.
func TestStoreAndRelease(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, dev.CustodianOptions{})
	key := bytes.Repeat([]byte{0x42}, 32)
	id, receipts := f.deposit(t, "conv-a", "e1", key)
	r := receipts[0].Receipt
	if r.Kind != shares.ReceiptDeposit || r.Custodian != "custodian-1" || r.EscrowID != id || r.Index != 1 || !strings.HasPrefix(r.Locator, "deposits/") {
		t.Fatalf("deposit receipt: %+v", r)
	}

	// A share sealed to custodian 1 is refused by custodian 2.
	commitment, sealed, _ := shares.Split(f.set.SharesSet(), "conv-b", "e1", key)
	res, err := f.remotes[1].Store(ctx, wire.ShareToStore{EscrowID: uuid.NewString(), ConversationID: "conv-b", KeyID: "e1",
		Index: 2, Commitment: commitment, Sealed: sealed[0].Sealed})
	if err != nil || res.Error == nil || res.Error.Code != "share_invalid" || res.Stored != nil {
		t.Fatalf("a share sealed to another custodian: %+v %v", res, err)
	}

	now := time.Now()
	canonical, approvals := f.request(t, []string{"conv-a"}, now.Add(-time.Hour), now.Add(time.Hour), "lena", "sam")
	req, _ := approval.Parse(canonical)
	ans, err := f.remotes[0].Release(ctx, wire.ReleaseEvidence{Roster: f.chain, Canonical: canonical, OfficerSignature: f.sig(canonical), Approvals: approvals, Shares: ref(id, receipts, 0)})
	if err != nil || len(ans.Shares) != 1 || ans.Shares[0].Error != nil {
		t.Fatalf("release: %+v %v", ans, err)
	}
	sh := ans.Shares[0]
	rr := sh.Receipt.Receipt
	if err := sh.Receipt.Verify(f.set.Signer(0)); err != nil || rr.Kind != shares.ReceiptRelease || rr.RequestID != req.ID ||
		rr.RequestDigest != approval.Digest(canonical) || rr.RecipientKey != f.recipient.Fingerprint() || rr.SealedSHA256 != shares.SealedHash(sh.Sealed) ||
		rr.PolicyRevision == "" {
		t.Fatalf("release receipt: %+v %v", rr, err)
	}
	share, err := shares.OpenReleased(f.officer, req.ID, "conv-a", "e1", "custodian-1", 1, sh.Sealed)
	if err != nil || len(share) != 33 {
		t.Fatalf("the officer cannot open the released share: %v", err)
	}
	// Once per request and share: asked again, the same answer.
	ans, err = f.remotes[0].Release(ctx, wire.ReleaseEvidence{Roster: f.chain, Canonical: canonical, OfficerSignature: f.sig(canonical), Approvals: approvals, Shares: ref(id, receipts, 0)})
	if err != nil || ans.Shares[0].Error != nil || !bytes.Equal(ans.Shares[0].Sealed, sh.Sealed) || ans.Shares[0].Receipt.Hash() != sh.Receipt.Hash() {
		t.Fatalf("second release: %+v %v", ans, err)
	}

	// Out of scope: another conversation, or a window the share was not
	// stored in.
	c2, a2 := f.request(t, []string{"conv-z"}, now.Add(-time.Hour), now.Add(time.Hour), "lena", "sam")
	ans, _ = f.remotes[1].Release(ctx, wire.ReleaseEvidence{Roster: f.chain, Canonical: c2, OfficerSignature: f.sig(c2), Approvals: a2, Shares: ref(id, receipts, 1)})
	if ans.Shares[0].Error == nil || ans.Shares[0].Error.Code != "not_in_scope" {
		t.Fatalf("another conversation: %+v", ans)
	}
	c3, a3 := f.request(t, []string{"conv-a"}, now.Add(-48*time.Hour), now.Add(-24*time.Hour), "lena", "sam")
	ans, _ = f.remotes[1].Release(ctx, wire.ReleaseEvidence{Roster: f.chain, Canonical: c3, OfficerSignature: f.sig(c3), Approvals: a3, Shares: ref(id, receipts, 1)})
	if ans.Shares[0].Error == nil || ans.Shares[0].Error.Code != "not_in_scope" {
		t.Fatalf("another window: %+v", ans)
	}
}

// TestLostAnswerIsAnsweredAgain: a release answer lost on its way to the
// mediator is given again when the same release is asked again, after
// every check has run again: the same sealed bytes and the same signed
// receipt, never a new sealing, whatever else the call asks for. Another
// request for the same shares is governed by its own checks and gets its
// own sealing.
func TestLostAnswerIsAnsweredAgain(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, dev.CustodianOptions{})
	var refs []wire.ShareRef
	for i := range 3 {
		id, receipts := f.deposit(t, "conv-a", fmt.Sprint("e", i), bytes.Repeat([]byte{byte(i + 1)}, 32))
		refs = append(refs, ref(id, receipts, 0)...)
	}
	// A share the first call does not ask for (stored before the
	// approvals, as every share a request releases must be).
	id4, receipts4 := f.deposit(t, "conv-a", "e4", bytes.Repeat([]byte{4}, 32))
	now := time.Now()
	canonical, approvals := f.request(t, []string{"conv-a"}, now.Add(-time.Hour), now.Add(time.Hour), "lena", "sam")
	ev := func(canonical []byte, approvals []wire.EvidenceApproval, refs ...wire.ShareRef) wire.ReleaseEvidence {
		return wire.ReleaseEvidence{Roster: f.chain, Canonical: canonical, OfficerSignature: f.sig(canonical), Approvals: approvals, Shares: refs}
	}
	release := func(t *testing.T, ev wire.ReleaseEvidence) map[string]wire.CustodianShare {
		t.Helper()
		ans, err := f.remotes[0].Release(ctx, ev)
		if err != nil || len(ans.Shares) != len(ev.Shares) {
			t.Fatalf("release: %+v %v", ans, err)
		}
		out := map[string]wire.CustodianShare{}
		for _, sh := range ans.Shares {
			if sh.Error != nil {
				t.Fatalf("share %s: %+v", sh.EscrowID, *sh.Error)
			}
			out[sh.EscrowID] = sh
		}
		return out
	}
	same := func(t *testing.T, got, want map[string]wire.CustodianShare) {
		t.Helper()
		for id, w := range want {
			g, ok := got[id]
			if !ok || g.Index != w.Index || !bytes.Equal(g.Sealed, w.Sealed) || g.Receipt.Hash() != w.Receipt.Hash() ||
				g.Receipt.Receipt.At != w.Receipt.Receipt.At || !bytes.Equal(g.Receipt.Signature, w.Receipt.Signature) {
				t.Errorf("share %s answered again with another answer (found %v; receipt %+v, want %+v)", id, ok, g.Receipt, w.Receipt)
			}
		}
	}

	first := release(t, ev(canonical, approvals, refs...)) // and the answer is lost
	time.Sleep(10 * time.Millisecond)                      // a new sealing would state a later time
	same(t, release(t, ev(canonical, approvals, refs...)), first)
	// In any order, in part, and beside a share never released before.
	mixed := release(t, ev(canonical, approvals, ref(id4, receipts4, 0)[0], refs[2], refs[0]))
	same(t, mixed, map[string]wire.CustodianShare{refs[2].EscrowID: first[refs[2].EscrowID], refs[0].EscrowID: first[refs[0].EscrowID]})
	if m := mixed[id4].Receipt.Receipt; m.RequestID != first[refs[0].EscrowID].Receipt.Receipt.RequestID || m.At == first[refs[0].EscrowID].Receipt.Receipt.At {
		t.Errorf("the new share's receipt: %+v", m)
	}
	same(t, release(t, ev(canonical, approvals, append(refs, ref(id4, receipts4, 0)...)...)), mixed)
	// Asked twice in one call, it is given once.
	ans, err := f.remotes[0].Release(ctx, ev(canonical, approvals, refs[1], refs[1]))
	if err != nil || ans.Shares[0].Error != nil || ans.Shares[1].Error == nil || ans.Shares[1].Error.Code != "already_released" {
		t.Fatalf("a share asked twice in a call: %+v %v", ans, err)
	}
	same(t, map[string]wire.CustodianShare{refs[1].EscrowID: ans.Shares[0]}, map[string]wire.CustodianShare{refs[1].EscrowID: first[refs[1].EscrowID]})

	// Every check runs again: one approval, or no officer's signature, and
	// nothing comes back.
	var refused *escrow.RefusedError
	if _, err := f.remotes[0].Release(ctx, ev(canonical, approvals[:1], refs...)); !errors.As(err, &refused) {
		t.Fatalf("asked again with one approval: %v", err)
	}
	unsigned := ev(canonical, approvals, refs...)
	unsigned.OfficerSignature = nil
	if _, err := f.remotes[0].Release(ctx, unsigned); !errors.As(err, &refused) {
		t.Fatalf("asked again without the officer's signature: %v", err)
	}

	// Another request for the same shares gets its own sealing, by its own
	// checks: out of its scope, nothing.
	c2, a2 := f.request(t, []string{"conv-a"}, now.Add(-time.Hour), now.Add(time.Hour), "lena", "sam")
	second := release(t, ev(c2, a2, refs...))
	r2, _ := approval.Parse(c2)
	for id, sh := range second {
		if bytes.Equal(sh.Sealed, first[id].Sealed) || sh.Receipt.Receipt.RequestID != r2.ID {
			t.Errorf("share %s for another request: %+v", id, sh.Receipt.Receipt)
		}
	}
	same(t, release(t, ev(c2, a2, refs...)), second)
	c3, a3 := f.request(t, []string{"conv-b"}, now.Add(-time.Hour), now.Add(time.Hour), "lena", "sam")
	ans, err = f.remotes[0].Release(ctx, ev(c3, a3, refs[0]))
	if err != nil || ans.Shares[0].Error == nil || ans.Shares[0].Error.Code != "not_in_scope" || ans.Shares[0].Sealed != nil {
		t.Fatalf("a request of another conversation: %+v %v", ans, err)
	}
}

// TestReleaseRefusals: the custodian refuses, with reasons, a release whose
// approvals do not verify with keys it trusts, a request that is not in
// canonical form, one approval alone, and a forged approval under a
// trusted id.
func TestReleaseRefusals(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, dev.CustodianOptions{})
	id, receipts := f.deposit(t, "conv-a", "e1", bytes.Repeat([]byte{1}, 32))
	now := time.Now()
	canonical, approvals := f.request(t, []string{"conv-a"}, now.Add(-time.Hour), now.Add(time.Hour), "lena", "sam")
	_, mallory, _ := ed25519.GenerateKey(rand.Reader)
	req, _ := approval.Parse(canonical)
	forged := wire.EvidenceApproval{ApproverID: "sam", Decision: "approve", ApprovedAt: now,
		Signature: ed25519.Sign(mallory, approval.Message(req.ID, approval.Digest(canonical), "approve", "sam"))}
	other := bytes.Replace(canonical, []byte("case-1"), []byte("case-2"), 1)
	_, hostKey, _ := seal.NewKey(seal.KEMMLKEM768X25519)
	swappedReq := req
	swappedReq.Recipient = hostKey
	swapped, _ := swappedReq.Canonical()
	lenaReq := req
	lenaReq.Requester = "lena"
	byLena, _ := lenaReq.Canonical()
	invented := wire.EvidenceApproval{ApproverID: "mallory", Decision: "approve", ApprovedAt: now,
		Signature: ed25519.Sign(mallory, approval.Message(req.ID, approval.Digest(canonical), "approve", "mallory"))}
	for name, ev := range map[string]wire.ReleaseEvidence{
		"one approval":         {Roster: f.chain, Canonical: canonical, OfficerSignature: f.sig(canonical), Approvals: approvals[:1]},
		"forged approval":      {Roster: f.chain, Canonical: canonical, OfficerSignature: f.sig(canonical), Approvals: []wire.EvidenceApproval{approvals[0], forged}},
		"invented approver":    {Roster: f.chain, Canonical: canonical, OfficerSignature: f.sig(canonical), Approvals: []wire.EvidenceApproval{approvals[0], invented}},
		"not canonical":        {Roster: f.chain, Canonical: append([]byte(" "), canonical...), Approvals: approvals},
		"approvals of another": {Roster: f.chain, Canonical: other, OfficerSignature: f.sig(other), Approvals: approvals},
		// The host swaps the recipient key of olga's request; the
		// approvers, fooled, sign the swapped request.
		"recipient swapped":  {Roster: f.chain, Canonical: swapped, OfficerSignature: f.sig(canonical), Approvals: f.approve(swapped, "lena", "sam")},
		"unsigned":           {Roster: f.chain, Canonical: canonical, Approvals: approvals},
		"signed by the host": {Roster: f.chain, Canonical: swapped, OfficerSignature: approval.SignRequest(mallory, approval.Digest(swapped)), Approvals: f.approve(swapped, "lena", "sam")},
		"filed by an approver": {Roster: f.chain, Canonical: byLena, OfficerSignature: approval.SignRequest(f.approvers["lena"], approval.Digest(byLena)),
			Approvals: f.approve(byLena, "lena", "sam")},
	} {
		ev.Shares = ref(id, receipts, 0)
		_, err := f.remotes[0].Release(ctx, ev)
		var refused *escrow.RefusedError
		if !errors.As(err, &refused) || len(refused.Reasons) == 0 {
			t.Errorf("%s: %v", name, err)
			continue
		}
		officerCase := name == "recipient swapped" || name == "unsigned" || name == "signed by the host" || name == "filed by an approver"
		if officerCase && !strings.Contains(strings.Join(refused.Reasons, ";"), "not signed by an officer") {
			t.Errorf("%s: refused for %v, not for the officer's signature", name, refused.Reasons)
		}
	}
	// None of that released anything: the genuine release still can.
	ans, err := f.remotes[0].Release(ctx, wire.ReleaseEvidence{Roster: f.chain, Canonical: canonical, OfficerSignature: f.sig(canonical), Approvals: approvals, Shares: ref(id, receipts, 0)})
	if err != nil || ans.Shares[0].Error != nil {
		t.Fatalf("genuine release after the refusals: %+v %v", ans, err)
	}
}

// TestRosterChainChecks plays a mediator that hands custodians a roster
// of its choosing: a chain from another genesis, a next version signed by
// one approver, one that adds an approver without their proof of
// possession, versions re-ordered, and, once a custodian has verified a
// version that removes an approver, the older chain that still lists
// them. Each is refused with a reason naming the roster; the genuine
// chain releases, and the custodian's receipt names the roster version it
// checked the approvals against.
func TestRosterChainChecks(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, dev.CustodianOptions{})
	id, receipts := f.deposit(t, "conv-a", "e1", bytes.Repeat([]byte{4}, 32))
	now := time.Now()
	genesis := f.set.Genesis()
	g, _ := genesis.Digest()

	// Version 2 adds kim (legal); version 3 removes sam's security role
	// holder... and adds ola (security) in sam's place.
	kimPub, kim, _ := ed25519.GenerateKey(rand.Reader)
	olaPub, ola, _ := ed25519.GenerateKey(rand.Reader)
	f.approvers["kim"], f.approvers["ola"] = kim, ola
	v2 := genesis
	v2.Version, v2.Previous = 2, g
	v2.Approvers = append(append([]roster.Approver(nil), genesis.Approvers...), roster.Approver{ID: "kim", Roles: []string{"legal"}, PublicKey: kimPub})
	v2d, _ := v2.Digest()
	v3 := v2
	v3.Version, v3.Previous = 3, v2d
	v3.Approvers = []roster.Approver{v2.Approvers[0], v2.Approvers[2], v2.Approvers[3], {ID: "ola", Roles: []string{"security"}, PublicKey: olaPub}}

	genuine := []roster.Signed{f.chain[0], f.signed(t, v2, "lena", "sam", "kim")}
	canonical, approvals := f.request(t, []string{"conv-a"}, now.Add(-time.Hour), now.Add(time.Hour), "lena", "sam")

	otherGenesis := genesis
	otherGenesis.Threshold = 2
	cases := map[string]struct {
		chain []roster.Signed
		says  string
	}{
		"another genesis":        {[]roster.Signed{f.signed(t, otherGenesis, "lena", "sam")}, "pinned genesis"},
		"one approver adds kim":  {[]roster.Signed{f.chain[0], f.signed(t, v2, "lena", "kim")}, "distinct approvers"},
		"kim without possession": {[]roster.Signed{f.chain[0], f.signed(t, v2, "lena", "sam")}, "proof of possession"},
		"versions re-ordered":    {[]roster.Signed{genuine[1], genuine[0]}, "pinned genesis"},
		"no roster at all":       {nil, "roster"},
	}
	for name, c := range cases {
		_, err := f.remotes[0].Release(ctx, wire.ReleaseEvidence{Roster: c.chain, Canonical: canonical, OfficerSignature: f.sig(canonical), Approvals: approvals, Shares: ref(id, receipts, 0)})
		var refused *escrow.RefusedError
		if !errors.As(err, &refused) || !strings.Contains(strings.Join(refused.Reasons, ";"), c.says) {
			t.Errorf("%s: got %v, want a refusal saying %q", name, err, c.says)
		}
	}

	// Custodian 1 verifies version 3 (sam removed) by releasing under it
	// with lena and ola; the older chain, where sam still counts, is
	// then refused by it, while custodian 2, which never saw version 3,
	// still accepts the genuine older chain.
	v3chain := append(append([]roster.Signed(nil), genuine...), f.signed(t, v3, "lena", "sam", "ola"))
	c3, a3 := f.request(t, []string{"conv-a"}, now.Add(-time.Hour), now.Add(time.Hour), "lena", "ola")
	ans, err := f.remotes[0].Release(ctx, wire.ReleaseEvidence{Roster: v3chain, Canonical: c3, OfficerSignature: f.sig(c3), Approvals: a3, Shares: ref(id, receipts, 0)})
	if err != nil || ans.Shares[0].Error != nil {
		t.Fatalf("release under version 3: %+v %v", ans, err)
	}
	v3d, _ := v3.Digest()
	if got := ans.Shares[0].Receipt.Receipt.RosterDigest; got != v3d {
		t.Errorf("the receipt names roster %s, want version 3 %s", got, v3d)
	}
	_, err = f.remotes[0].Release(ctx, wire.ReleaseEvidence{Roster: genuine, Canonical: canonical, OfficerSignature: f.sig(canonical), Approvals: approvals, Shares: ref(id, receipts, 0)})
	var refused *escrow.RefusedError
	if !errors.As(err, &refused) || !strings.Contains(strings.Join(refused.Reasons, ";"), "does not hold version 3") {
		t.Errorf("a rolled-back chain: %v", err)
	}
	if got := f.set.Counter(0, "mediator_custodian_roster_refused_total"); got != 1 {
		t.Errorf("roster refusals counted %v, want 1", got)
	}
	// sam's approval does not count under version 3, whatever chain the
	// request came with.
	_, err = f.remotes[0].Release(ctx, wire.ReleaseEvidence{Roster: v3chain, Canonical: canonical, OfficerSignature: f.sig(canonical), Approvals: approvals, Shares: ref(id, receipts, 0)})
	if !errors.As(err, &refused) || !strings.Contains(strings.Join(refused.Reasons, ";"), "security") {
		t.Errorf("a removed approver's approval under version 3: %v", err)
	}
	ans, err = f.remotes[1].Release(ctx, wire.ReleaseEvidence{Roster: genuine, Canonical: canonical, OfficerSignature: f.sig(canonical), Approvals: approvals, Shares: ref(id, receipts, 1)})
	if err != nil || ans.Shares[0].Error != nil {
		t.Fatalf("custodian 2 with the genuine chain: %+v %v", ans, err)
	}
}

// TestDestroyAbortAndHolds: a custodian destroys a share only past its own
// minimum retention and when no hold it was told of stands; aborts only
// within its window and before any release; a destroyed share cannot be
// released.
func TestDestroyAbortAndHolds(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, dev.CustodianOptions{MinRetention: time.Hour})
	// Stored, not committed: the mediator may still abort it.
	d := f.depositBody(t, "conv-a", "e1", bytes.Repeat([]byte{2}, 32), false)
	res, err := f.remotes[0].Destroy(ctx, d.refs[0])
	if err != nil || res[0].Outcome != "too_young" {
		t.Fatalf("destroy a young share: %+v %v", res, err)
	}
	res, err = f.remotes[0].Abort(ctx, d.refs[0])
	if err != nil || res[0].Outcome != "aborted" {
		t.Fatalf("abort a fresh share: %+v %v", res, err)
	}
	res, _ = f.remotes[0].Abort(ctx, d.refs[0])
	if res[0].Outcome != "aborted" {
		t.Fatalf("abort again: %+v", res)
	}
	// An aborted share is never committed.
	if com, err := f.remotes[0].Commit(ctx, d.refs[0][0]); err != nil || com.Error == nil || com.Error.Code != "not_found" || com.Receipt != nil {
		t.Fatalf("commit of an aborted share: %+v %v", com, err)
	}
	now := time.Now()
	canonical, approvals := f.request(t, []string{"conv-a"}, now.Add(-time.Hour), now.Add(time.Hour), "lena", "sam")
	ans, _ := f.remotes[0].Release(ctx, wire.ReleaseEvidence{Roster: f.chain, Canonical: canonical, OfficerSignature: f.sig(canonical), Approvals: approvals, Shares: d.refs[0]})
	if ans.Shares[0].Error == nil || ans.Shares[0].Error.Code != "not_found" {
		t.Fatalf("release of an aborted share: %+v", ans)
	}
	// A released share cannot be aborted.
	ans, _ = f.remotes[1].Release(ctx, wire.ReleaseEvidence{Roster: f.chain, Canonical: canonical, OfficerSignature: f.sig(canonical), Approvals: approvals, Shares: d.refs[1]})
	if ans.Shares[0].Error != nil {
		t.Fatalf("release: %+v", ans)
	}
	if res, _ := f.remotes[1].Abort(ctx, d.refs[1]); res[0].Outcome != "released" {
		t.Fatalf("abort a released share: %+v", res)
	}
	// A committed share cannot be aborted: its depositor may hold every
	// receipt.
	id, receipts := f.deposit(t, "conv-a", "e2", bytes.Repeat([]byte{4}, 32))
	for i, r := range f.remotes {
		if res, err := r.Abort(ctx, ref(id, receipts, i)); err != nil || res[0].Outcome != "committed" {
			t.Fatalf("abort a committed share at %s: %+v %v", r.Name, res, err)
		}
	}

	// With no minimum retention, a hold keeps a share until it is released.
	g := newFixture(t, dev.CustodianOptions{MinRetention: time.Nanosecond})
	id2, rc2 := g.deposit(t, "conv-held", "e1", bytes.Repeat([]byte{3}, 32))
	if err := g.remotes[2].Hold(ctx, wire.Hold{HoldID: uuid.NewString(), ConversationID: "conv-held"}); err != nil {
		t.Fatal(err)
	}
	hold := uuid.NewString()
	g.remotes[3].Hold(ctx, wire.Hold{HoldID: hold, ConversationID: "conv-held"})
	if res, _ := g.remotes[3].Destroy(ctx, ref(id2, rc2, 3)); res[0].Outcome != "held" {
		t.Fatalf("destroy under a hold: %+v", res)
	}
	// Asked directly, each custodian names the holds it has on record:
	// a hold the mediator withheld from one shows as missing there.
	status := func(i int) []string {
		inv, err := client.CustodianStatus(ctx, nil, g.set.Custodians[i].URL, g.set.Custodians[i].Name, g.set.Signer(i), "conv-held", "e1")
		if err != nil {
			t.Fatal(err)
		}
		return inv.Holds
	}
	if got := status(3); len(got) != 1 || got[0] != hold {
		t.Fatalf("custodian 4's status names holds %v, want [%s]", got, hold)
	}
	if got := status(0); len(got) != 0 {
		t.Fatalf("custodian 1, told of no hold, names %v", got)
	}
	// The mediator's token alone cannot lift it (TestSignedHolds); lena
	// and sam, legal and security, can.
	if err := g.remotes[3].Hold(ctx, wire.Hold{HoldID: hold, Released: true}); err == nil || !strings.Contains(err.Error(), "hold_lift_needs_signatures") {
		t.Fatalf("a lift with the mediator's token: %v", err)
	}
	if res, _ := g.remotes[3].Destroy(ctx, ref(id2, rc2, 3)); res[0].Outcome != "held" {
		t.Fatalf("destroy after a refused lift: %+v", res)
	}
	if _, err := client.SendSignedHold(ctx, nil, g.set.Custodians[3].URL, g.holdStatement(hold, "conv-held", approval.HoldLift, "lena", "sam")); err != nil {
		t.Fatal(err)
	}
	if res, _ := g.remotes[3].Destroy(ctx, ref(id2, rc2, 3)); res[0].Outcome != "destroyed" {
		t.Fatalf("destroy after the hold's release: %+v", res)
	}
	if res, _ := g.remotes[3].Destroy(ctx, ref(id2, rc2, 3)); res[0].Outcome != "destroyed" {
		t.Fatalf("destroy again: %+v", res)
	}
}

// TestAPIAuthentication: the coordinator's calls need the mediator's token,
// the operator's calls the operator's; the public key document needs none;
// neither token opens the other's calls.
func TestAPIAuthentication(t *testing.T) {
	f := newFixture(t, dev.CustodianOptions{})
	c := f.set.Custodians[0]
	call := func(method, path, token string) int {
		req, _ := http.NewRequest(method, c.URL+path, strings.NewReader(`{}`))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		method, path, token string
		want                int
	}{
		{"GET", "/v1/custodian", "", 200},
		{"POST", "/v1/releases", "", 401},
		{"POST", "/v1/releases", c.OperatorToken, 401},
		{"POST", "/v1/releases", "wrong", 401},
		{"POST", "/v1/releases", c.MediatorToken, 422},
		{"POST", "/v1/rewrap", c.MediatorToken, 401},
		{"GET", "/metrics", "", 401},
		{"GET", "/metrics", c.MediatorToken, 401},
		{"GET", "/metrics", c.OperatorToken, 200},
	} {
		if got := call(tc.method, tc.path, tc.token); got != tc.want {
			t.Errorf("%s %s with %q: %d, want %d", tc.method, tc.path, tc.token, got, tc.want)
		}
	}
}

// TestAppRoleConfinedToItsOwnKeyAndPrefix: custodian 1's Vault login may use
// its own Transit key and KV prefix, and nothing of custodian 2's or of the
// mediator's.
func TestAppRoleConfinedToItsOwnKeyAndPrefix(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, dev.CustodianOptions{})
	cfg := f.set.Custodians[0].Config
	secret, _ := os.ReadFile(cfg.Vault.SecretIDFile)
	c, err := vaultapi.NewClient(&vaultapi.Config{Address: cfg.Vault.Addr})
	if err != nil {
		t.Fatal(err)
	}
	c.ClearToken()
	login, err := c.Logical().Write("auth/approle/login", map[string]any{"role_id": cfg.Vault.RoleID, "secret_id": strings.TrimSpace(string(secret))})
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(login.Auth.ClientToken)
	ctxt := map[string]any{"plaintext": "c2hhcmU=", "context": "Yw=="}
	if _, err := c.Logical().WriteWithContext(ctx, vaultsetup.TransitMount+"/encrypt/custodian-1", ctxt); err != nil {
		t.Fatalf("its own key: %v", err)
	}
	for _, p := range []string{vaultsetup.TransitMount + "/encrypt/custodian-2", vaultsetup.TransitMount + "/decrypt/custodian-2",
		vaultsetup.TransitMount + "/sign/" + vaultsetup.CheckpointKey} {
		if _, err := c.Logical().WriteWithContext(ctx, p, ctxt); err == nil {
			t.Errorf("custodian-1 may write %s", p)
		}
	}
	own, other := cfg.KV.Prefix+"/identity", f.set.Custodians[1].Config.KV.Prefix+"/identity"
	if _, err := c.KVv2(vaultsetup.KVMount).Get(ctx, other); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("custodian-1 reading custodian-2's identity: %v", err)
	}
	sec, err := c.KVv2(vaultsetup.KVMount).Get(ctx, own)
	if err != nil {
		t.Fatalf("custodian-1 cannot read its own identity: %v", err)
	}
	// Its private keys are at rest only wrapped by its Transit key.
	for k, v := range sec.Data {
		if s, _ := v.(string); strings.HasSuffix(k, "_wrapped") && !strings.HasPrefix(s, "vault:v") {
			t.Errorf("identity field %s is not a Transit ciphertext", k)
		}
	}
}

// TestTransitRewrap: after the custodian's Transit key is rotated, rewrap
// moves its private keys and every share to the new version, and a
// release still works.
func TestTransitRewrap(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, dev.CustodianOptions{})
	id, receipts := f.deposit(t, "conv-r", "e1", bytes.Repeat([]byte{4}, 32))
	admin, _ := vaultapi.NewClient(&vaultapi.Config{Address: env.Vault.Addr})
	admin.SetToken(env.Vault.Token)
	if _, err := admin.Logical().Write(vaultsetup.TransitMount+"/keys/custodian-3/rotate", nil); err != nil {
		t.Fatal(err)
	}
	ans, err := f.set.Running[2].Rewrap(ctx)
	if err != nil || ans.Rewrapped < 2 || len(ans.Failed) != 0 {
		t.Fatalf("rewrap: %+v %v", ans, err)
	}
	again, err := f.set.Running[2].Rewrap(ctx)
	if err != nil || again.Rewrapped != 0 {
		t.Fatalf("second rewrap: %+v %v", again, err)
	}
	// Restarted, it reads its rewrapped keys; the share still releases.
	f.set.Stop(2)
	f.set.Run(2)
	now := time.Now()
	canonical, approvals := f.request(t, []string{"conv-r"}, now.Add(-time.Hour), now.Add(time.Hour), "lena", "sam")
	res, err := f.remotes[2].Release(ctx, wire.ReleaseEvidence{Roster: f.chain, Canonical: canonical, OfficerSignature: f.sig(canonical), Approvals: approvals, Shares: ref(id, receipts, 2)})
	if err != nil || res.Shares[0].Error != nil {
		t.Fatalf("release after rewrap: %+v %v", res, err)
	}
}

// TestPermissivePolicyNeverLoads: a custodian whose own data.json would
// release on one approval, or whose own release.rego counts approvals
// whose signatures did not verify, does not start.
func TestPermissivePolicyNeverLoads(t *testing.T) {
	f := newFixture(t, dev.CustodianOptions{})
	for name, c := range map[string]struct{ file, old, new, want string }{
		"one approval":        {"data.json", `"min_approvals": 2`, `"min_approvals": 1`, "min_approvals must be at least 2"},
		"unverified approval": {"release.rego", "\ta.signature_verified == true\n\ta.approver_active", "\ta.approver_active", "an approval whose signature did not verify"},
	} {
		dir := t.TempDir()
		for _, file := range []string{"release.rego", "data.json"} {
			b, err := os.ReadFile(filepath.Join("..", "policy", file))
			if err != nil {
				t.Fatal(err)
			}
			if file == c.file {
				edited := strings.Replace(string(b), c.old, c.new, 1)
				if edited == string(b) {
					t.Fatalf("%s: the edit did not apply", name)
				}
				b = []byte(edited)
			}
			if err := os.WriteFile(filepath.Join(dir, file), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		cfg := f.set.Custodians[0].Config
		cfg.PolicyDir = dir
		_, err := custodian.Open(context.Background(), cfg, nil, custodian.NewMetrics())
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: a permissive policy loaded: %v, want an error saying %q", name, err, c.want)
		}
	}
}

// TestConcurrentReleasesGiveEachShareOnce: the coordinator sends the same
// release many times at once (a retry storm, or a mediator trying to get a
// share twice): each share is sealed once for the request, and every call
// that gets it gets those same bytes and receipt.
func TestConcurrentReleasesGiveEachShareOnce(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, dev.CustodianOptions{})
	var refs []wire.ShareRef
	for i := range 12 {
		id, receipts := f.deposit(t, "conv-a", fmt.Sprint("e", i), bytes.Repeat([]byte{byte(i + 1)}, 32))
		refs = append(refs, ref(id, receipts, 0)...)
	}
	now := time.Now()
	canonical, approvals := f.request(t, []string{"conv-a"}, now.Add(-time.Hour), now.Add(time.Hour), "lena", "sam")
	var mu sync.Mutex
	released := map[string]map[string]int{} // escrow id to receipt hash to the calls it was given to
	var wg sync.WaitGroup
	for c := range 8 {
		wg.Go(func() {
			// Each call asks for an overlapping half of the shares.
			mine := append([]wire.ShareRef(nil), refs[c%2*4:c%2*4+8]...)
			ans, err := f.remotes[0].Release(ctx, wire.ReleaseEvidence{Roster: f.chain, Canonical: canonical, OfficerSignature: f.sig(canonical), Approvals: approvals, Shares: mine})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for _, s := range ans.Shares {
				switch {
				case s.Error == nil && s.Sealed != nil && s.Receipt != nil && s.Receipt.Receipt.SealedSHA256 == shares.SealedHash(s.Sealed):
					if released[s.EscrowID] == nil {
						released[s.EscrowID] = map[string]int{}
					}
					released[s.EscrowID][s.Receipt.Hash()]++
				// A call that lost every race for a record number
				// releaseRetries times gives up on the share.
				case s.Error == nil || (s.Error.Code != "already_released" && s.Error.Code != "unavailable") || s.Sealed != nil:
					t.Errorf("share %s: %+v", s.EscrowID, s)
				}
			}
		})
	}
	wg.Wait()
	if len(released) != len(refs) {
		t.Fatalf("%d of %d shares released", len(released), len(refs))
	}
	again := 0
	for id, sealings := range released {
		if len(sealings) != 1 {
			t.Errorf("share %s released with %d different sealings", id, len(sealings))
		}
		for _, calls := range sealings {
			again += calls - 1
		}
	}
	// Each share is asked for by 4 calls: some are answered again.
	if again == 0 {
		t.Error("no call was answered with a share another call released")
	}
	t.Logf("%d answers given again", again)
}

// TestIDsNamePathsOnlyAsUUIDs: escrow, request and hold ids become paths in
// the custodian's store, so a caller cannot use one to reach another path
// (its identity, a hold) with "..".
func TestIDsNamePathsOnlyAsUUIDs(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, dev.CustodianOptions{})
	commitment, sealed, _ := shares.Split(f.set.SharesSet(), "conv-a", "e1", bytes.Repeat([]byte{7}, 32))
	res, err := f.remotes[0].Store(ctx, wire.ShareToStore{EscrowID: "../identity", ConversationID: "conv-a", KeyID: "e1",
		Index: 1, Commitment: commitment, Sealed: sealed[0].Sealed})
	if err != nil || res.Error == nil || res.Error.Code != "share_invalid" {
		t.Fatalf("an escrow id that is a path: %+v %v", res, err)
	}
	id, receipts := f.deposit(t, "conv-a", "e2", bytes.Repeat([]byte{8}, 32))
	now := time.Now().UTC().Truncate(time.Second)
	r := approval.Request{ID: "../../holds/x", Requester: "olga", CaseID: "case-1", LegalBasis: "court_order", WarrantRef: "W 1",
		Jurisdiction: "US", Justification: "See the case file.", Scope: approval.Scope{ConversationIDs: []string{"conv-a"}, From: now.Add(-time.Hour), To: now.Add(time.Hour)},
		Recipient: f.recipient, CreatedAt: now.Add(-time.Minute), ExpiresAt: now.Add(time.Hour)}
	canonical, _ := r.Canonical()
	var approvals []wire.EvidenceApproval
	for who, priv := range f.approvers {
		approvals = append(approvals, wire.EvidenceApproval{ApproverID: who, Decision: "approve", ApprovedAt: now,
			Signature: ed25519.Sign(priv, approval.Message(r.ID, approval.Digest(canonical), "approve", who))})
	}
	var refused *escrow.RefusedError
	if _, err := f.remotes[0].Release(ctx, wire.ReleaseEvidence{Roster: f.chain, Canonical: canonical, OfficerSignature: f.sig(canonical), Approvals: approvals, Shares: ref(id, receipts, 0)}); !errors.As(err, &refused) {
		t.Fatalf("a request id that is a path: %v", err)
	}
	if err := f.remotes[0].Hold(ctx, wire.Hold{HoldID: "../identity", ConversationID: "conv-a"}); err == nil {
		t.Fatal("a hold id that is a path was accepted")
	}
	if res, err := f.remotes[0].Destroy(ctx, []wire.ShareRef{{EscrowID: "../identity", Locator: receipts[0].Receipt.Locator}}); err != nil || res[0].Outcome != "not_found" {
		t.Fatalf("destroy by a path: %+v %v", res, err)
	}
}

// TestReleaseOnlyWhatExistedWhenApproved: a request releases the escrows
// that existed when it was approved. A key deposited later inside its
// window, even before the request's first release, is refused; one
// deposited after the first release is refused however the approval
// times are stated.
func TestReleaseOnlyWhatExistedWhenApproved(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, dev.CustodianOptions{})
	before, beforeReceipts := f.deposit(t, "conv-a", "e1", bytes.Repeat([]byte{1}, 32))
	now := time.Now()
	canonical, approvals := f.request(t, []string{"conv-a"}, now.Add(-time.Hour), now.Add(time.Hour), "lena", "sam")
	time.Sleep(2 * time.Millisecond)
	later, laterReceipts := f.deposit(t, "conv-a", "e2", bytes.Repeat([]byte{2}, 32))
	ev := wire.ReleaseEvidence{Roster: f.chain, Canonical: canonical, OfficerSignature: f.sig(canonical), Approvals: approvals,
		Shares: append(ref(before, beforeReceipts, 0), ref(later, laterReceipts, 0)...)}
	ans, err := f.remotes[0].Release(ctx, ev)
	if err != nil || ans.Shares[0].Error != nil {
		t.Fatalf("the share stored before the approvals: %+v %v", ans, err)
	}
	if e := ans.Shares[1].Error; e == nil || e.Code != "not_in_scope" || !strings.Contains(e.Message, "after the request was approved") {
		t.Fatalf("a share stored after the approvals: %+v", ans.Shares[1])
	}
	// The mediator restates the approvals as made now: still nothing
	// stored after the request's first release.
	time.Sleep(2 * time.Millisecond)
	third, thirdReceipts := f.deposit(t, "conv-a", "e3", bytes.Repeat([]byte{3}, 32))
	for i := range ev.Approvals {
		ev.Approvals[i].ApprovedAt = time.Now()
	}
	ev.Shares = ref(third, thirdReceipts, 0)
	ans, err = f.remotes[0].Release(ctx, ev)
	if err != nil || ans.Shares[0].Error == nil || ans.Shares[0].Error.Code != "not_in_scope" {
		t.Fatalf("a share stored after the first release: %+v %v", ans, err)
	}
}

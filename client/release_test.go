package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/seal"
	"github.com/mediatorhq/mediator/shares"
	"github.com/mediatorhq/mediator/wire"
)

// releaseFixture is a release as honest custodians make it: keys split
// and sealed by a depositor (shares.Split), each share opened by its
// custodian and re-sealed to the officer's recipient key, with the
// custodians' signed deposit and release receipts, and what the
// officer's client verified itself.
type releaseFixture struct {
	tc      testCustodians
	privs   []hpke.PrivateKey // the custodians' HPKE keys
	officer hpke.PrivateKey
	chk     ReleaseCheck
	rel     wire.Release
	keys    [][]byte // the deposited keys, in release order
	at      string
}

func newReleaseFixture(t testing.TB, keys, n, k int, officerKEM uint16) *releaseFixture {
	t.Helper()
	f := &releaseFixture{tc: newTestCustodians(t, n, k), at: "2026-12-03T07:00:00.000000Z"}
	for _, file := range f.tc.hpke {
		priv, err := seal.ParseKey(file)
		if err != nil {
			t.Fatal(err)
		}
		f.privs = append(f.privs, priv)
	}
	file, pub, err := seal.NewKey(officerKEM)
	if err != nil {
		t.Fatal(err)
	}
	if f.officer, err = seal.ParseKey(file); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC)
	req := approval.Request{ID: uuid.NewString(), Requester: "olga", CaseID: "c-1", LegalBasis: "court_order", WarrantRef: "W 1",
		Jurisdiction: "US", Justification: "See the file.", Recipient: pub, CreatedAt: at, ExpiresAt: at.Add(72 * time.Hour),
		Scope: approval.Scope{ConversationIDs: []string{"conv-a", "conv-b"}, From: at.Add(-time.Hour), To: at}}
	canonical, err := req.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	r := roster.Roster{Version: 1, Threshold: k}
	for _, c := range f.tc.set.Custodians {
		r.Custodians = append(r.Custodians, roster.Custodian{Name: c.Name, URL: "https://" + c.Name + ".example", HPKEKey: c.HPKEKey, SigningKey: c.SigningKey})
	}
	f.chk = ReleaseCheck{Request: req, Digest: approval.Digest(canonical), Roster: r, Chain: []roster.Roster{r}}
	f.rel = wire.Release{RequestID: req.ID, DecisionID: uuid.NewString(), AuditSeq: 7}
	for i := range keys {
		key := make([]byte, 32)
		rand.Read(key)
		f.keys = append(f.keys, key)
		f.rel.Keys = append(f.rel.Keys, f.deposit(t, "conv-a", fmt.Sprintf("e%d", i), key))
	}
	return f
}

// deposit escrows key and releases it as the custodians do.
func (f *releaseFixture) deposit(t testing.TB, convo, keyID string, key []byte) wire.ReleasedKey {
	t.Helper()
	commitment, sealed, err := shares.Split(f.tc.set, convo, keyID, key)
	if err != nil {
		t.Fatal(err)
	}
	k := wire.ReleasedKey{EscrowID: uuid.NewString(), ConversationID: convo, KeyID: keyID, KeyCommitment: commitment, Threshold: f.tc.set.Threshold}
	for i, s := range sealed {
		dr := shares.Receipt{Kind: shares.ReceiptDeposit, Custodian: s.Custodian, EscrowID: k.EscrowID, ConversationID: convo, KeyID: keyID,
			Index: s.Index, Commitment: commitment, SealedSHA256: shares.SealedHash(s.Sealed), At: f.at, Locator: "loc-" + keyID}
		k.DepositReceipts = append(k.DepositReceipts, f.sign(t, i, dr))
		share, err := shares.OpenDeposited(f.privs[i], convo, keyID, s.Custodian, s.Index, commitment, shares.Binding{}, s.Sealed)
		if err != nil {
			t.Fatal(err)
		}
		k.Shares = append(k.Shares, f.releaseShare(t, i, k, share))
		clear(share)
	}
	return k
}

// releaseShare is custodian i's share of k sealed to the officer, with
// its release receipt.
func (f *releaseFixture) releaseShare(t testing.TB, i int, k wire.ReleasedKey, share []byte) wire.ReleasedShare {
	t.Helper()
	name := f.tc.set.Custodians[i].Name
	to, err := seal.NewSealer(f.chk.Request.Recipient)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := shares.SealReleased(to, f.chk.Request.ID, k.ConversationID, k.KeyID, name, i+1, share)
	if err != nil {
		t.Fatal(err)
	}
	return wire.ReleasedShare{Custodian: name, Index: i + 1, Sealed: sealed, Receipt: f.sign(t, i, f.releaseReceipt(k, i, sealed))}
}

func (f *releaseFixture) releaseReceipt(k wire.ReleasedKey, i int, sealed []byte) shares.Receipt {
	return shares.Receipt{Kind: shares.ReceiptRelease, Custodian: f.tc.set.Custodians[i].Name, EscrowID: k.EscrowID,
		ConversationID: k.ConversationID, KeyID: k.KeyID, Index: i + 1, Commitment: k.DepositReceipts[i].Receipt.Commitment,
		SealedSHA256: shares.SealedHash(sealed), At: f.at, RequestID: f.chk.Request.ID, RequestDigest: f.chk.Digest,
		RecipientKey: f.chk.Request.Recipient.Fingerprint(), PolicyRevision: "rev-1"}
}

func (f *releaseFixture) sign(t testing.TB, i int, r shares.Receipt) shares.SignedReceipt {
	t.Helper()
	s, err := shares.Sign(f.tc.signs[i], r)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// lie is a copy of the release, for the mediator to rewrite.
func (f *releaseFixture) lie() wire.Release {
	var out wire.Release
	b, _ := json.Marshal(f.rel)
	json.Unmarshal(b, &out)
	return out
}

// noCustodianBlamed fails t if err or keys name a custodian as bad.
func noCustodianBlamed(t *testing.T, keys []OpenedKey, err error) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), "custodian-") {
		t.Errorf("an honest custodian is named: %v", err)
	}
	for _, k := range keys {
		if len(k.BadShares) > 0 {
			t.Errorf("honest custodians are named bad: %v", k.BadShares)
		}
	}
	var ke *KeyError
	if errors.As(err, &ke) && len(ke.BadShares) > 0 {
		t.Errorf("honest custodians are named bad: %v", ke.BadShares)
	}
}

// TestOpenHonestRelease: what honest custodians released opens into the
// deposited keys, with nothing dropped and no one named; the
// mediator's key_commitment is not needed.
func TestOpenHonestRelease(t *testing.T) {
	f := newReleaseFixture(t, 3, 5, 3, seal.KEMX25519)
	rel := f.lie()
	for i := range rel.Keys {
		rel.Keys[i].KeyCommitment = ""
	}
	keys, err := Open(f.officer, f.chk, rel)
	if err != nil || len(keys) != 3 {
		t.Fatalf("%d keys: %v", len(keys), err)
	}
	for i, k := range keys {
		if !bytes.Equal(k.Key, f.keys[i]) || len(k.BadShares) != 0 || k.Unverified != 0 || len(k.Warnings) != 1 {
			t.Fatalf("key %d: %+v", i, k)
		}
	}
	keys, err = Open(f.officer, f.chk, f.rel)
	if err != nil || len(keys) != 3 || len(keys[0].Warnings) != 0 {
		t.Fatalf("with the mediator's commitment: %+v %v", keys, err)
	}
}

// TestOpenRefusesTheMediatorsShares plays a mediator that hands the
// officer shares its custodians did not vouch for: every one is dropped
// unopened, the key is not recovered unless enough genuine shares
// remain, and no custodian is named.
func TestOpenRefusesTheMediatorsShares(t *testing.T) {
	f := newReleaseFixture(t, 1, 5, 3, seal.KEMX25519)
	_, forger, _ := ed25519.GenerateKey(rand.Reader)
	// The mediator's own key, split and sealed to the officer's public
	// key, which anyone may do.
	own := make([]byte, 32)
	rand.Read(own)
	ownCommitment := shares.Commitment("conv-a", "e0", own)
	ownSet := f.tc.set
	ownSplit, err := shares.NewSplitter(ownSet)
	if err != nil {
		t.Fatal(err)
	}
	_, ownSealed, _ := ownSplit.Split("conv-a", "e0", own)
	ownShares := make([]wire.ReleasedShare, 5)
	k := f.rel.Keys[0]
	for i, s := range ownSealed {
		share, _ := shares.OpenDeposited(f.privs[i], "conv-a", "e0", s.Custodian, s.Index, ownCommitment, shares.Binding{}, s.Sealed)
		ownShares[i] = f.releaseShare(t, i, k, share) // sealed to the officer; receipts replaced below
	}

	lies := map[string]struct {
		rewrite    func(rel *wire.Release)
		unverified int
		recovered  bool
	}{
		"receipts signed by another key": {func(rel *wire.Release) {
			for i, sh := range rel.Keys[0].Shares {
				rel.Keys[0].Shares[i].Receipt, _ = shares.Sign(forger, sh.Receipt.Receipt)
			}
		}, 5, false},
		"one receipt over another sealed share": {func(rel *wire.Release) {
			rel.Keys[0].Shares[1].Sealed = ownShares[1].Sealed
		}, 1, true},
		"three receipts over other sealed shares": {func(rel *wire.Release) {
			for i := range 3 {
				rel.Keys[0].Shares[i].Sealed = ownShares[i].Sealed
			}
		}, 3, false},
		"its own key and commitment, the genuine receipts kept": {func(rel *wire.Release) {
			rel.Keys[0].KeyCommitment = ownCommitment
			for i := range rel.Keys[0].Shares {
				rel.Keys[0].Shares[i].Sealed = ownShares[i].Sealed
			}
		}, 5, false},
		"its own key, receipts and deposit receipts signed by itself": {func(rel *wire.Release) {
			rel.Keys[0].KeyCommitment = ownCommitment
			for i := range rel.Keys[0].Shares {
				dr := rel.Keys[0].DepositReceipts[i].Receipt
				dr.Commitment = ownCommitment
				rel.Keys[0].DepositReceipts[i], _ = shares.Sign(forger, dr)
				r := f.releaseReceipt(k, i, ownShares[i].Sealed)
				r.Commitment = ownCommitment
				rel.Keys[0].Shares[i] = wire.ReleasedShare{Custodian: r.Custodian, Index: i + 1, Sealed: ownShares[i].Sealed}
				rel.Keys[0].Shares[i].Receipt, _ = shares.Sign(forger, r)
			}
		}, 0, false},
		"no deposit receipts": {func(rel *wire.Release) {
			rel.Keys[0].DepositReceipts = nil
		}, 0, false},
		"deposit receipts of another escrow": {func(rel *wire.Release) {
			rel.Keys[0].EscrowID = uuid.NewString()
		}, 0, false},
		"receipts for another request digest": {func(rel *wire.Release) {
			for i := range rel.Keys[0].Shares {
				r := f.releaseReceipt(k, i, rel.Keys[0].Shares[i].Sealed)
				r.RequestDigest = approval.Digest([]byte("another request"))
				rel.Keys[0].Shares[i].Receipt = f.sign(t, i, r)
			}
		}, 5, false},
		"a share relabelled as another custodian's": {func(rel *wire.Release) {
			rel.Keys[0].Shares[0].Custodian = "custodian-2"
		}, 1, true},
		"one share twice": {func(rel *wire.Release) {
			rel.Keys[0].Shares = append(rel.Keys[0].Shares, rel.Keys[0].Shares[0])
		}, 1, true},
	}
	for name, lie := range lies {
		t.Run(name, func(t *testing.T) {
			rel := f.lie()
			lie.rewrite(&rel)
			keys, err := Open(f.officer, f.chk, rel)
			noCustodianBlamed(t, keys, err)
			for _, k := range keys {
				if bytes.Equal(k.Key, own) {
					t.Fatal("the mediator's own key was opened")
				}
			}
			if lie.recovered {
				if err != nil || len(keys) != 1 || !bytes.Equal(keys[0].Key, f.keys[0]) || keys[0].Unverified != lie.unverified {
					t.Fatalf("%+v %v", keys, err)
				}
				return
			}
			var ke *KeyError
			if len(keys) != 0 || !errors.As(err, &ke) || ke.Unverified != lie.unverified {
				t.Fatalf("%+v %v", keys, err)
			}
		})
	}
}

// TestOpenNamesACustodianOnlyForItsOwnReceipt: a custodian that signed a
// release receipt for a corrupt share, or for one that does not open, is
// named, and the key recovered from the others.
func TestOpenNamesACustodianOnlyForItsOwnReceipt(t *testing.T) {
	f := newReleaseFixture(t, 1, 5, 3, seal.KEMX25519)
	k := f.rel.Keys[0]
	junk := make([]byte, 33)
	rand.Read(junk)
	rel := f.lie()
	rel.Keys[0].Shares[2] = f.releaseShare(t, 2, k, junk) // on no polynomial, signed by custodian-3
	unopenable := bytes.Repeat([]byte{7}, 80)
	rel.Keys[0].Shares[4] = wire.ReleasedShare{Custodian: "custodian-5", Index: 5, Sealed: unopenable,
		Receipt: f.sign(t, 4, f.releaseReceipt(k, 4, unopenable))}
	keys, err := Open(f.officer, f.chk, rel)
	if err != nil || len(keys) != 1 || !bytes.Equal(keys[0].Key, f.keys[0]) {
		t.Fatalf("%+v %v", keys, err)
	}
	if got := strings.Join(keys[0].BadShares, ","); got != "custodian-5,custodian-3" || keys[0].Unverified != 0 {
		t.Fatalf("bad shares %q, unverified %d", got, keys[0].Unverified)
	}
}

// TestOpenReceiptKeys: deposit receipts verify with a custodian's key of
// any verified version; release receipts only with its key in the roster
// in force.
func TestOpenReceiptKeys(t *testing.T) {
	f := newReleaseFixture(t, 1, 5, 3, seal.KEMX25519)
	old := f.chk.Roster
	// Version 2 re-keys custodian-1's receipts.
	newPub, newPriv, _ := ed25519.GenerateKey(rand.Reader)
	v2 := old
	v2.Version = 2
	v2.Custodians = append([]roster.Custodian(nil), old.Custodians...)
	v2.Custodians[0].SigningKey = newPub
	chk := f.chk
	chk.Roster, chk.Chain = v2, []roster.Roster{old, v2}

	// Its old key signed the deposit receipt and the release receipt: the
	// share is dropped, the others recover the key.
	keys, err := Open(f.officer, chk, f.rel)
	if err != nil || len(keys) != 1 || keys[0].Unverified != 1 || len(keys[0].BadShares) != 0 {
		t.Fatalf("release receipt by a retired key: %+v %v", keys, err)
	}
	// Signed with its key in force, the share counts.
	rel := f.lie()
	rel.Keys[0].Shares[0].Receipt, _ = shares.Sign(newPriv, rel.Keys[0].Shares[0].Receipt.Receipt)
	keys, err = Open(f.officer, chk, rel)
	if err != nil || len(keys) != 1 || keys[0].Unverified != 0 {
		t.Fatalf("release receipt by the key in force: %+v %v", keys, err)
	}
	// A deposit receipt signed with a key that was never custodian-1's
	// is ignored, with a warning.
	rel.Keys[0].DepositReceipts[0], _ = shares.Sign(newPriv, shares.Receipt{Kind: shares.ReceiptDeposit, Custodian: "custodian-2",
		EscrowID: rel.Keys[0].EscrowID, ConversationID: "conv-a", KeyID: "e0", Index: 2, Commitment: shares.Commitment("conv-a", "e0", []byte("other key 16 bytes"))})
	keys, err = Open(f.officer, chk, rel)
	if err != nil || len(keys) != 1 || len(keys[0].Warnings) != 1 {
		t.Fatalf("a forged deposit receipt: %+v %v", keys, err)
	}
}

// TestOpenRefusesAnotherRequestOrKey: a release of another request, or a
// private key that is not the request's recipient, opens nothing; a
// key outside the request's scope, or with a threshold below 2, is not
// recovered.
func TestOpenRefusesAnotherRequestOrKey(t *testing.T) {
	f := newReleaseFixture(t, 1, 5, 3, seal.KEMX25519)
	other, _, _ := seal.NewKey(seal.KEMX25519)
	otherPriv, _ := seal.ParseKey(other)
	if _, err := Open(otherPriv, f.chk, f.rel); !errors.Is(err, ErrUnverifiedRelease) {
		t.Fatalf("another private key: %v", err)
	}
	rel := f.lie()
	rel.RequestID = uuid.NewString()
	if _, err := Open(f.officer, f.chk, rel); !errors.Is(err, ErrUnverifiedRelease) {
		t.Fatalf("a release of another request: %v", err)
	}
	chk := f.chk
	chk.Request.Scope.ConversationIDs = []string{"conv-b"}
	if keys, err := Open(f.officer, chk, f.rel); len(keys) != 0 || err == nil || !strings.Contains(err.Error(), "scope") {
		t.Fatalf("a key out of scope: %v", err)
	}
	for _, th := range []int{0, 1} {
		rel := f.lie()
		rel.Keys[0].Threshold = th
		if keys, err := Open(f.officer, f.chk, rel); len(keys) != 0 || err == nil {
			t.Fatalf("threshold %d: %+v", th, keys)
		}
	}
	// A threshold above the key's still recovers it: the commitment
	// decides.
	rel = f.lie()
	rel.Keys[0].Threshold = 5
	if keys, err := Open(f.officer, f.chk, rel); err != nil || !bytes.Equal(keys[0].Key, f.keys[0]) {
		t.Fatalf("threshold 5 of a 3-of-5 key: %v", err)
	}
}

// TestOpenSearchIsBounded: 30 custodians, each with a valid receipt, 26
// of them for shares on no polynomial and listed first: the search stops
// at shares.MaxSubsets and says so, naming no one it could not prove bad.
func TestOpenSearchIsBounded(t *testing.T) {
	f := newReleaseFixture(t, 1, 30, 4, seal.KEMX25519)
	rel := f.lie()
	k := rel.Keys[0]
	for i := range 26 {
		junk := make([]byte, 33)
		rand.Read(junk)
		rel.Keys[0].Shares[i] = f.releaseShare(t, i, k, junk)
	}
	start := time.Now()
	keys, err := Open(f.officer, f.chk, rel)
	if len(keys) != 0 || !errors.Is(err, shares.ErrSearchBound) {
		t.Fatalf("%+v %v", keys, err)
	}
	noCustodianBlamed(t, keys, err)
	t.Logf("gave up after %v: %v", time.Since(start), err)
}

// TestCheckRelease: the officer's client takes the request from its
// canonical bytes and refuses one whose digest the mediator misstates.
func TestCheckRelease(t *testing.T) {
	chain, genesis, olga := testChain(t)
	shown, want := shownRequest(t, olga)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/v1/roster" {
			json.NewEncoder(w).Encode(wire.RosterChain{Genesis: genesis, Version: 1, Chain: chain})
			return
		}
		json.NewEncoder(w).Encode(shown)
	}))
	defer srv.Close()
	c, _ := New(srv.URL, "token", nil)
	c.UsePseudonyms(localPseudonyms())
	chk, err := c.CheckRelease(context.Background(), want.ID, genesis)
	if err != nil || chk.Digest != shown.Digest || chk.Request.Recipient.Fingerprint() != want.Recipient.Fingerprint() || len(chk.Chain) != 1 {
		t.Fatalf("%+v %v", chk, err)
	}
	shown.Digest = approval.Digest([]byte("another"))
	if _, err := c.CheckRelease(context.Background(), want.ID, genesis); !errors.Is(err, ErrUnverifiedRelease) {
		t.Fatalf("a misstated digest: %v", err)
	}
}

// TestReleasedBefore: only a 409 request_final naming status released
// means the release happened and its answer was lost.
func TestReleasedBefore(t *testing.T) {
	released := decodeError(409, []byte(`{"error":{"code":"request_final","message":"the request is released","details":[{"status":"released"}]}}`))
	denied := decodeError(409, []byte(`{"error":{"code":"request_final","message":"the request is denied","details":[{"status":"denied"}]}}`))
	if !ReleasedBefore(released) || ReleasedBefore(denied) || ReleasedBefore(errors.New("409")) {
		t.Fatal("ReleasedBefore")
	}
}

// testChain is a one-version roster chain and its genesis digest.
func testChain(t *testing.T) ([]roster.Signed, string, ed25519.PrivateKey) {
	t.Helper()
	g := roster.Roster{Version: 1, Threshold: 2, Rule: roster.DefaultRule()}
	var privs []ed25519.PrivateKey
	for _, a := range [][2]string{{"lena", "legal"}, {"sam", "security"}, {"olga", roster.RoleOfficer}} {
		pub, priv, _ := ed25519.GenerateKey(nil)
		privs = append(privs, priv)
		g.Approvers = append(g.Approvers, roster.Approver{ID: a[0], Roles: []string{a[1]}, PublicKey: pub})
	}
	for _, name := range []string{"c1", "c2"} {
		_, k, _ := seal.NewKey(seal.KEMX25519)
		s, _, _ := ed25519.GenerateKey(nil)
		g.Custodians = append(g.Custodians, roster.Custodian{Name: name, URL: "https://" + name + ".example", HPKEKey: k, SigningKey: s})
	}
	c, err := g.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	s := roster.Signed{Roster: c}
	for i, a := range g.Approvers {
		s.Signatures = append(s.Signatures, roster.Sign(privs[i], roster.Digest(c), a.ID))
	}
	return []roster.Signed{s}, roster.Digest(c), privs[2]
}

// BenchmarkOpenRelease100 is the officer's cost of opening a release of
// 100 keys, 5 custodians, K=3, to an ML-KEM-768+X25519 recipient key:
// every deposit and release receipt verified, every share opened, and
// the combines with the checks of each share.
func BenchmarkOpenRelease100(b *testing.B) {
	f := newReleaseFixture(b, 100, 5, 3, seal.KEMMLKEM768X25519)
	for b.Loop() {
		keys, err := Open(f.officer, f.chk, f.rel)
		if err != nil || len(keys) != 100 {
			b.Fatalf("%d keys: %v", len(keys), err)
		}
	}
}

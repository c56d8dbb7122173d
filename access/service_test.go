package access

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/google/uuid"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/audit"
	"github.com/mediatorhq/mediator/client"
	"github.com/mediatorhq/mediator/dev"
	"github.com/mediatorhq/mediator/escrow"
	"github.com/mediatorhq/mediator/governance"
	"github.com/mediatorhq/mediator/invalid"
	"github.com/mediatorhq/mediator/policy"
	"github.com/mediatorhq/mediator/pseudonym"
	"github.com/mediatorhq/mediator/redact"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/seal"
	"github.com/mediatorhq/mediator/shares"
	"github.com/mediatorhq/mediator/test/harness"
	"github.com/mediatorhq/mediator/test/harness/custodians"
	"github.com/mediatorhq/mediator/test/testdb"
)

var env *harness.Env

func TestMain(m *testing.M) { harness.Main(m, &env) }

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// world is the workflow on a fresh database, five custodians running on
// the shared real Vault, and the embedded policy.
type world struct {
	pool       *pgxpool.Pool
	escrow     *escrow.Service
	custodians *custodians.Set
	svc        *Service
	gov        *governance.Service
	clock      *clock
	keys       map[string]ed25519.PrivateKey // approver id → signing key
}

// trusted are the approvers of every world's genesis roster, which its
// custodians and its service pin.
// olga is the officer who files requests; she approves nothing.
var trusted = map[string]string{"lena": "legal", "sam": "security", "nina": "legal", "tom": "security", "olga": roster.RoleOfficer}

func newWorld(t testing.TB) *world { return newWorldWith(t, dev.CustodianOptions{}) }

// newWorldWith is newWorld with custodian options (such as a custodian's
// own policy).
func newWorldWith(t testing.TB, opts dev.CustodianOptions) *world {
	t.Helper()
	return newWorldOf(t, opts, escrow.Config{})
}

// newWorldOf is newWorldWith with the escrow service configured as
// escCfg (such as a small release chunk); its rows are the world's.
func newWorldOf(t testing.TB, opts dev.CustodianOptions, escCfg escrow.Config) *world {
	t.Helper()
	ctx := context.Background()
	pool := testdb.Pool(t, env)
	keys := map[string]ed25519.PrivateKey{}
	opts.Approvers = nil
	for _, id := range slices.Sorted(maps.Keys(trusted)) {
		pub, priv, _ := ed25519.GenerateKey(rand.Reader)
		keys[id] = priv
		opts.Approvers = append(opts.Approvers, roster.Approver{ID: id, Roles: []string{trusted[id]}, PublicKey: pub})
	}
	cs := custodians.Start(t, env, opts)
	logStore := audit.NewTxAppender()
	rows := escrow.NewPGRows(pool, logStore)
	escCfg.Deposits, escCfg.Lifecycle = rows, rows
	esc := cs.EscrowWith(t, escCfg)
	engine, err := policy.NewReloader(ctx, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Now().UTC()}
	w := &world{pool: pool, escrow: esc, custodians: cs, clock: c, keys: keys}
	gstore := governance.NewPGStore(pool, logStore)
	w.gov = governance.New(governance.Config{Chain: gstore, Proposals: gstore, Checkins: gstore, RosterGenesis: cs.GenesisDigest(),
		Custodians: esc, ReleaseRule: engine, Now: c.now})
	store := NewPGStore(pool, logStore)
	w.svc = New(Config{Requests: store, Approvals: store, Releases: store, Roster: w.gov, Decider: engine, Escrow: esc, Now: c.now})
	w.adopt(t, cs.Genesis(), slices.Sorted(maps.Keys(trusted))...)
	return w
}

// adopt proposes next as an admin and has signers sign it with their keys
// in w.keys (extra holds new keys, for proof of possession); it fails the
// test unless next is adopted.
func (w *world) adopt(t testing.TB, next roster.Roster, signers ...string) governance.Proposal {
	t.Helper()
	return w.adoptWith(t, next, nil, signers...)
}

func (w *world) adoptWith(t testing.TB, next roster.Roster, newKeys map[string]ed25519.PrivateKey, signers ...string) governance.Proposal {
	t.Helper()
	ctx := context.Background()
	p, err := w.gov.ProposeRoster(ctx, "admin", next)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range signers {
		if p, err = w.gov.SignRoster(ctx, id, p.Digest, roster.Sign(w.keys[id], p.Digest, id).Signature); err != nil {
			t.Fatalf("%s signs: %v", id, err)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(newKeys)) {
		if p, err = w.gov.SignRoster(ctx, id, p.Digest, roster.Sign(newKeys[id], p.Digest, id).Signature); err != nil {
			t.Fatalf("%s signs with the new key: %v", id, err)
		}
	}
	if !p.Adopted {
		t.Fatalf("roster version %d not adopted: %v", p.Roster.Version, p.Progress.Missing)
	}
	return p
}

// approver checks that id is an approver of the roster in force with roles.
func (w *world) approver(t testing.TB, id string, roles ...string) {
	t.Helper()
	cur, _, err := w.gov.Roster(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if a, ok := cur.Approver(id); !ok || !slices.Equal(a.Roles, roles) {
		t.Fatalf("approver %s is not in the roster with roles %v", id, roles)
	}
}

// isCoded reports whether err is an *invalid.Error under the rule code.
func isCoded(err error, code string) bool {
	e, ok := invalid.As(err)
	if !ok {
		return false
	}
	_, _, c := e.Invalid()
	return c == code
}

// file files d as requester, as the officer's client does: a fresh id,
// the clock's time, and the officer's signature (with their key in
// w.keys, or a key no roster lists).
func (w *world) file(ctx context.Context, requester string, d Draft) (Request, error) {
	d = normalize(d)
	d.ID, d.Requester, d.CreatedAt = uuid.NewString(), requester, w.clock.now().UTC().Truncate(time.Second)
	c, err := d.Canonical()
	if err != nil {
		return w.svc.Create(ctx, requester, d, nil)
	}
	key, ok := w.keys[requester]
	if !ok {
		_, key, _ = ed25519.GenerateKey(rand.Reader)
	}
	return w.svc.Create(ctx, requester, d, approval.SignRequest(key, approval.Digest(c)))
}

func (w *world) sign(r Request, decision, approverID string) []byte {
	return ed25519.Sign(w.keys[approverID], approval.Message(r.ID, r.Digest, decision, approverID))
}

func (w *world) vote(t testing.TB, r Request, approverID, decision string) error {
	t.Helper()
	_, err := w.svc.Approve(context.Background(), approverID, r.ID, decision, w.sign(r, decision, approverID))
	return err
}

// approved files a request by olga for convos and approves it as lena
// and sam, returning it and its recipient's private key.
func (w *world) approved(tb testing.TB, convos ...string) (Request, hpke.PrivateKey) {
	tb.Helper()
	d, recipient := draft(tb, w.clock.now(), convos...)
	r, err := w.file(context.Background(), "olga", d)
	if err != nil {
		tb.Fatal(err)
	}
	for _, who := range []string{"lena", "sam"} {
		if err := w.vote(tb, r, who, "approve"); err != nil {
			tb.Fatal(err)
		}
	}
	return r, recipient
}

// names maps the pseudonyms ps gave back to the tests' conversation names.
var names sync.Map

// ps is the pseudonym the tests give conversation name, as a depositor's
// client would send it.
func ps(name string) string {
	p := pseudonym.Synthetic(name)
	names.Store(p, name)
	return p
}

// nameOf is the conversation name ps made p of.
func nameOf(p string) string {
	if n, ok := names.Load(p); ok {
		return n.(string)
	}
	return p
}

// deposit escrows a fresh key as a depositor does: split and sealed here,
// under the conversation's pseudonym.
func (w *world) deposit(t testing.TB, convo, keyID string) []byte {
	t.Helper()
	convo = ps(convo)
	key := make([]byte, 32)
	rand.Read(key)
	set := w.custodians.SharesSet()
	commitment, sealed, err := shares.Split(set, convo, keyID, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := w.escrow.Deposit(context.Background(), escrow.DepositRequest{ConversationID: convo, KeyID: keyID,
		Commitment: commitment, CustodianSet: w.custodians.Digest, Threshold: set.Threshold, Shares: sealed, Depositor: "gw"}); err != nil {
		t.Fatal(err)
	}
	return key
}

// open opens and combines every key of a release, as the officer's client
// does.
func open(t testing.TB, priv hpke.PrivateKey, rel Release) map[string][]byte {
	t.Helper()
	got := map[string][]byte{}
	for _, k := range rel.Keys {
		var parts []shares.Part
		for _, sh := range k.Shares {
			share, err := shares.OpenReleased(priv, rel.RequestID, k.Escrow.ConversationID, k.Escrow.KeyID, sh.Custodian, sh.Index, sh.Sealed)
			if err != nil {
				t.Fatal(err)
			}
			parts = append(parts, shares.Part{Custodian: sh.Custodian, Share: share})
		}
		key, bad, err := shares.Recover(k.Escrow.ConversationID, k.Escrow.KeyID, k.Escrow.KeyCommitment, k.Escrow.Threshold, parts)
		if err != nil || bad != nil {
			t.Fatalf("recover %s: %v %v", k.Escrow.ConversationID, bad, err)
		}
		got[nameOf(k.Escrow.ConversationID)] = key
	}
	return got
}

func draft(t testing.TB, now time.Time, convos ...string) (Draft, hpke.PrivateKey) {
	t.Helper()
	kem := hpke.MLKEM768X25519()
	priv, err := kem.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	convos = slices.Clone(convos)
	for i, c := range convos {
		convos[i] = ps(c)
	}
	return Draft{
		CaseID: "case-2026-117", LegalBasis: "court_order", WarrantRef: "SDNY 26-MJ-0117", Jurisdiction: "US",
		Justification: "Preservation and review ordered in the case file, exhibit 4.",
		Scope:         Scope{ConversationIDs: convos, From: now.Add(-time.Hour), To: now.Add(time.Hour)},
		Recipient:     seal.PublicKey{KEMID: seal.KEMMLKEM768X25519, PublicKey: priv.PublicKey().Bytes()},
		ExpiresAt:     now.Add(72 * time.Hour),
	}, priv
}

func TestCanonicalRequestAndApprovalMessage(t *testing.T) {
	now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	d, _ := draft(t, now, "c1", "c2")
	d.ID, d.Requester, d.CreatedAt = "7c3f8a9e-0000-4000-8000-000000000001", "olga", now
	r := Request{Request: d}
	c1, err := Canonical(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(c1, &m); err != nil {
		t.Fatal(err)
	}
	if m["v"] != "mediator-access-request-v1" || m["requester"] != "olga" || m["expires_at"] != "2026-11-23T12:00:00Z" {
		t.Fatalf("canonical request: %s", c1)
	}
	// RFC 8785: members sorted, no whitespace.
	if !bytes.HasPrefix(c1, []byte(`{"case_id":"case-2026-117","created_at":`)) || bytes.Contains(c1, []byte(" :")) {
		t.Fatalf("not canonical: %s", c1)
	}
	r2 := r
	r2.Scope.ConversationIDs = []string{"c1", "c3"}
	c2, _ := Canonical(r2)
	if approval.Digest(c1) == approval.Digest(c2) || !strings.HasPrefix(approval.Digest(c1), "sha256:") || len(approval.Digest(c1)) != 71 {
		t.Fatalf("digests: %s %s", approval.Digest(c1), approval.Digest(c2))
	}
	msg := approval.Message("r1", "sha256:ab", "approve", "lena")
	if string(msg) != "mediator-approval-v1\nr1\nsha256:ab\napprove\nlena\n" {
		t.Fatalf("approval message: %q", msg)
	}
}

func TestDraftValidation(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	now := w.clock.now()
	bad := map[string]func(*Draft){
		"no case":              func(d *Draft) { d.CaseID = "" },
		"bad legal basis":      func(d *Draft) { d.LegalBasis = "Court Order" },
		"bad jurisdiction":     func(d *Draft) { d.Jurisdiction = "us" },
		"no conversations":     func(d *Draft) { d.Scope.ConversationIDs = nil },
		"duplicate convo":      func(d *Draft) { d.Scope.ConversationIDs = []string{"a", "a"} },
		"newline in convo":     func(d *Draft) { d.Scope.ConversationIDs = []string{"a\nb"} },
		"backwards scope":      func(d *Draft) { d.Scope.From, d.Scope.To = d.Scope.To, d.Scope.From },
		"expired already":      func(d *Draft) { d.ExpiresAt = now.Add(-time.Minute) },
		"expires in a year":    func(d *Draft) { d.ExpiresAt = now.Add(365 * 24 * time.Hour) },
		"unsupported KEM":      func(d *Draft) { d.Recipient.KEMID = 0x0010 },
		"short recipient key":  func(d *Draft) { d.Recipient.PublicKey = d.Recipient.PublicKey[:10] },
		"no justification":     func(d *Draft) { d.Justification = "  " },
		"phone in text":        func(d *Draft) { d.Justification = "Suspect uses +1 415 555 0100 daily" },
		"email in text":        func(d *Draft) { d.Justification = "Contact was a.b@example.com" },
		"slashes in text":      func(d *Draft) { d.Justification = "Suspect uses 415/555/0100 daily" },
		"underscores in text":  func(d *Draft) { d.Justification = "Suspect uses 415_555_0100 daily" },
		"wide digits in text":  func(d *Draft) { d.Justification = "Suspect uses ４１５５５５０１００ daily" },
		"wide at in text":      func(d *Draft) { d.Justification = "Contact was a.b＠example.com" },
		"control char in case": func(d *Draft) { d.CaseID = "case\x07" },
		"number as convo":      func(d *Draft) { d.Scope.ConversationIDs = []string{"14155550100@s.whatsapp.net"} },
	}
	for name, mutate := range bad {
		d, _ := draft(t, now, "c1")
		mutate(&d)
		_, err := w.file(ctx, "olga", d)
		ve, ok := invalid.As(err)
		if !ok || ve.Field == "" || ve.Reason == "" {
			t.Errorf("%s: %v, want an *invalid.Error naming a field and a reason", name, err)
			continue
		}
		if strings.Contains(name, "text") != (ve.Code == redact.CodeIdentifierInOpaqueField) {
			t.Errorf("%s: code %q", name, ve.Code)
		}
		if strings.Contains(name, "number as") != (ve.Code == redact.CodeNotAPseudonym) {
			t.Errorf("%s: code %q", name, ve.Code)
		}
	}
	var n int
	if err := w.pool.QueryRow(ctx, "SELECT count(*) FROM access_requests").Scan(&n); err != nil || n != 0 {
		t.Fatalf("refused drafts left %d rows (%v)", n, err)
	}
}

func TestApprovalsAreVerifiedAndCountedOnce(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.approver(t, "lena", "legal")
	d, _ := draft(t, w.clock.now(), "c1")
	r, err := w.file(ctx, "olga", d)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != StatusPending || r.Digest != approval.Digest(r.Canonical) {
		t.Fatalf("created: %+v", r)
	}
	// Not registered.
	if _, err := w.svc.Approve(ctx, "mallory", r.ID, "approve", make([]byte, 64)); !errors.Is(err, governance.ErrUnknownApprover) {
		t.Fatalf("unknown approver: %v", err)
	}
	// A signature over another digest, another decision, by another key.
	other := ed25519.Sign(w.keys["lena"], approval.Message(r.ID, approval.Digest([]byte("other")), "approve", "lena"))
	flipped := w.sign(r, "deny", "lena")
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	forged := ed25519.Sign(stranger, approval.Message(r.ID, r.Digest, "approve", "lena"))
	for name, sig := range map[string][]byte{"other digest": other, "other decision": flipped, "other key": forged, "short": forged[:10]} {
		if _, err := w.svc.Approve(ctx, "lena", r.ID, "approve", sig); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := w.svc.Approve(ctx, "lena", r.ID, "maybe", w.sign(r, "maybe", "lena")); !isCoded(err, invalid.CodeValidationFailed) {
		t.Fatalf("bad decision: %v", err)
	}
	// The requester is an officer, never an approver: her vote is
	// refused and nothing is recorded.
	if _, err := w.svc.Approve(ctx, "olga", r.ID, "approve", w.sign(r, "approve", "olga")); !errors.Is(err, governance.ErrUnknownApprover) {
		t.Fatalf("the requesting officer's own approval: %v", err)
	}
	if err := w.vote(t, r, "lena", "approve"); err != nil {
		t.Fatal(err)
	}
	if err := w.vote(t, r, "lena", "approve"); !errors.Is(err, ErrDuplicateApproval) {
		t.Fatalf("same approver twice: %v", err)
	}
	_, approvals, err := w.svc.Get(ctx, r.ID)
	if err != nil || len(approvals) != 1 || approvals[0].ApproverID != "lena" {
		t.Fatalf("approvals recorded: %+v %v", approvals, err)
	}
	// The release is denied for want of a security approver.
	_, err = w.svc.Release(ctx, "olga", r.ID)
	var denied *DeniedError
	if !errors.As(err, &denied) || !strings.Contains(strings.Join(denied.Reasons, ";"), "security role") || denied.DecisionID == "" {
		t.Fatalf("release after a self-approval: %v", err)
	}
}

func TestReleaseSealsOnlyTheKeysInScope(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	k1, k2 := w.deposit(t, "conv-a", "epoch-1"), w.deposit(t, "conv-b", "epoch-1")
	k3 := w.deposit(t, "conv-c", "epoch-1")
	w.approver(t, "lena", "legal")
	w.approver(t, "sam", "security")
	d, recipient := draft(t, w.clock.now(), "conv-a", "conv-b")
	r, err := w.file(ctx, "olga", d)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.vote(t, r, "lena", "approve"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.svc.Release(ctx, "sam", r.ID); !errors.Is(err, ErrNotRequester) {
		t.Fatalf("release by another officer: %v", err)
	}
	if err := w.vote(t, r, "sam", "approve"); err != nil {
		t.Fatal(err)
	}
	rel, err := w.svc.Release(ctx, "olga", r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(rel.Keys) != 2 || rel.DecisionID == "" || rel.AuditSeq <= 0 {
		t.Fatalf("release: %+v", rel)
	}
	got := open(t, recipient, rel)
	if !bytes.Equal(got["conv-a"], k1) || !bytes.Equal(got["conv-b"], k2) {
		t.Fatal("opened keys differ from the deposited ones")
	}
	for _, k := range got {
		if bytes.Equal(k, k3) {
			t.Fatal("a key outside the scope was released")
		}
	}
	// Final: a second release, an approval or a revocation is refused.
	var fe *FinalError
	if _, err := w.svc.Release(ctx, "olga", r.ID); !errors.As(err, &fe) || fe.Status != StatusReleased {
		t.Fatalf("second release: %v", err)
	}
	if _, err := w.svc.Revoke(ctx, "olga", r.ID); !errors.Is(err, ErrFinal) {
		t.Fatalf("revoke after release: %v", err)
	}
	// The trail: request, two approvals, a decision, the release.
	var kinds string
	if err := w.pool.QueryRow(ctx, "SELECT string_agg(kind, ',' ORDER BY seq) FROM audit_entries WHERE kind LIKE 'access.%' AND kind NOT LIKE 'access.approver%'").Scan(&kinds); err != nil {
		t.Fatal(err)
	}
	want := "access.request,access.approval,access.approval,access.decision," + strings.Repeat("access.custodian_release,", 5) + "access.release"
	if kinds != want {
		t.Fatalf("audit trail: %s", kinds)
	}
	var allow bool
	var revision string
	if err := w.pool.QueryRow(ctx, "SELECT allow, policy_revision FROM access_decisions WHERE decision_id = $1", rel.DecisionID).Scan(&allow, &revision); err != nil || !allow || !strings.HasPrefix(revision, "sha256:") {
		t.Fatalf("decision row: %v %s %v", allow, revision, err)
	}
}

func TestDenyVoteAndTheDenialLock(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.approver(t, "lena", "legal")
	w.approver(t, "sam", "security")
	w.approver(t, "nina", "legal")
	d, _ := draft(t, w.clock.now(), "c1")
	r, _ := w.file(ctx, "olga", d)
	for _, v := range [][2]string{{"lena", "approve"}, {"sam", "approve"}, {"nina", "deny"}} {
		if err := w.vote(t, r, v[0], v[1]); err != nil {
			t.Fatal(err)
		}
	}
	var denied *DeniedError
	for i := 1; i <= maxDeniedReleases; i++ {
		_, err := w.svc.Release(ctx, "olga", r.ID)
		if !errors.As(err, &denied) || !strings.Contains(strings.Join(denied.Reasons, ";"), "nina voted to deny") {
			t.Fatalf("attempt %d: %v", i, err)
		}
		if denied.Locked != (i == maxDeniedReleases) {
			t.Fatalf("attempt %d: locked = %v", i, denied.Locked)
		}
	}
	var fe *FinalError
	if _, err := w.svc.Release(ctx, "olga", r.ID); !errors.As(err, &fe) || fe.Status != StatusDenied {
		t.Fatalf("after the lock: %v", err)
	}
	got, _, _ := w.svc.Get(ctx, r.ID)
	if got.Status != StatusDenied || got.DeniedReleases != maxDeniedReleases {
		t.Fatalf("locked request: %+v", got)
	}
}

func TestExpiryRevocationAndRotation(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.approver(t, "lena", "legal")
	d, _ := draft(t, w.clock.now(), "c1")
	r, _ := w.file(ctx, "olga", d)
	if _, err := w.svc.Revoke(ctx, "sam", r.ID); !errors.Is(err, ErrNotRequester) {
		t.Fatalf("revoke by another: %v", err)
	}
	if got, err := w.svc.Revoke(ctx, "olga", r.ID); err != nil || got.Status != StatusRevoked {
		t.Fatalf("revoke: %+v %v", got, err)
	}
	if err := w.vote(t, r, "lena", "approve"); !errors.Is(err, ErrFinal) {
		t.Fatalf("approve a revoked request: %v", err)
	}

	// Expiry is recorded when the request is next touched.
	r2, _ := w.file(ctx, "olga", d)
	w.clock.add(73 * time.Hour)
	if list, _ := w.svc.List(ctx, StatusExpired, 10); len(list) != 1 || list[0].ID != r2.ID {
		t.Fatalf("expired list: %+v", list)
	}
	var fe *FinalError
	if err := w.vote(t, r2, "lena", "approve"); !errors.As(err, &fe) || fe.Status != StatusExpired {
		t.Fatalf("approve an expired request: %v", err)
	}
	var status string
	if err := w.pool.QueryRow(ctx, "SELECT status FROM access_request_finals WHERE request_id = $1", r2.ID).Scan(&status); err != nil || status != "expired" {
		t.Fatalf("expiry not recorded: %q %v", status, err)
	}

	// Rotation and removal are roster versions: once adopted, the old
	// key's signatures are refused, the new key's accepted, and a removed
	// approver's refused.
	r3, _ := w.file(ctx, "olga", Draft(func() Draft { d, _ := draft(t, w.clock.now(), "c1"); return d }()))
	oldKey := w.keys["lena"]
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	if err := w.vote(t, r3, "nina", "approve"); err != nil {
		t.Fatal(err)
	}
	cur, _, err := w.gov.Roster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	next := cur
	next.Approvers = nil
	for _, a := range cur.Approvers {
		switch a.ID {
		case "lena":
			a.PublicKey = pub
		case "sam", "nina":
			continue // sam leaves; nina too, so her earlier approval stops counting
		}
		next.Approvers = append(next.Approvers, a)
	}
	next.Version, next.Previous = 0, ""
	w.adoptWith(t, next, map[string]ed25519.PrivateKey{"lena": priv}, "lena", "tom")
	if _, err := w.svc.Approve(ctx, "lena", r3.ID, "approve", ed25519.Sign(oldKey, approval.Message(r3.ID, r3.Digest, "approve", "lena"))); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("signature with the rotated-out key: %v", err)
	}
	w.keys["lena"] = priv
	if err := w.vote(t, r3, "sam", "approve"); !errors.Is(err, governance.ErrUnknownApprover) {
		t.Fatalf("removed approver: %v", err)
	}
	if err := w.vote(t, r3, "lena", "approve"); err != nil {
		t.Fatalf("new key: %v", err)
	}
	in, _, err := w.svc.policyInput(ctx, r3)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range in.Approvals {
		counts := a.SignatureVerified && a.ApproverActive
		if counts != (a.ApproverID == "lena") {
			t.Errorf("approval by %s counts %t after the roster changed", a.ApproverID, counts)
		}
	}
}

// TestReleaseAcrossCustodians: with one custodian stricter than the others
// (its own data.json wants three approvals) and one down, the release
// still completes from the three that agree, and shows the refusal's
// reasons; with only two custodians able to release, it is short of the
// threshold, names the custodians that are unavailable, and keeps what it
// got; once they are back, asking again completes it, asking only for the
// shares still missing, and the kept shares can be fetched again.
func TestReleaseAcrossCustodians(t *testing.T) {
	ctx := context.Background()
	strict := t.TempDir()
	for _, name := range []string{"release.rego", "data.json"} {
		b, err := os.ReadFile(filepath.Join("..", "policy", name))
		if err != nil {
			t.Fatal(err)
		}
		if name == "data.json" {
			b = []byte(strings.Replace(string(b), `"min_approvals": 2`, `"min_approvals": 3`, 1))
		}
		os.WriteFile(filepath.Join(strict, name), b, 0o644)
	}
	// custodian-2 is strict.
	w := newWorldWith(t, dev.CustodianOptions{PolicyDir: map[int]string{2: strict}})
	k1 := w.deposit(t, "conv-a", "e1")
	w.approver(t, "lena", "legal")
	w.approver(t, "sam", "security")
	d, recipient := draft(t, w.clock.now(), "conv-a")
	r, _ := w.file(ctx, "olga", d)
	w.vote(t, r, "lena", "approve")
	w.vote(t, r, "sam", "approve")

	// custodian-2 refuses, custodian-4 and -5 are down: two shares, K = 3.
	w.custodians.Stop(3)
	w.custodians.Stop(4)
	_, err := w.svc.Release(ctx, "olga", r.ID)
	var ce *CustodiansError
	if !errors.As(err, &ce) || len(ce.Short) != 1 || strings.Join(ce.Unavailable, ",") != "custodian-4,custodian-5" ||
		len(ce.Refusals) != 1 || ce.Refusals[0].Custodian != "custodian-2" || !strings.Contains(strings.Join(ce.Refusals[0].Reasons, ";"), "at least 3") {
		t.Fatalf("two of five: %+v", err)
	}
	var kept int
	w.pool.QueryRow(ctx, "SELECT count(*) FROM access_release_shares WHERE request_id = $1", r.ID).Scan(&kept)
	if kept != 2 {
		t.Fatalf("kept %d shares, want the 2 released", kept)
	}

	// One comes back: three agree, the release completes.
	w.custodians.Run(3)
	rel, err := w.svc.Release(ctx, "olga", r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(rel.Refusals) != 1 || rel.Refusals[0].Custodian != "custodian-2" || len(rel.Keys[0].Shares) != 3 {
		t.Fatalf("release: %+v", rel)
	}
	if got := open(t, recipient, rel); !bytes.Equal(got["conv-a"], k1) {
		t.Fatal("the released key differs from the deposited one")
	}
	// custodian-1 and -3 were asked once: they never released twice.
	var releases int
	w.pool.QueryRow(ctx, "SELECT count(*) FROM audit_entries WHERE kind = 'access.custodian_release'").Scan(&releases)
	if releases != 3 {
		t.Fatalf("%d custodian releases logged, want 3", releases)
	}
	again, err := w.svc.Released(ctx, "olga", r.ID, "", 0)
	if err != nil || len(again.Keys) != 1 || len(again.Keys[0].Shares) != 3 {
		t.Fatalf("fetch again: %+v %v", again, err)
	}
	if _, err := w.svc.Released(ctx, "sam", r.ID, "", 0); !errors.Is(err, ErrNotRequester) {
		t.Fatalf("fetch by another: %v", err)
	}
}

// BenchmarkRelease100 is an officer's release of 100 keys held by five
// custodians (K=3): the mediator's policy decision, every custodian's own
// checks and re-sealing, and the officer's client checking every deposit
// and release receipt against the verified roster, opening and combining
// the shares (client.Open), as the CLI does. Filing and approving each
// request is not timed.
func BenchmarkRelease100(b *testing.B) {
	w := newWorld(b)
	ctx := context.Background()
	const n = 100
	convos := make([]string, n)
	for i := range convos {
		convos[i] = fmt.Sprintf("conv-%03d", i)
		w.deposit(b, convos[i], "epoch-1")
	}
	w.approver(b, "lena", "legal")
	w.approver(b, "sam", "security")
	for b.Loop() {
		b.StopTimer()
		r, recipient := w.approved(b, convos...)
		b.StartTimer()
		rel, err := w.svc.Release(ctx, "olga", r.ID)
		if err != nil {
			b.Fatal(err)
		}
		if got := w.openVerified(b, recipient, r, rel); len(got) != n {
			b.Fatalf("%d keys recovered", len(got))
		}
	}
}

// openVerified opens a release as the officer's client does
// (client.Open): every deposit and release receipt checked against the
// roster verified from the genesis, then every share opened and combined.
func (w *world) openVerified(tb testing.TB, priv hpke.PrivateKey, r Request, rel Release) []client.OpenedKey {
	tb.Helper()
	cur, chain, err := w.gov.Roster(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	versions, err := roster.VerifyChain(w.gov.Genesis(), chain)
	if err != nil {
		tb.Fatal(err)
	}
	keys, err := client.Open(priv, client.ReleaseCheck{Request: r.Request, Digest: r.Digest, Roster: cur, Chain: versions}, rel.Answer())
	if err != nil {
		tb.Fatal(err)
	}
	for _, k := range keys {
		if len(k.BadShares) > 0 || k.Unverified > 0 {
			tb.Fatalf("%s: bad %v, unverified %d", k.ConversationID, k.BadShares, k.Unverified)
		}
	}
	return keys
}

// TestRequestsAreSignedByAnOfficer plays a host holding an officer's
// bearer token but not their signing key, and a superuser who edits a
// stored request: nothing is filed that the requester did not sign as an
// officer of the roster in force, and a stored request whose signature no
// longer verifies is neither approved nor released.
func TestRequestsAreSignedByAnOfficer(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	d, _ := draft(t, w.clock.now(), "c1")
	sign := func(d Draft, key ed25519.PrivateKey) []byte {
		c, err := d.Canonical()
		if err != nil {
			t.Fatal(err)
		}
		return approval.SignRequest(key, approval.Digest(c))
	}
	d = normalize(d)
	d.ID, d.Requester, d.CreatedAt = uuid.NewString(), "olga", w.clock.now().UTC().Truncate(time.Second)
	_, hostKey, _ := ed25519.GenerateKey(rand.Reader)
	swapped := d
	_, swapped.Recipient, _ = seal.NewKey(seal.KEMX25519)
	stale := d
	stale.CreatedAt = d.CreatedAt.Add(-time.Hour)
	for _, tc := range []struct {
		name      string
		requester string
		d         Draft
		sig       []byte
		want      error
	}{
		{"no signature", "olga", d, nil, ErrBadOfficerSignature},
		{"signed by the host's key", "olga", d, sign(d, hostKey), ErrBadOfficerSignature},
		{"recipient swapped after signing", "olga", swapped, sign(d, w.keys["olga"]), ErrBadOfficerSignature},
		{"filed by an approver", "sam", func() Draft { x := d; x.Requester = "sam"; return x }(), nil, ErrNotOfficer},
		{"filed by someone in no roster", "mallory", func() Draft { x := d; x.Requester = "mallory"; return x }(), nil, ErrNotOfficer},
	} {
		if key, ok := w.keys[tc.requester]; ok && tc.sig == nil && tc.requester != "olga" {
			tc.sig = sign(tc.d, key)
		}
		if _, err := w.svc.Create(ctx, tc.requester, tc.d, tc.sig); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := w.svc.Create(ctx, "olga", stale, sign(stale, w.keys["olga"])); !isCoded(err, invalid.CodeValidationFailed) {
		t.Errorf("a filing time an hour off: %v", err)
	}
	var n int
	if err := w.pool.QueryRow(ctx, "SELECT count(*) FROM access_requests").Scan(&n); err != nil || n != 0 {
		t.Fatalf("refused requests left %d rows (%v)", n, err)
	}
	r, err := w.svc.Create(ctx, "olga", d, sign(d, w.keys["olga"]))
	if err != nil {
		t.Fatal(err)
	}
	if got, _, err := w.svc.Get(ctx, r.ID); err != nil || !approval.VerifyRequest(w.keys["olga"].Public().(ed25519.PublicKey), got.Digest, got.OfficerSignature) {
		t.Fatalf("the officer's signature is not kept with the request: %v", err)
	}
	// A superuser strips the signature: no approval, no release.
	tx, _ := w.pool.Begin(ctx)
	tx.Exec(ctx, "SET LOCAL session_replication_role = replica")
	if _, err := tx.Exec(ctx, `UPDATE access_requests SET officer_signature = NULL WHERE request_id = $1`, r.ID); err != nil {
		t.Fatal(err)
	}
	tx.Commit(ctx)
	if err := w.vote(t, r, "lena", "approve"); !errors.Is(err, ErrBadOfficerSignature) {
		t.Fatalf("an approval of an unsigned request: %v", err)
	}
	if _, err := w.svc.Release(ctx, "olga", r.ID); !errors.Is(err, ErrBadOfficerSignature) {
		t.Fatalf("a release of an unsigned request: %v", err)
	}
}

// TestReleaseTakesWhatExistedWhenApproved: a key deposited inside the
// request's window after its approvals is not released, and does not
// stand in the way of the keys that existed then: the mediator does not
// ask for it, and every custodian would refuse it.
func TestReleaseTakesWhatExistedWhenApproved(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.clock.add(-time.Minute) // the request is filed a minute before now
	before := w.deposit(t, "c1", "e1")
	d, recipient := draft(t, w.clock.now(), "c1")
	d.Scope.To = w.clock.now().Add(time.Hour)
	r, err := w.file(ctx, "olga", d)
	if err != nil {
		t.Fatal(err)
	}
	for _, who := range []string{"lena", "sam"} {
		if err := w.vote(t, r, who, "approve"); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(5 * time.Millisecond)
	w.deposit(t, "c1", "e2")
	rel, err := w.svc.Release(ctx, "olga", r.ID)
	if err != nil {
		t.Fatal(err)
	}
	got := open(t, recipient, rel)
	if len(rel.Keys) != 1 || rel.Keys[0].Escrow.KeyID != "e1" || !bytes.Equal(got["c1"], before) {
		t.Fatalf("released %d keys: %+v", len(rel.Keys), rel.Keys)
	}
}

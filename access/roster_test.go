package access

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/governance"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/seal"
)

// TestRosterOnlyAQuorumChangesIt plays one admin, one approver and a
// newcomer without their key, each trying to change the roster alone:
// none is adopted, and the roster in force stays what it was until a
// quorum of its approvers and the new key have signed.
func TestRosterOnlyAQuorumChangesIt(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	cur, _, err := w.gov.Roster(ctx)
	if err != nil || cur.Version != 1 {
		t.Fatalf("genesis: %+v %v", cur.Version, err)
	}
	evePub, eve, _ := ed25519.GenerateKey(rand.Reader)
	next := cur
	next.Version, next.Previous = 0, ""
	next.Approvers = append(slices.Clone(cur.Approvers), roster.Approver{ID: "eve", Roles: []string{"legal", "security"}, PublicKey: evePub})

	// The admin proposes: nothing changes.
	p, err := w.gov.ProposeRoster(ctx, "ada", next)
	if err != nil || p.Adopted || p.Roster.Version != 2 || len(p.Progress.Missing) == 0 {
		t.Fatalf("proposal: %+v %v", p, err)
	}
	sign := func(id string, key ed25519.PrivateKey) (governance.Proposal, error) {
		return w.gov.SignRoster(ctx, id, p.Digest, roster.Sign(key, p.Digest, id).Signature)
	}
	// eve alone, with her own key, and then one approver of version 1.
	if p, err = sign("eve", eve); err != nil || p.Adopted {
		t.Fatalf("eve's own signature: %+v %v", p.Adopted, err)
	}
	if p, err = sign("lena", w.keys["lena"]); err != nil || p.Adopted || !strings.Contains(strings.Join(p.Progress.Missing, ";"), "security role") {
		t.Fatalf("lena alone: %+v %v", p.Progress, err)
	}
	// A signature by someone who is in neither version, and one over the
	// wrong digest, are refused and stored nowhere.
	_, mallory, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := sign("mallory", mallory); !errors.Is(err, governance.ErrNotSigner) {
		t.Fatalf("mallory: %v", err)
	}
	if _, err := w.gov.SignRoster(ctx, "sam", p.Digest, roster.Sign(w.keys["sam"], "sha256:"+strings.Repeat("0", 64), "sam").Signature); !errors.Is(err, governance.ErrNotSigner) {
		t.Fatalf("a signature over another digest: %v", err)
	}
	if cur, _, _ := w.gov.Roster(ctx); cur.Version != 1 {
		t.Fatalf("the roster changed without a quorum: version %d", cur.Version)
	}
	w.keys["eve"] = eve
	if err := w.vote(t, mustRequest(t, w), "eve", "approve"); !errors.Is(err, governance.ErrUnknownApprover) {
		t.Fatalf("eve approved before her version was adopted: %v", err)
	}
	// sam (security) completes the quorum: adopted.
	if p, err = sign("sam", w.keys["sam"]); err != nil || !p.Adopted {
		t.Fatalf("the quorum: %+v %v", p, err)
	}
	if cur, _, _ := w.gov.Roster(ctx); cur.Version != 2 {
		t.Fatalf("version %d after adoption", cur.Version)
	}

	// Version 3 adds max without his proof of possession: never adopted,
	// however many approvers sign.
	maxPub, _, _ := ed25519.GenerateKey(rand.Reader)
	cur, _, _ = w.gov.Roster(ctx)
	v3 := cur
	v3.Version, v3.Previous = 0, ""
	v3.Approvers = append(slices.Clone(cur.Approvers), roster.Approver{ID: "max", Roles: []string{"legal"}, PublicKey: maxPub})
	p3, err := w.gov.ProposeRoster(ctx, "ada", v3)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"lena", "sam", "olga", "eve"} {
		if p3, err = w.gov.SignRoster(ctx, id, p3.Digest, roster.Sign(w.keys[id], p3.Digest, id).Signature); err != nil {
			t.Fatal(err)
		}
	}
	if p3.Adopted || !strings.Contains(strings.Join(p3.Progress.Missing, ";"), "max's signature with their new key") {
		t.Fatalf("max without proof of possession: %+v", p3.Progress)
	}

	// A proposal that breaks its own rule is refused outright.
	bad := cur
	bad.Version, bad.Previous = 0, ""
	bad.Rule = roster.Rule{MinSigners: 1, RequiredRoles: []string{"legal"}}
	if _, err := w.gov.ProposeRoster(ctx, "ada", bad); !isCoded(err, "invalid_roster") {
		t.Fatalf("a one-signer rule: %v", err)
	}
}

// TestRosterEditedInTheDatabase: a superuser adds an approver by writing
// the roster tables. The chain no longer verifies from the pinned genesis,
// so no approval counts and the service says why; nothing falls back to
// the forged version.
func TestRosterEditedInTheDatabase(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	r := mustRequest(t, w) // filed while the chain verified
	cur, _, _ := w.gov.Roster(ctx)
	genesis := w.gov.Genesis()
	forged := cur
	forged.Version, forged.Previous = 2, genesis
	evePub, eve, _ := ed25519.GenerateKey(rand.Reader)
	forged.Approvers = append(slices.Clone(cur.Approvers), roster.Approver{ID: "eve", Roles: []string{"legal"}, PublicKey: evePub})
	c, _ := forged.Canonical()
	d := roster.Digest(c)
	sig := roster.Sign(eve, d, "eve")
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO roster_proposals (digest, version, canonical, proposed_by, audit_seq) VALUES ($1, 2, $2, 'ada', 0)`, []any{d, c}},
		{`INSERT INTO roster_signatures (digest, approver_id, key_id, signature, audit_seq) VALUES ($1, 'eve', $2, $3, 0)`, []any{d, sig.KeyID, sig.Signature}},
		{`INSERT INTO roster_versions (genesis, version, digest, audit_seq) VALUES ($1, 2, $2, 0)`, []any{genesis, d}},
	} {
		if _, err := w.pool.Exec(ctx, q.sql, q.args...); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := w.gov.Roster(ctx); !errors.Is(err, governance.ErrRosterBroken) {
		t.Fatalf("a forged version in the database: %v", err)
	}
	w.keys["eve"] = eve
	if err := w.vote(t, r, "eve", "approve"); !errors.Is(err, governance.ErrRosterBroken) {
		t.Fatalf("eve's approval under the forged version: %v", err)
	}
	if err := w.vote(t, r, "lena", "approve"); !errors.Is(err, governance.ErrRosterBroken) {
		t.Fatalf("approvals go on over a broken chain: %v", err)
	}
}

// TestColumnsAreOnlyAnIndex: a request row whose columns a superuser
// edited (another conversation, another recipient key) is read as the
// canonical request approvers signed, and Mismatches names the row and
// fields; a row whose canonical bytes were swapped for another request's
// is taken as corrupt and nothing is approved on it.
func TestColumnsAreOnlyAnIndex(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	r := mustRequest(t, w)
	_, attacker, _ := seal.NewKey(seal.KEMX25519)
	// A superuser turns the append-only triggers off for its transaction.
	tx, err := w.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tx.Exec(ctx, "SET LOCAL session_replication_role = replica")
	if _, err := tx.Exec(ctx, `UPDATE access_requests SET conversation_ids = '{conv-secret}', recipient_kem_id = $2, recipient_public_key = $3,
		justification = 'nothing' WHERE request_id = $1`, r.ID, int(attacker.KEMID), attacker.PublicKey); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	got, _, err := w.svc.Get(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Scope.ConversationIDs, []string{ps("c1")}) || got.Recipient.Fingerprint() != r.Recipient.Fingerprint() || got.Justification != r.Justification {
		t.Fatalf("the service read the edited columns: %+v", got.Request)
	}
	ms, err := NewPGStore(w.pool, nil).Mismatches(ctx)
	if err != nil || len(ms) != 1 || ms[0].RequestID != r.ID ||
		!slices.Equal(ms[0].Fields, []string{"justification", "conversation_ids", "recipient_public_key"}) {
		t.Fatalf("mismatches: %+v %v", ms, err)
	}

	// The canonical bytes of another request, with its digest: the id
	// inside is not the row's, so nothing is approved on it.
	other := mustRequest(t, w)
	tx, _ = w.pool.Begin(ctx)
	tx.Exec(ctx, "SET LOCAL session_replication_role = replica")
	if _, err := tx.Exec(ctx, `UPDATE access_requests SET canonical = $2, digest = $3 WHERE request_id = $1`, r.ID, other.Canonical, other.Digest); err != nil {
		t.Fatal(err)
	}
	tx.Commit(ctx)
	if _, err := w.svc.Approve(ctx, "lena", r.ID, "approve", ed25519.Sign(w.keys["lena"], approval.Message(r.ID, other.Digest, "approve", "lena"))); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("an approval on a row with another request's canonical bytes: %v", err)
	}

	// A request's bytes swapped for a consistent one to the attacker's
	// key, columns and digest to match: no column differs from the bytes,
	// but the log holds what was filed, and Mismatches names the row.
	third := mustRequest(t, w)
	swapped := third.Request
	swapped.Recipient = attacker
	c, _ := swapped.Canonical()
	tx, _ = w.pool.Begin(ctx)
	tx.Exec(ctx, "SET LOCAL session_replication_role = replica")
	if _, err := tx.Exec(ctx, `UPDATE access_requests SET canonical = $2, digest = $3, recipient_kem_id = $4, recipient_public_key = $5 WHERE request_id = $1`,
		third.ID, c, approval.Digest(c), int(attacker.KEMID), attacker.PublicKey); err != nil {
		t.Fatal(err)
	}
	tx.Commit(ctx)
	ms, err = NewPGStore(w.pool, nil).Mismatches(ctx)
	var named []string
	for _, m := range ms {
		if m.RequestID == third.ID {
			named = m.Fields
		}
	}
	if err != nil || !slices.Equal(named, []string{"canonical (the log holds other bytes)", "digest (the log holds another)"}) {
		t.Fatalf("a consistent swap of a request's bytes: %+v %v", ms, err)
	}
	if err := w.vote(t, Request{Request: swapped, Digest: approval.Digest(c)}, "lena", "approve"); !errors.Is(err, ErrBadOfficerSignature) {
		t.Fatalf("an approval of the swapped request: %v", err)
	}
}

func mustRequest(t *testing.T, w *world) Request {
	t.Helper()
	d, _ := draft(t, w.clock.now(), "c1")
	r, err := w.file(context.Background(), "olga", d)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

package custodian_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/client"
	"github.com/mediatorhq/mediator/dev"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/wire"
)

// holdStatement is action on hold holdID of convo, signed by signers with
// their keys in f, carrying f's chain.
func (f *fixture) holdStatement(holdID, convo, action string, signers ...string) wire.SignedHold {
	h := wire.SignedHold{Roster: f.chain, HoldID: holdID, ConversationID: convo, Action: action}
	for _, id := range signers {
		h.Signatures = append(h.Signatures, wire.HoldSignature{SignerID: id, Signature: approval.SignHold(f.approvers[id], holdID, convo, action, id)})
	}
	return h
}

// TestSignedHolds: a hold placed at a custodian directly, with no
// credential and one officer's signature, keeps a share past its minimum
// retention from a destroy order; the mediator's token cannot lift it
// (403 hold_lift_needs_signatures), nor can one approver, an officer with
// an approver, a bad signature or a stranger; lena (legal) and sam
// (security) together, the roster's rule, lift it, and the destroy then
// proceeds. A custodian that was never told of the hold destroys at once:
// the record is each custodian's own.
func TestSignedHolds(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, dev.CustodianOptions{MinRetention: time.Nanosecond})
	id, receipts := f.deposit(t, "conv-held", "e1", bytes.Repeat([]byte{5}, 32))
	c := f.set.Custodians[0]
	holdID := uuid.NewString()
	var e *client.Error
	refused := func(name string, h wire.SignedHold, status int, code string) {
		t.Helper()
		if _, err := client.SendSignedHold(ctx, nil, c.URL, h); !errors.As(err, &e) || e.Status != status || e.Code != code {
			t.Errorf("%s: %v, want %d %s", name, err, status, code)
		}
	}

	// Placements refused: nothing recorded.
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	f.approvers["zed"] = stranger
	forged := f.holdStatement(holdID, "conv-held", approval.HoldPlace, "olga")
	forged.Signatures[0].Signature = approval.SignHold(f.approvers["lena"], holdID, "conv-held", approval.HoldPlace, "olga")
	refused("a placement signed with lena's key as olga", forged, 422, "hold_bad_signature")
	refused("a placement by a stranger", f.holdStatement(holdID, "conv-held", approval.HoldPlace, "zed"), 422, "hold_not_member")
	refused("a placement with no signature", f.holdStatement(holdID, "conv-held", approval.HoldPlace), 422, "hold_not_valid")
	refused("a lift of a hold never placed", f.holdStatement(holdID, "conv-held", approval.HoldLift, "lena", "sam"), 404, "hold_unknown")
	noChain := f.holdStatement(holdID, "conv-held", approval.HoldPlace, "olga")
	noChain.Roster = nil
	refused("a placement with no roster chain", noChain, 422, "roster_missing")
	og := f.set.Genesis()
	og.Threshold = 2
	other := f.holdStatement(holdID, "conv-held", approval.HoldPlace, "olga")
	other.Roster = []roster.Signed{f.signed(t, og, "lena", "sam")}
	refused("a placement with a chain from another genesis", other, 422, "roster_unverified")
	if res, _ := f.remotes[0].Destroy(ctx, ref(id, receipts, 0)); res[0].Outcome != "destroyed" {
		t.Fatalf("no hold was recorded, yet: %+v", res)
	}

	// olga, an officer, places the hold at custodian 2 directly.
	c = f.set.Custodians[1]
	rec, err := client.SendSignedHold(ctx, nil, c.URL, f.holdStatement(holdID, "conv-held", approval.HoldPlace, "olga"))
	if err != nil || rec.Status != "recorded" || rec.HoldID != holdID || rec.ConversationID != "conv-held" || rec.Action != "place" ||
		len(rec.Signers) != 1 || rec.Signers[0] != "olga" || rec.RosterVersion != 1 || rec.Custodian != "custodian-2" {
		t.Fatalf("olga's placement: %+v %v", rec, err)
	}
	if again, err := client.SendSignedHold(ctx, nil, c.URL, f.holdStatement(holdID, "conv-held", approval.HoldPlace, "olga")); err != nil ||
		again.Status != "already_recorded" || !again.RecordedAt.Equal(rec.RecordedAt) {
		t.Errorf("olga's placement again: %+v %v", again, err)
	}
	refused("the same hold id for another conversation", f.holdStatement(holdID, "conv-other", approval.HoldPlace, "olga"), 409, "hold_conflict")
	if res, _ := f.remotes[1].Destroy(ctx, ref(id, receipts, 1)); res[0].Outcome != "held" {
		t.Fatalf("destroy under a signed hold: %+v", res)
	}

	// The mediator's token alone cannot lift it.
	req, _ := http.NewRequest(http.MethodPost, c.URL+"/v1/holds", strings.NewReader(`{"hold_id":"`+holdID+`","conversation_id":"conv-held","released":true}`))
	req.Header.Set("Authorization", "Bearer "+c.MediatorToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var env struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&env)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || env.Error.Code != "hold_lift_needs_signatures" {
		t.Errorf("a lift with the mediator's token: %d %s", resp.StatusCode, env.Error.Code)
	}

	// Lifts that do not meet the rule, or do not verify.
	refused("a lift by lena alone", f.holdStatement(holdID, "conv-held", approval.HoldLift, "lena"), 403, "hold_lift_rule_unmet")
	refused("a lift by lena twice", f.holdStatement(holdID, "conv-held", approval.HoldLift, "lena", "lena"), 403, "hold_lift_rule_unmet")
	refused("a lift by lena and the officer", f.holdStatement(holdID, "conv-held", approval.HoldLift, "lena", "olga"), 422, "hold_not_approver")
	refused("a lift by lena and a stranger", f.holdStatement(holdID, "conv-held", approval.HoldLift, "lena", "zed"), 422, "hold_not_approver")
	placeSigs := f.holdStatement(holdID, "conv-held", approval.HoldPlace, "lena", "sam")
	placeSigs.Action = approval.HoldLift
	refused("placement signatures offered as a lift", placeSigs, 422, "hold_bad_signature")
	refused("a lift naming another conversation", f.holdStatement(holdID, "conv-other", approval.HoldLift, "lena", "sam"), 409, "hold_conflict")
	if res, _ := f.remotes[1].Destroy(ctx, ref(id, receipts, 1)); res[0].Outcome != "held" {
		t.Fatalf("destroy after refused lifts: %+v", res)
	}

	// A body past the bound is refused before anything is verified.
	resp, err = http.Post(c.URL+"/v1/holds/signed", "application/json", bytes.NewReader(append(bytes.Repeat([]byte(" "), 6<<20), '{', '}')))
	if err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("a 6 MiB hold: %v %v", resp, err)
	}
	if resp != nil {
		resp.Body.Close()
	}

	// lena (legal) and sam (security): the rule. The destroy proceeds.
	lift, err := client.SendSignedHold(ctx, nil, c.URL, f.holdStatement(holdID, "conv-held", approval.HoldLift, "lena", "sam"))
	if err != nil || lift.Status != "recorded" || lift.Action != "lift" || strings.Join(lift.Signers, ",") != "lena,sam" {
		t.Fatalf("lena's and sam's lift: %+v %v", lift, err)
	}
	if again, err := client.SendSignedHold(ctx, nil, c.URL, f.holdStatement(holdID, "conv-held", approval.HoldLift, "sam", "lena")); err != nil ||
		again.Status != "already_recorded" {
		t.Errorf("the lift again: %+v %v", again, err)
	}
	if res, _ := f.remotes[1].Destroy(ctx, ref(id, receipts, 1)); res[0].Outcome != "destroyed" {
		t.Fatalf("destroy after the lift: %+v", res)
	}
	// What custodian-2's operator sees: each statement counted by action
	// and outcome.
	for _, want := range []struct {
		action, outcome string
		atLeast         float64
	}{{"lift", "recorded", 1}, {"lift", "already_recorded", 1}, {"lift", "refused", 1}} {
		if got := f.set.Counter(1, "mediator_custodian_signed_holds_total", want.action, want.outcome); got < want.atLeast {
			t.Errorf("mediator_custodian_signed_holds_total{action=%q,outcome=%q} = %v", want.action, want.outcome, got)
		}
	}
}

package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mediatorhq/mediator/escrow"
	"github.com/mediatorhq/mediator/wire"
)

// liftedHold is what the chapter of a hold the mediator lifts needs from
// TestCompromisedMediator.
type liftedHold struct {
	in         *instance
	genesis    string
	remotes    []*escrow.Remote // the custodians, as the mediator calls them
	secretRefs [5]wire.ShareRef
}

// chapterLiftedHold, after the withheld veto (version 4: kim and vic for
// legal, sam for security): the mediator places a hold on the secret
// conversation at every custodian with its token, then lifts it with its
// token alone: refused by 5 of 5 (hold_lift_needs_signatures), and each
// custodian answers a destroy order for its share of the secret "held".
// kim alone signs a lift: every custodian refuses it
// (hold_lift_rule_unmet). kim (legal) and sam (security) sign it with
// `mediator escrow hold-sign` and deliver it with `escrow hold-deliver`:
// 5 of 5 record it, and no custodian answers "held" any more.
func chapterLiftedHold(t *testing.T, s liftedHold) {
	ctx := context.Background()
	tok := func(sub string, roles ...string) string { v, _ := s.in.issuer.Issue(sub, roles, time.Hour); return v }
	hold := uuid.NewString()
	for i, r := range s.remotes {
		if err := r.Hold(ctx, wire.Hold{HoldID: hold, ConversationID: conv("conv-secret")}); err != nil {
			t.Fatalf("the mediator places the hold at custodian %d: %v", i+1, err)
		}
	}
	refused := 0
	for i, r := range s.remotes {
		err := r.Hold(ctx, wire.Hold{HoldID: hold, ConversationID: conv("conv-secret"), Released: true})
		if err != nil && strings.Contains(err.Error(), "hold_lift_needs_signatures") {
			refused++
		} else {
			t.Errorf("custodian %d, asked by the mediator's token to lift the hold: %v", i+1, err)
		}
	}
	if refused != 5 {
		t.Fatalf("the mediator's lift refused by %d of 5", refused)
	}
	destroy := func(want func(string) bool, what string) {
		t.Helper()
		for i, r := range s.remotes {
			res, err := r.Destroy(ctx, []wire.ShareRef{s.secretRefs[i]})
			if err != nil || !want(res[0].Outcome) {
				t.Errorf("custodian %d, ordered to destroy its share of the secret %s: %+v %v", i+1, what, res, err)
			}
		}
	}
	destroy(func(o string) bool { return o == "held" }, "after the mediator's lift")

	dir := t.TempDir()
	sign := func(who string) string {
		t.Helper()
		keyFile := filepath.Join(dir, who+".key")
		kb, _ := json.Marshal(map[string]any{"type": "mediator-approver-key-v1", "private_key": e2eApproverKey(who).Seed()})
		if err := os.WriteFile(keyFile, kb, 0o600); err != nil {
			t.Fatal(err)
		}
		stdout, stderr, err := runCmd(t, nil, "escrow", "hold-sign", "--action", "lift", "--hold-id", hold, "--conversation", conv("conv-secret"),
			"--key", keyFile, "--as", who)
		if err != nil {
			t.Fatalf("%s signs the lift: %v\n%s\n%s", who, err, stdout, stderr)
		}
		return stdout
	}
	deliver := func(lines string) (string, string, error) {
		t.Helper()
		f := filepath.Join(dir, "lift.sigs")
		if err := os.WriteFile(f, []byte(lines), 0o600); err != nil {
			t.Fatal(err)
		}
		env := []string{"MEDIATOR_URL=" + s.in.base, "MEDIATOR_TOKEN=" + tok("kim", "approver"), "MEDIATOR_ROSTER_GENESIS=" + s.genesis}
		return runCmd(t, env, "escrow", "hold-deliver", "--action", "lift", "--hold-id", hold, "--conversation", conv("conv-secret"), "--signatures", f, "--yes")
	}
	kim := sign("kim")
	stdout, stderr, err := deliver(kim)
	if err == nil || !strings.Contains(stdout, "0 of 5 custodians hold the lift") || strings.Count(stderr, "hold_lift_rule_unmet") != 5 {
		t.Errorf("kim's lift alone: %v\n%s\n%s", err, stdout, stderr)
	}
	destroy(func(o string) bool { return o == "held" }, "after kim's lift alone")

	stdout, stderr, err = deliver(kim + sign("sam"))
	if err != nil || !strings.Contains(stdout, "5 of 5 custodians hold the lift") || strings.Contains(stderr, "WARNING") {
		t.Fatalf("kim's and sam's lift: %v\n%s\n%s", err, stdout, stderr)
	}
	destroy(func(o string) bool { return o != "held" }, "after kim's and sam's lift")
}

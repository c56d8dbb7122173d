package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/wire"
)

// TestHoldSignAndDeliver: hold-sign prints a line that verifies over the
// hold statement with the signer's key; the lines parse back for the same
// statement only; a delivery posts them with no credential to each
// custodian URL once, and a custodian that refuses is a WARNING with its
// code, counted as not recorded.
func TestHoldSignAndDeliver(t *testing.T) {
	file, pub, err := approval.NewSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(t.TempDir(), "lena.key")
	os.WriteFile(keyPath, file, 0o600)
	hold := uuid.NewString()
	_, stdout, _, err := runArgs([]string{"escrow", "hold-sign", "--hold-id", hold, "--conversation", "conv-a", "--action", "lift", "--key", keyPath, "--as", "lena"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sigs, err := parseHoldSignatures(strings.NewReader("# lena\n"+stdout), hold, "conv-a", approval.HoldLift)
	if err != nil || len(sigs) != 1 || sigs[0].SignerID != "lena" ||
		!approval.VerifyHold(pub, hold, "conv-a", approval.HoldLift, "lena", sigs[0].Signature) {
		t.Fatalf("the printed line %q: %+v %v", stdout, sigs, err)
	}
	for _, other := range [][3]string{{uuid.NewString(), "conv-a", "lift"}, {hold, "conv-b", "lift"}, {hold, "conv-a", "place"}} {
		if _, err := parseHoldSignatures(strings.NewReader(stdout), other[0], other[1], other[2]); err == nil {
			t.Errorf("lena's line parsed for %v", other)
		}
	}

	answer := func(status int, body string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodPost || r.URL.Path != "/v1/holds/signed" || r.Header.Get("Authorization") != "" {
				t.Errorf("delivery: %s %s with Authorization %q", r.Method, r.URL.Path, r.Header.Get("Authorization"))
			}
			w.WriteHeader(status)
			w.Write([]byte(body))
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	ok := answer(200, `{"custodian":"custodian-1","status":"recorded","hold_id":"`+hold+`","conversation_id":"conv-a","action":"lift","signers":["lena","sam"],"roster_version":1}`)
	unmet := answer(403, `{"error":{"code":"hold_lift_rule_unmet","message":"missing: an approver with the security role","details":[]}}`)
	versions := []roster.Roster{{Version: 1, Custodians: []roster.Custodian{{Name: "custodian-1", URL: ok}, {Name: "custodian-2", URL: unmet}}},
		{Version: 2, Custodians: []roster.Custodian{{Name: "custodian-1", URL: ok}}}}
	var out, errs bytes.Buffer
	h := wire.SignedHold{HoldID: hold, ConversationID: "conv-a", Action: approval.HoldLift, Signatures: sigs}
	recorded, targets := deliverSignedHold(context.Background(), &out, &errs, versions, h)
	if recorded != 1 || targets != 2 {
		t.Errorf("recorded %d of %d, want 1 of 2", recorded, targets)
	}
	if !strings.Contains(out.String(), "custodian custodian-1 ("+ok+") holds the lift of hold "+hold+" (signed by lena, sam, roster version 1)") ||
		!strings.Contains(errs.String(), "WARNING: custodian custodian-2 ("+unmet+") did not record the lift") ||
		!strings.Contains(errs.String(), "hold_lift_rule_unmet") {
		t.Errorf("stdout:\n%s\nstderr:\n%s", out.String(), errs.String())
	}
}

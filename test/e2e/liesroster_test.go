package e2e

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/seal"
	"github.com/mediatorhq/mediator/wire"
)

// hostLiesAboutARosterProposal is a chapter of TestCompromisedMediator,
// played on top of the roster in force (version 2, as genesis lists it):
// the admin files, with the real API, a version that adds an approver
// kim and gives every custodian other keys. The host, a proxy in front
// of the real mediator, describes it to lena as only "adds approver kim".
// lena's `mediator roster sign`, run without a terminal, works the
// changes out from the signed bytes: it prints every custodian's old and
// new keys by full fingerprints, flags the lie, and signs nothing; the
// real mediator holds no signature of hers. Without the lie, `roster
// show` finds the mediator's description equal to its own.
func hostLiesAboutARosterProposal(in *instance, genesisDigest string, lenaKey ed25519.PrivateKey) func(t *testing.T) {
	return func(t *testing.T) {
		ctx := context.Background()
		tok := func(sub string, roles ...string) string { s, _ := in.issuer.Issue(sub, roles, time.Hour); return s }
		adminClient, _ := newClient(in.base, tok("ada", "admin"), http.DefaultClient)
		cur := in.genesis // version 2 lists what the genesis lists

		kimKey, _, _ := ed25519.GenerateKey(nil)
		draft := wire.RosterDraft{Approvers: append(slices.Clone(cur.Approvers), roster.Approver{ID: "kim", Roles: []string{"security"}, PublicKey: kimKey}),
			Custodians: slices.Clone(cur.Custodians), Threshold: cur.Threshold, Rule: cur.Rule}
		for i := range draft.Custodians {
			_, hpkeKey, err := seal.NewKey(seal.KEMX25519)
			if err != nil {
				t.Fatal(err)
			}
			signingKey, _, _ := ed25519.GenerateKey(nil)
			draft.Custodians[i].HPKEKey, draft.Custodians[i].SigningKey = hpkeKey, signingKey
		}
		p, err := adminClient.ProposeRoster(ctx, draft)
		if err != nil || p.Version != 3 {
			t.Fatalf("the admin's proposal: version %d, %v", p.Version, err)
		}

		host := lyingHost(t, in.base, func(r *http.Request, status int, body []byte) (int, []byte) {
			if r.Method != http.MethodGet || r.URL.Path != "/v1/roster/proposals/"+p.Digest || status != http.StatusOK {
				return status, body
			}
			var fields map[string]json.RawMessage
			if err := json.Unmarshal(body, &fields); err != nil {
				return status, body
			}
			fields["changes"], _ = json.Marshal([]string{"adds approver kim"})
			lie, _ := json.Marshal(fields)
			return status, lie
		})
		keyFile := filepath.Join(t.TempDir(), "lena.key")
		b, _ := json.Marshal(map[string]any{"type": "mediator-approver-key-v1", "private_key": lenaKey.Seed()})
		if err := os.WriteFile(keyFile, b, 0o600); err != nil {
			t.Fatal(err)
		}
		as := func(base string) []string {
			return []string{"MEDIATOR_URL=" + base, "MEDIATOR_TOKEN=" + tok("lena", "approver"), "MEDIATOR_ROSTER_GENESIS=" + genesisDigest}
		}

		_, stderr, err := runCmd(t, as(host.URL), "roster", "sign", p.Digest, "--key", keyFile)
		if err == nil || !strings.Contains(stderr, "not confirmed: nothing was signed") {
			t.Fatalf("roster sign without a terminal or --yes: %v\n%s", err, stderr)
		}
		for i, c := range draft.Custodians {
			old := cur.Custodians[i]
			for _, want := range []string{
				"changes custodian " + c.Name + "'s hpke key: " + old.HPKEKey.Fingerprint() + " → " + c.HPKEKey.Fingerprint(),
				"changes custodian " + c.Name + "'s signing key: " + roster.KeyFingerprint(old.SigningKey) + " → " + roster.KeyFingerprint(c.SigningKey),
			} {
				if !strings.Contains(stderr, want) {
					t.Errorf("lena was not shown %q:\n%s", want, stderr)
				}
			}
		}
		if !strings.Contains(stderr, "adds approver kim: roles security, key "+roster.KeyFingerprint(kimKey)) {
			t.Errorf("lena was not shown kim's key:\n%s", stderr)
		}
		if !strings.Contains(stderr, "WARNING: the mediator describes this proposal differently from what its signed bytes say") ||
			!strings.Contains(stderr, "the mediator says:\n    adds approver kim\n") {
			t.Errorf("the lie is not flagged:\n%s", stderr)
		}
		got, err := adminClient.RosterProposal(ctx, p.Digest)
		if err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(got.Signatures, func(s roster.Signature) bool { return s.ApproverID == "lena" }) || got.Status != "awaiting_signatures" {
			t.Fatalf("the mediator holds a signature of lena's: %+v", got.Signatures)
		}

		// roster show through the host flags the lie and exits non-zero;
		// against the mediator itself, its description is the one worked
		// out from the bytes.
		if out, _, err := runCmd(t, as(host.URL), "roster", "show", p.Digest); err == nil || !strings.Contains(out, "WARNING: the mediator describes") {
			t.Errorf("roster show through the lying host: %v\n%s", err, out)
		}
		if out, stderr, err := runCmd(t, as(in.base), "roster", "show", p.Digest); err != nil || strings.Contains(out, "WARNING") ||
			!strings.Contains(out, "status     awaiting signatures") {
			t.Errorf("roster show against the honest mediator: %v\n%s\n%s", err, out, stderr)
		}
	}
}

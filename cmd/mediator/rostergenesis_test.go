package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/mediatorhq/mediator/roster"
)

// TestRosterGenesisReadAloud: roster genesis prints only the digest on
// stdout (scripts capture it) and, on stderr, every entry with short
// fingerprints of its keys, the threshold, the rule and the log.
func TestRosterGenesisReadAloud(t *testing.T) {
	fd := newFoundingDraft(t, t.TempDir(), true)
	r := draftGenesis(fd.draft)
	digest, _ := r.Digest()
	_, stdout, stderr, err := runArgs([]string{"roster", "genesis", "--file", fd.path}, nil)
	if err != nil || stdout != digest+"\n" {
		t.Fatalf("%v stdout %q, want the digest alone", err, stdout)
	}
	short := regexp.MustCompile(`^[a-z0-9]+:[0-9a-f]{4} [0-9a-f]{4} [0-9a-f]{4} [0-9a-f]{4}$`)
	lena, _ := r.Approver("lena")
	want := []string{
		"approver   lena  roles legal  key " + shortFingerprint(lena.Fingerprint()),
		"officer    ola  key ",
		"custodian  1 acme-legal  https://acme-legal.example:8443  hpke " + shortFingerprint(r.Custodians[0].HPKEKey.Fingerprint()) +
			"  signing " + shortFingerprint(roster.KeyFingerprint(r.Custodians[0].SigningKey)),
		"custodian  3 gamma-ops",
		"threshold  2 of 3 custodians",
		"rule       2 signers covering legal,security",
		"log        mediator.example/audit  key " + shortFingerprint(roster.VerifierKeyFingerprint(fd.logVerifier)),
		"pseudonym  none named",
	}
	for _, w := range want {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, stderr)
		}
	}
	for _, fp := range []string{shortFingerprint(lena.Fingerprint()), shortFingerprint(roster.VerifierKeyFingerprint(fd.logVerifier))} {
		if !short.MatchString(fp) {
			t.Errorf("short fingerprint %q", fp)
		}
	}
}

package roster

import (
	"crypto/ed25519"
	"crypto/rand"
	"regexp"
	"slices"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/mediatorhq/mediator/pseudonym"
	"github.com/mediatorhq/mediator/seal"
	"github.com/mediatorhq/mediator/witness"
)

// fullFingerprint is a key fingerprint as people compare them: the whole
// SHA-256, never a prefix.
var fullFingerprint = regexp.MustCompile(`^(ed25519|sha256):[0-9a-f]{64}$`)

// wantChanges checks that Changes(prev, next) is exactly want, line for
// line.
func wantChanges(t *testing.T, prev *Roster, next Roster, want ...string) {
	t.Helper()
	got := Changes(prev, next)
	if !slices.Equal(got, want) {
		t.Errorf("changes:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// withCustodians is next with its own copy of the custodians, to edit.
func withCustodians(f fixture, edit func(*Roster)) Roster {
	return f.next(f.genesis, func(r *Roster) {
		r.Custodians = append([]Custodian(nil), r.Custodians...)
		edit(r)
	})
}

func TestChangesOfApprovers(t *testing.T) {
	f := newFixture(t)
	n := f.next(f.genesis, func(r *Roster) {
		r.Approvers = append(r.Approvers[1:], f.kim.approver())
		r.Threshold = 3
	})
	wantChanges(t, &f.genesis, n,
		"adds approver kim: roles security, key "+f.kim.approver().Fingerprint(),
		"removes approver lena (roles legal, key "+f.lena.approver().Fingerprint()+")",
		"threshold: 2 of 3 custodians → 3 of 3 custodians",
		"rule: 2 signers covering legal,security, unchanged")

	rekeyed := newPerson(t, "sam", "legal", "security")
	n = f.next(f.genesis, func(r *Roster) { r.Approvers[1] = rekeyed.approver() })
	wantChanges(t, &f.genesis, n,
		"changes approver sam's roles: security → legal,security",
		"re-keys approver sam: "+f.sam.approver().Fingerprint()+" → "+rekeyed.approver().Fingerprint(),
		"threshold: 2 of 3 custodians, unchanged",
		"rule: 2 signers covering legal,security, unchanged")

	n = f.next(f.genesis, func(r *Roster) { r.Approvers[0], r.Approvers[2] = r.Approvers[2], r.Approvers[0] })
	wantChanges(t, &f.genesis, n,
		"lists the approvers and officers in another order: lena, sam, ola → ola, sam, lena (the order decides nothing)",
		"threshold: 2 of 3 custodians, unchanged",
		"rule: 2 signers covering legal,security, unchanged")
}

// TestChangesOfOfficers: officers are named officers, whether added,
// re-keyed, removed or made from an approver.
func TestChangesOfOfficers(t *testing.T) {
	f := newFixture(t)
	olga := newPerson(t, "olga", RoleOfficer)
	withOlga := f.next(f.genesis, func(r *Roster) { r.Approvers = append(r.Approvers, olga.approver()) })
	wantChanges(t, &f.genesis, withOlga,
		"adds officer olga: roles officer, key "+olga.approver().Fingerprint(),
		"threshold: 2 of 3 custodians, unchanged",
		"rule: 2 signers covering legal,security, unchanged")

	olga2 := newPerson(t, "olga", RoleOfficer)
	n := f.next(withOlga, func(r *Roster) { r.Approvers[3] = olga2.approver() })
	wantChanges(t, &withOlga, n,
		"re-keys officer olga: "+olga.approver().Fingerprint()+" → "+olga2.approver().Fingerprint(),
		"threshold: 2 of 3 custodians, unchanged",
		"rule: 2 signers covering legal,security, unchanged")

	n = f.next(withOlga, func(r *Roster) { r.Approvers = r.Approvers[:3] })
	wantChanges(t, &withOlga, n,
		"removes officer olga (roles officer, key "+olga.approver().Fingerprint()+")",
		"threshold: 2 of 3 custodians, unchanged",
		"rule: 2 signers covering legal,security, unchanged")

	n = f.next(withOlga, func(r *Roster) { r.Approvers[0].Roles = []string{RoleOfficer} })
	wantChanges(t, &withOlga, n,
		"changes approver lena's roles: legal → officer (the approver becomes an officer)",
		"threshold: 2 of 3 custodians, unchanged",
		"rule: 2 signers covering legal,security, unchanged")
}

// TestChangesOfCustodians: a custodian's keys, URL and place (share i
// goes to custodian i) are each named, keys by full fingerprints.
func TestChangesOfCustodians(t *testing.T) {
	f := newFixture(t)
	old := f.genesis.Custodians[1]
	_, hpkeKey, err := seal.NewKey(seal.KEMX25519)
	if err != nil {
		t.Fatal(err)
	}
	signingKey, _, _ := ed25519.GenerateKey(rand.Reader)
	swapped := withCustodians(f, func(r *Roster) { r.Custodians[1].HPKEKey, r.Custodians[1].SigningKey = hpkeKey, signingKey })
	wantChanges(t, &f.genesis, swapped,
		"changes custodian b's hpke key: "+old.HPKEKey.Fingerprint()+" → "+hpkeKey.Fingerprint(),
		"changes custodian b's signing key: "+KeyFingerprint(old.SigningKey)+" → "+KeyFingerprint(signingKey),
		"threshold: 2 of 3 custodians, unchanged",
		"rule: 2 signers covering legal,security, unchanged")
	for _, fp := range []string{old.HPKEKey.Fingerprint(), hpkeKey.Fingerprint(), KeyFingerprint(signingKey), f.kim.approver().Fingerprint()} {
		if !fullFingerprint.MatchString(fp) {
			t.Errorf("fingerprint %q is not a full SHA-256", fp)
		}
	}

	moved := withCustodians(f, func(r *Roster) { r.Custodians[1].URL = "https://b.example/" })
	wantChanges(t, &f.genesis, moved,
		"changes custodian b's url: http://127.0.0.1:1/ → https://b.example/",
		"threshold: 2 of 3 custodians, unchanged",
		"rule: 2 signers covering legal,security, unchanged")

	reordered := withCustodians(f, func(r *Roster) { r.Custodians[0], r.Custodians[1] = r.Custodians[1], r.Custodians[0] })
	wantChanges(t, &f.genesis, reordered,
		"moves custodian b from share 2 to share 1",
		"moves custodian a from share 1 to share 2",
		"threshold: 2 of 3 custodians, unchanged",
		"rule: 2 signers covering legal,security, unchanged")

	// Removing the first custodian moves the others up a share.
	a := f.genesis.Custodians[0]
	removed := withCustodians(f, func(r *Roster) { r.Custodians = r.Custodians[1:] })
	wantChanges(t, &f.genesis, removed,
		"moves custodian b from share 2 to share 1",
		"moves custodian c from share 3 to share 2",
		"removes custodian a (share 1, url http://127.0.0.1:1/, hpke key "+a.HPKEKey.Fingerprint()+", signing key "+KeyFingerprint(a.SigningKey)+")",
		"threshold: 2 of 3 custodians → 2 of 2 custodians",
		"rule: 2 signers covering legal,security, unchanged")

	d := custodians(t, 4)[3]
	added := withCustodians(f, func(r *Roster) { r.Custodians = append(r.Custodians, d) })
	wantChanges(t, &f.genesis, added,
		"adds custodian d as share 4: url http://127.0.0.1:1/, hpke key "+d.HPKEKey.Fingerprint()+", signing key "+KeyFingerprint(d.SigningKey),
		"threshold: 2 of 3 custodians → 2 of 4 custodians",
		"rule: 2 signers covering legal,security, unchanged")
}

// TestChangesOfThresholdAndRule: both are always named, changed or not.
func TestChangesOfThresholdAndRule(t *testing.T) {
	f := newFixture(t)
	wantChanges(t, &f.genesis, f.next(f.genesis, func(*Roster) {}),
		"threshold: 2 of 3 custodians, unchanged",
		"rule: 2 signers covering legal,security, unchanged")
	n := f.next(f.genesis, func(r *Roster) {
		r.Threshold = 3
		r.Rule = Rule{MinSigners: 3, RequiredRoles: []string{"legal"}}
	})
	wantChanges(t, &f.genesis, n,
		"threshold: 2 of 3 custodians → 3 of 3 custodians",
		"rule: 2 signers covering legal,security → 3 signers covering legal")

	got := Changes(nil, f.genesis)
	want := []string{"genesis: the first version",
		"adds approver lena: roles legal, key " + f.lena.approver().Fingerprint(),
		"adds approver sam: roles security, key " + f.sam.approver().Fingerprint(),
		"adds approver ola: roles legal,security, key " + f.ola.approver().Fingerprint()}
	if !slices.Equal(got[:4], want) || got[len(got)-2] != "threshold: 2 of 3 custodians" || got[len(got)-1] != "rule: 2 signers covering legal,security" {
		t.Errorf("the genesis's changes: %q", got)
	}
}

// TestPseudonymService: a version may name the pseudonym service, with
// the key in force and at most the one it replaces, at an https URL (or
// loopback http); its changes are listed with every key in full; a
// version without it keeps the digest it had before the field existed.
func TestPseudonymService(t *testing.T) {
	f := newFixture(t)
	key := func() string {
		k, err := pseudonym.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		return k.Public().String()
	}
	k1, k2 := key(), key()
	c, err := f.genesis.Canonical()
	if err != nil || strings.Contains(string(c), "pseudonym") {
		t.Fatalf("a version without the service names it: %s %v", c, err)
	}
	with := f.next(f.genesis, func(r *Roster) {
		r.Pseudonym = &PseudonymService{URL: "https://pseudonyms.custodian-1.example", PublicKeys: []string{k1}}
	})
	if err := with.Validate(); err != nil {
		t.Fatal(err)
	}
	wantChanges(t, &f.genesis, with,
		"adds the pseudonym service: url https://pseudonyms.custodian-1.example, keys "+k1,
		"threshold: 2 of 3 custodians, unchanged",
		"rule: 2 signers covering legal,security, unchanged")
	rotated := f.next(with, func(r *Roster) {
		r.Pseudonym = &PseudonymService{URL: r.Pseudonym.URL, PublicKeys: []string{k2, k1}}
	})
	wantChanges(t, &with, rotated,
		"changes the pseudonym service's keys: "+k1+" → "+k2+", "+k1,
		"threshold: 2 of 3 custodians, unchanged",
		"rule: 2 signers covering legal,security, unchanged")
	keys, err := rotated.Pseudonym.Keys()
	if err != nil || len(keys) != 2 || keys[0].String() != k2 {
		t.Fatalf("keys: %v %v", keys, err)
	}
	for name, p := range map[string]PseudonymService{
		"plain http off loopback": {URL: "http://pseudonyms.example", PublicKeys: []string{k1}},
		"no key":                  {URL: "https://p.example"},
		"three keys":              {URL: "https://p.example", PublicKeys: []string{k1, k2, key()}},
		"one key twice":           {URL: "https://p.example", PublicKeys: []string{k1, k1}},
		"not a key":               {URL: "https://p.example", PublicKeys: []string{"voprf-ristretto255-sha512:AAAA"}},
	} {
		bad := f.next(f.genesis, func(r *Roster) { r.Pseudonym = &p })
		if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "pseudonym service") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestAuditLog: a version may name the audit log, by its origin and its
// checkpoints' note verifier keys, each named by the origin; its changes
// are listed with every key in full; a version without it keeps the
// digest it had before the field existed, and parses after a round trip.
func TestAuditLog(t *testing.T) {
	f := newFixture(t)
	key := func(name string) string {
		_, vkey, err := note.GenerateKey(rand.Reader, name)
		if err != nil {
			t.Fatal(err)
		}
		return vkey
	}
	k1, k2 := key("mediator/audit"), key("mediator/audit")
	c, err := f.genesis.Canonical()
	if err != nil || strings.Contains(string(c), `"log"`) {
		t.Fatalf("a version without the log names it: %s %v", c, err)
	}
	with := f.next(f.genesis, func(r *Roster) { r.Log = &AuditLog{Origin: "mediator/audit", VerifierKeys: []string{k1}} })
	if err := with.Validate(); err != nil {
		t.Fatal(err)
	}
	canonical, err := with.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	if back, err := Parse(canonical); err != nil || back.Log == nil || back.Log.VerifierKeys[0] != k1 {
		t.Fatalf("parse: %+v %v", back.Log, err)
	}
	wantChanges(t, &f.genesis, with,
		"adds the audit log: origin mediator/audit, verifier keys "+k1,
		"threshold: 2 of 3 custodians, unchanged",
		"rule: 2 signers covering legal,security, unchanged")
	rotated := f.next(with, func(r *Roster) { r.Log = &AuditLog{Origin: "mediator/audit", VerifierKeys: []string{k2, k1}} })
	wantChanges(t, &with, rotated,
		"changes the audit log's verifier keys: "+k1+" → "+k2+", "+k1,
		"threshold: 2 of 3 custodians, unchanged",
		"rule: 2 signers covering legal,security, unchanged")
	// Half of all keys have a + in their base64: each is read whole.
	for range 32 {
		if k := key("mediator/audit"); !fullFingerprint.MatchString(VerifierKeyFingerprint(k)) {
			t.Fatalf("fingerprint of %s: %q", k, VerifierKeyFingerprint(k))
		}
	}
	for name, l := range map[string]AuditLog{
		"no key":            {Origin: "mediator/audit"},
		"another name":      {Origin: "mediator/audit", VerifierKeys: []string{key("other/audit")}},
		"one key twice":     {Origin: "mediator/audit", VerifierKeys: []string{k1, k1}},
		"not a key":         {Origin: "mediator/audit", VerifierKeys: []string{"mediator/audit+0000"}},
		"no origin":         {VerifierKeys: []string{k1}},
		"a cosignature key": {Origin: "custodian-1", VerifierKeys: []string{cosignatureKey(t, "custodian-1")}},
		"more than MaxLogKeys": {Origin: "mediator/audit", VerifierKeys: func() []string {
			var ks []string
			for range MaxLogKeys + 1 {
				ks = append(ks, key("mediator/audit"))
			}
			return ks
		}()},
	} {
		bad := f.next(f.genesis, func(r *Roster) { r.Log = &l })
		if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "log:") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// cosignatureKey is a witness's cosignature/v1 verifier key, which is no
// checkpoint key.
func cosignatureKey(t *testing.T, name string) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	vkey, err := witness.VerifierKey(name, pub)
	if err != nil {
		t.Fatal(err)
	}
	return vkey
}

package roster

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/seal"
)

type person struct {
	id    string
	roles []string
	priv  ed25519.PrivateKey
}

func newPerson(t *testing.T, id string, roles ...string) person {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return person{id, roles, priv}
}

func (p person) approver() Approver {
	return Approver{ID: p.id, Roles: p.roles, PublicKey: p.priv.Public().(ed25519.PublicKey)}
}

func custodians(t *testing.T, n int) []Custodian {
	t.Helper()
	out := make([]Custodian, n)
	for i := range out {
		_, pub, err := seal.NewKey(seal.KEMX25519)
		if err != nil {
			t.Fatal(err)
		}
		sk, _, _ := ed25519.GenerateKey(rand.Reader)
		out[i] = Custodian{Name: string(rune('a' + i)), URL: "http://127.0.0.1:1/", HPKEKey: pub, SigningKey: sk}
	}
	return out
}

func sign(t *testing.T, r Roster, ps ...person) Signed {
	t.Helper()
	c, err := r.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	s := Signed{Roster: c}
	for _, p := range ps {
		s.Signatures = append(s.Signatures, Sign(p.priv, Digest(c), p.id))
	}
	return s
}

type fixture struct {
	lena, sam, ola, kim person
	genesis             Roster
	genesisDigest       string
}

func newFixture(t *testing.T) fixture {
	f := fixture{lena: newPerson(t, "lena", "legal"), sam: newPerson(t, "sam", "security"), ola: newPerson(t, "ola", "legal", "security"),
		kim: newPerson(t, "kim", "security")}
	f.genesis = Roster{Version: 1, Approvers: []Approver{f.lena.approver(), f.sam.approver(), f.ola.approver()},
		Custodians: custodians(t, 3), Threshold: 2, Rule: DefaultRule()}
	var err error
	if f.genesisDigest, err = f.genesis.Digest(); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f fixture) next(prev Roster, edit func(*Roster)) Roster {
	n := prev
	n.Approvers = append([]Approver(nil), prev.Approvers...)
	n.Version, n.Previous = prev.Version+1, mustDigest(prev)
	edit(&n)
	return n
}

func mustDigest(r Roster) string {
	d, err := r.Digest()
	if err != nil {
		panic(err)
	}
	return d
}

func TestChainAdoptsOnlyWithQuorumAndPossession(t *testing.T) {
	f := newFixture(t)
	g := sign(t, f.genesis, f.lena, f.sam, f.ola)
	addKim := f.next(f.genesis, func(r *Roster) { r.Approvers = append(r.Approvers, f.kim.approver()) })

	if _, err := VerifyChain(f.genesisDigest, []Signed{g, sign(t, addKim, f.lena, f.sam, f.kim)}); err != nil {
		t.Fatalf("a quorum and the new approver signed: %v", err)
	}
	cases := []struct {
		name  string
		chain []Signed
		want  error
		says  string
	}{
		{"genesis without every approver's proof of possession", []Signed{sign(t, f.genesis, f.lena, f.sam)}, ErrUnadopted, "ola's signature with their new key"},
		{"one approver adds another", []Signed{g, sign(t, addKim, f.ola, f.kim)}, ErrUnadopted, "1 more distinct approvers"},
		{"the same approver twice", []Signed{g, sign(t, addKim, f.lena, f.lena, f.kim)}, ErrUnadopted, "security role"},
		{"no proof of possession", []Signed{g, sign(t, addKim, f.lena, f.sam)}, ErrUnadopted, "kim's signature with their new key"},
		{"a quorum without the security role", []Signed{g, sign(t, f.next(f.genesis, func(r *Roster) {
			r.Approvers = append(r.Approvers, Approver{ID: "max", Roles: []string{"legal"}, PublicKey: f.kim.approver().PublicKey})
		}), f.lena, person{"max", nil, f.kim.priv})}, ErrUnadopted, "security role"},
		{"a signer who is not an approver", []Signed{g, sign(t, addKim, f.lena, f.sam, f.kim, newPerson(t, "eve", "legal"))}, ErrBadSignature, "eve"},
		{"another genesis", []Signed{sign(t, f.next(f.genesis, func(r *Roster) { r.Version, r.Previous = 1, ""; r.Threshold = 3 }), f.lena, f.sam, f.ola)}, ErrBroken, "pinned genesis"},
		{"versions re-ordered", []Signed{sign(t, addKim, f.lena, f.sam, f.kim), g}, ErrBroken, "pinned genesis"},
		{"a version skipped", []Signed{g, sign(t, f.next(addKim, func(*Roster) {}), f.lena, f.sam)}, ErrBroken, "does not follow"},
	}
	for _, c := range cases {
		_, err := VerifyChain(f.genesisDigest, c.chain)
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: got %v, want %v saying %q", c.name, err, c.want, c.says)
		}
	}
}

func TestForgedSignatureAndEditedVersion(t *testing.T) {
	f := newFixture(t)
	g := sign(t, f.genesis, f.lena, f.sam, f.ola)
	addKim := sign(t, f.next(f.genesis, func(r *Roster) { r.Approvers = append(r.Approvers, f.kim.approver()) }), f.lena, f.sam, f.kim)
	forged := addKim
	forged.Signatures = append([]Signature(nil), addKim.Signatures...)
	forged.Signatures[0].Signature = append([]byte(nil), forged.Signatures[0].Signature...)
	forged.Signatures[0].Signature[0] ^= 1
	if _, err := VerifyChain(f.genesisDigest, []Signed{g, forged}); !errors.Is(err, ErrBadSignature) {
		t.Errorf("a forged signature: %v", err)
	}
	edited := addKim
	edited.Roster = []byte(strings.Replace(string(addKim.Roster), `"threshold":2`, `"threshold":3`, 1))
	if _, err := VerifyChain(f.genesisDigest, []Signed{g, edited}); !errors.Is(err, ErrBadSignature) {
		t.Errorf("an edited version keeps its signatures: %v", err)
	}
	spaced := addKim
	spaced.Roster = append([]byte(" "), addKim.Roster...)
	if _, err := VerifyChain(f.genesisDigest, []Signed{g, spaced}); err == nil {
		t.Error("a version not in canonical form was accepted")
	}
}

func TestRekeyNeedsOldQuorumAndNewKey(t *testing.T) {
	f := newFixture(t)
	g := sign(t, f.genesis, f.lena, f.sam, f.ola)
	lena2 := newPerson(t, "lena", "legal")
	rekey := f.next(f.genesis, func(r *Roster) { r.Approvers[0] = lena2.approver() })
	if _, err := VerifyChain(f.genesisDigest, []Signed{g, sign(t, rekey, f.lena, f.sam)}); !errors.Is(err, ErrUnadopted) {
		t.Errorf("re-keyed without the new key's signature: %v", err)
	}
	// Only the new key signs as lena: the quorum then lacks a legal signer
	// of the version in force.
	if _, err := VerifyChain(f.genesisDigest, []Signed{g, sign(t, rekey, lena2, f.sam)}); !errors.Is(err, ErrUnadopted) {
		t.Errorf("the new key counted toward the old quorum: %v", err)
	}
	chain := []Signed{g, sign(t, rekey, f.lena, lena2, f.sam)}
	rs, err := VerifyChain(f.genesisDigest, chain)
	if err != nil {
		t.Fatalf("re-key with both keys and a quorum: %v", err)
	}
	if a, _ := rs[1].Approver("lena"); a.KeyID() != lena2.approver().KeyID() {
		t.Error("the new version does not hold the new key")
	}
	if !Extends(chain, 2, Digest(chain[1].Roster)) || Extends(chain[:1], 2, Digest(chain[1].Roster)) || !Extends(chain, 1, f.genesisDigest) {
		t.Error("Extends does not tell a chain holding the version seen from one cut short")
	}
}

func TestValidateRefusesRostersThatCannotChange(t *testing.T) {
	f := newFixture(t)
	cases := map[string]func(*Roster){
		"rule of one signer":               func(r *Roster) { r.Rule.MinSigners = 1 },
		"rule with no role":                func(r *Roster) { r.Rule.RequiredRoles = nil },
		"a role no approver holds":         func(r *Roster) { r.Rule.RequiredRoles = []string{"legal", "audit"} },
		"more signers than approvers":      func(r *Roster) { r.Rule.MinSigners = 4 },
		"two approvers with one key":       func(r *Roster) { r.Approvers[1].PublicKey = r.Approvers[0].PublicKey },
		"an approver twice":                func(r *Roster) { r.Approvers[1].ID = "lena" },
		"a custodian url that is not http": func(r *Roster) { r.Custodians[0].URL = "file:///etc/passwd" },
		"threshold above custodians":       func(r *Roster) { r.Threshold = 4 },
		"genesis with a previous":          func(r *Roster) { r.Previous = f.genesisDigest },
	}
	for name, edit := range cases {
		r := f.genesis
		r.Approvers = append([]Approver(nil), f.genesis.Approvers...)
		r.Custodians = append([]Custodian(nil), f.genesis.Custodians...)
		edit(&r)
		if err := r.Validate(); err == nil {
			t.Errorf("%s: valid", name)
		}
	}
	if err := f.genesis.Validate(); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkVerifyChain verifies a chain of 10 versions of 20 approvers,
// each adopted by 3 signers: what a custodian does on every release and a
// depositor on every fetch.
func BenchmarkVerifyChain(b *testing.B) {
	t := &testing.T{}
	var people []person
	for i := range 20 {
		role := "legal"
		if i%2 == 1 {
			role = "security"
		}
		people = append(people, newPerson(t, fmt.Sprintf("approver-%02d", i), role))
	}
	var approvers []Approver
	for _, p := range people {
		approvers = append(approvers, p.approver())
	}
	cur := Roster{Version: 1, Approvers: approvers, Custodians: custodians(t, 5), Threshold: 3, Rule: DefaultRule()}
	chain := []Signed{sign(t, cur, people...)}
	genesis := mustDigest(cur)
	for range 9 {
		next := cur
		next.Version, next.Previous = cur.Version+1, mustDigest(cur)
		next.Threshold = 5 - cur.Threshold%2 // a change each time
		chain = append(chain, sign(t, next, people[0], people[1], people[2]))
		cur = next
	}
	if _, err := VerifyChain(genesis, chain); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := VerifyChain(genesis, chain); err != nil {
			b.Fatal(err)
		}
	}
}

// TestOfficers: an officer is listed with the sole role officer, proves
// possession of their key like anyone added, never counts toward a
// quorum nor as an approver, and a request counts as theirs only with
// their signature over its digest.
func TestOfficers(t *testing.T) {
	lena, sam, olga := newPerson(t, "lena", "legal"), newPerson(t, "sam", "security"), newPerson(t, "olga", RoleOfficer)
	g := Roster{Version: 1, Approvers: []Approver{lena.approver(), sam.approver(), olga.approver()}, Custodians: custodians(t, 3),
		Threshold: 2, Rule: DefaultRule()}
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, ok := g.Approver("olga"); ok {
		t.Fatal("an officer is an approver")
	}
	if _, ok := g.Officer("olga"); !ok {
		t.Fatal("olga is not an officer")
	}
	if _, ok := g.Officer("lena"); ok {
		t.Fatal("an approver is an officer")
	}
	// The genesis needs olga's proof of possession too.
	gs := sign(t, g, lena, sam)
	if p, err := Check(nil, g, gs.Signatures); err != nil || p.Complete() || !strings.Contains(strings.Join(p.Missing, ";"), "olga") {
		t.Fatalf("a genesis without the officer's proof of possession: %+v %v", p, err)
	}
	gs = sign(t, g, lena, sam, olga)
	if _, err := VerifyChain(Digest(gs.Roster), []Signed{gs}); err != nil {
		t.Fatal(err)
	}
	// An officer's signature never counts toward the quorum.
	// (Under a rule lena meets alone but for the count of signers.)
	loose := g
	loose.Rule = Rule{MinSigners: 2, RequiredRoles: []string{"legal"}}
	ld, _ := loose.Digest()
	next := loose
	next.Version, next.Previous = 2, ld
	next.Threshold = 3
	if p, err := Check(&loose, next, sign(t, next, lena, olga).Signatures); err != nil || p.Complete() {
		t.Fatalf("lena and the officer adopted a version: %+v %v", p, err)
	}
	if p, err := Check(&loose, next, sign(t, next, lena, sam).Signatures); err != nil || !p.Complete() {
		t.Fatalf("lena and sam did not adopt it: %+v %v", p, err)
	}
	// An officer holds no other role, and no rule can require officers.
	bad := g
	bad.Approvers = []Approver{lena.approver(), sam.approver(), {ID: "olga", Roles: []string{RoleOfficer, "legal"}, PublicKey: olga.approver().PublicKey}}
	if err := bad.Validate(); err == nil {
		t.Fatal("an officer who also approves was accepted")
	}
	bad = g
	bad.Rule = Rule{MinSigners: 2, RequiredRoles: []string{"legal", RoleOfficer}}
	if err := bad.Validate(); err == nil {
		t.Fatal("a rule requiring an officer was accepted")
	}
	digest := "sha256:" + strings.Repeat("ab", 32)
	if _, err := g.VerifyRequest("olga", digest, approval.SignRequest(olga.priv, digest)); err != nil {
		t.Fatal(err)
	}
	if _, err := g.VerifyRequest("olga", digest, approval.SignRequest(lena.priv, digest)); !errors.Is(err, ErrBadRequestSignature) {
		t.Fatalf("signed with another key: %v", err)
	}
	if _, err := g.VerifyRequest("lena", digest, approval.SignRequest(lena.priv, digest)); !errors.Is(err, ErrNotOfficer) {
		t.Fatalf("filed by an approver: %v", err)
	}
}

// TestCustodianURLs: a custodian is reached over https, or over plain
// http only on a loopback address, where no network carries the
// mediator's token or the evidence.
func TestCustodianURLs(t *testing.T) {
	for url, ok := range map[string]bool{
		"https://custodian-1.example:8443": true,
		"http://127.0.0.1:9101":            true,
		"http://127.8.0.1:9101":            true,
		"http://[::1]:9101":                true,
		"http://localhost:9101/":           true,
		"http://custodian-1.example:8443":  false,
		"http://10.0.0.7:9101":             false,
		"http://127.0.0.1.nip.io:9101":     false,
		"ftp://127.0.0.1/":                 false,
		"https://":                         false,
	} {
		if err := CheckCustodianURL(url); (err == nil) != ok {
			t.Errorf("%s: %v, want ok=%v", url, err, ok)
		}
	}
	g := Roster{Version: 1, Approvers: []Approver{newPerson(t, "lena", "legal").approver(), newPerson(t, "sam", "security").approver()},
		Custodians: custodians(t, 3), Threshold: 2, Rule: DefaultRule()}
	g.Custodians[1].URL = "http://custodian-2.example:8443"
	if err := g.Validate(); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("a roster with a plain-http custodian off loopback: %v", err)
	}
}

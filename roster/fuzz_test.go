package roster

import (
	"encoding/json"
	"slices"
	"testing"
)

// FuzzVerifyChain: whatever bytes a mediator hands over as a chain, a
// chain that verifies from the pinned genesis holds only versions that a
// quorum adopted: every version's digest is one of the genuine chain's,
// in its place.
func FuzzVerifyChain(f *testing.F) {
	t := &testing.T{}
	fx := newFixture(t)
	g := sign(t, fx.genesis, fx.lena, fx.sam, fx.ola)
	addKim := fx.next(fx.genesis, func(r *Roster) { r.Approvers = append(r.Approvers, fx.kim.approver()) })
	genuine := []Signed{g, sign(t, addKim, fx.lena, fx.sam, fx.kim)}
	digests := []string{Digest(genuine[0].Roster), Digest(genuine[1].Roster)}
	seed, err := json.Marshal(genuine)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add(seed[:len(seed)/2])
	f.Fuzz(func(t *testing.T, b []byte) {
		var chain []Signed
		if json.Unmarshal(b, &chain) != nil {
			return
		}
		rs, err := VerifyChain(fx.genesisDigest, chain)
		if err != nil {
			return
		}
		if len(rs) > len(digests) {
			t.Fatalf("a chain of %d versions verified; only %d were adopted", len(rs), len(digests))
		}
		for i, s := range chain {
			if Digest(s.Roster) != digests[i] {
				t.Fatalf("version %d verified with digest %s, not the adopted %s", i+1, Digest(s.Roster), digests[i])
			}
		}
		if !slices.Equal(rs[len(rs)-1].Approvers[0].PublicKey, fx.genesis.Approvers[0].PublicKey) {
			t.Fatal("the verified roster lists another key for lena")
		}
	})
}

package tlogpolicy

import (
	"bytes"
	"testing"
)

// FuzzParse: Parse never panics; what it accepts it writes back in a
// form it reads as the same policy, whose fewest cosigners is within its
// witnesses and is met when every witness cosigned.
func FuzzParse(f *testing.F) {
	text, _, _ := specPolicy(f)
	f.Add([]byte(text))
	f.Add([]byte("quorum none\n"))
	f.Add([]byte("witness A a+00000000+BAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\ngroup G any A\nquorum G\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		if err != nil {
			return
		}
		again, err := Parse(p.Marshal())
		if err != nil {
			t.Fatalf("Marshal wrote what Parse refuses: %v\n%s", err, p.Marshal())
		}
		if !bytes.Equal(again.Marshal(), p.Marshal()) {
			t.Fatalf("not stable:\n%s\n%s", p.Marshal(), again.Marshal())
		}
		if n := p.MinCosigners(); n < 0 || n > len(p.Witnesses) {
			t.Fatalf("MinCosigners %d of %d witnesses", n, len(p.Witnesses))
		}
		if !p.Met(func(Witness) bool { return true }) {
			t.Fatal("every witness cosigned, quorum not met")
		}
	})
}

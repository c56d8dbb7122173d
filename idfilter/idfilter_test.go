package idfilter

import (
	"errors"
	"strconv"
	"testing"
)

// TestNoFalseNegativesAndFewFalsePositives: every key added is a maybe,
// also after a round trip through its encoding, and keys not added are
// maybes at most three times in a thousand (about one is expected).
func TestNoFalseNegativesAndFewFalsePositives(t *testing.T) {
	const n = 200_000
	f := New(n)
	for i := range n {
		f.Add(KeyOf("gateway", "e-"+strconv.Itoa(i)))
	}
	b, err := f.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	g, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		k := KeyOf("gateway", "e-"+strconv.Itoa(i))
		if !f.MayContain(k) || !g.MayContain(k) {
			t.Fatalf("key %d was added and is reported absent", i)
		}
	}
	maybes := 0
	for i := range n {
		// The same ids from another submitter are other keys.
		if g.MayContain(KeyOf("other", "e-"+strconv.Itoa(i))) {
			maybes++
		}
	}
	if rate := float64(maybes) / n; rate > 0.003 {
		t.Fatalf("false positive rate %.4f, want at most 0.003", rate)
	}
	if got, want := g.Size(), n*BitsPerKey/8; got < want || got > want+64 {
		t.Fatalf("size %d bytes, want about %d", got, want)
	}
}

// TestKeysSeparateSubmitterAndID: the submitter's length is part of the
// key, so ("ab", "c") and ("a", "bc") differ.
func TestKeysSeparateSubmitterAndID(t *testing.T) {
	if KeyOf("ab", "c") == KeyOf("a", "bc") {
		t.Fatal("keys of different (submitter, id) pairs are equal")
	}
}

func TestParseRefusesWhatIsNotAFilter(t *testing.T) {
	for _, b := range [][]byte{nil, {2}, {version}, append([]byte{version}, make([]byte, 63)...)} {
		if _, err := Parse(b); !errors.Is(err, ErrMalformed) {
			t.Fatalf("Parse(%d bytes) = %v, want ErrMalformed", len(b), err)
		}
	}
}

func BenchmarkMayContain(b *testing.B) {
	f := New(1 << 20)
	k := KeyOf("gateway", "e-1")
	for b.Loop() {
		f.MayContain(k)
	}
}

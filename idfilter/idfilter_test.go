package idfilter

import (
	"bytes"
	"errors"
	"slices"
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

// TestStackAnswersAsItsFilters: a stack says maybe for exactly the
// filters that would, for keys each of them holds and for keys none does;
// a filter taken back out of the stack answers and encodes as the one put
// in; and filters of different sizes are refused.
func TestStackAnswersAsItsFilters(t *testing.T) {
	const n = 20_000
	fs := []*Filter{New(n), New(n), New(n)}
	for g, f := range fs {
		for i := range n {
			f.Add(KeyOf("gateway", strconv.Itoa(g)+"-"+strconv.Itoa(i)))
		}
	}
	s, err := NewStack(fs)
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != len(fs) {
		t.Fatalf("Len = %d, want %d", s.Len(), len(fs))
	}
	var maybes []int
	held := 0
	for g := range len(fs) + 1 { // the last: keys no filter holds
		for i := range n {
			k := KeyOf("gateway", strconv.Itoa(g)+"-"+strconv.Itoa(i))
			maybes = s.AppendMaybes(maybes[:0], k)
			var want []int
			for j, f := range fs {
				if f.MayContain(k) {
					want = append(want, j)
				}
				if got := s.Filter(j).MayContain(k); got != f.MayContain(k) {
					t.Fatalf("key %d-%d: the stack's filter %d says %v, the filter %v", g, i, j, got, !got)
				}
			}
			if !slices.Equal(maybes, want) {
				t.Fatalf("key %d-%d: stack maybes %v, filters %v", g, i, maybes, want)
			}
			if g < len(fs) && !slices.Contains(maybes, g) {
				t.Fatalf("key %d-%d was added to filter %d and the stack rules it out", g, i, g)
			}
			held += len(maybes)
		}
	}
	if held < len(fs)*n || held > len(fs)*n+n/100 {
		t.Fatalf("%d maybes for %d keys held once each: false maybes are not rare", held, len(fs)*n)
	}
	for j, f := range fs {
		want, _ := f.MarshalBinary()
		got, _ := s.Filter(j).MarshalBinary()
		if !bytes.Equal(got, want) || s.Filter(j).Size() != f.Size() {
			t.Fatalf("filter %d out of the stack encodes to %d bytes unlike the one put in (%d)", j, len(got), len(want))
		}
	}
	// A stack of the stack's own filters is the same stack.
	again, err := NewStack([]*Filter{s.Filter(0), s.Filter(1), s.Filter(2)})
	if err != nil || !slices.Equal(again.words, s.words) {
		t.Fatalf("restacking the stack's filters: %v, same words %v", err, err == nil && slices.Equal(again.words, s.words))
	}
	if _, err := NewStack([]*Filter{New(n), New(2 * n)}); err == nil {
		t.Fatal("a stack of filters of different sizes was made")
	}
	if empty, err := NewStack(nil); err != nil || len(empty.AppendMaybes(nil, KeyOf("gateway", "0-0"))) != 0 {
		t.Fatalf("an empty stack: %v", err)
	}
}

func BenchmarkMayContain(b *testing.B) {
	f := New(1 << 20)
	k := KeyOf("gateway", "e-1")
	for b.Loop() {
		f.MayContain(k)
	}
}

// BenchmarkClosedGenerations asks 1,000 new keys of nine full filters, as
// the duplicate check asks the closed generations of a log of 10 M
// entries, one filter after another and as a stack (ns/key is per key,
// all nine filters).
func BenchmarkClosedGenerations(b *testing.B) {
	fs := make([]*Filter, 9)
	for g := range fs {
		fs[g] = New(1 << 20)
		for i := range 1 << 20 {
			fs[g].Add(KeyOf("gateway", strconv.Itoa(g)+"-"+strconv.Itoa(i)))
		}
	}
	s, err := NewStack(fs)
	if err != nil {
		b.Fatal(err)
	}
	// Fresh keys every round, so that no round finds its blocks in cache.
	keys := make([]Key, 1000)
	round := func(r int) {
		for i := range keys {
			keys[i] = KeyOf("gateway", "new-"+strconv.Itoa(r)+"-"+strconv.Itoa(i))
		}
	}
	rounds := func(b *testing.B, ask func(Key)) {
		r := 0
		for b.Loop() {
			b.StopTimer()
			round(r)
			r++
			b.StartTimer()
			for _, k := range keys {
				ask(k)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(keys)), "ns/key")
	}
	b.Run("one-by-one", func(b *testing.B) {
		maybes := 0
		rounds(b, func(k Key) {
			for _, f := range fs {
				if f.MayContain(k) {
					maybes++
				}
			}
		})
	})
	b.Run("stack", func(b *testing.B) {
		var maybes []int
		rounds(b, func(k Key) { maybes = s.AppendMaybes(maybes[:0], k) })
	})
}

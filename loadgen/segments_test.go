package loadgen

import (
	"testing"
	"time"
)

// TestSegmentsRates: a segment's rate is its size over the time between
// the crossings that bound it, and one acknowledgement may cross several.
func TestSegmentsRates(t *testing.T) {
	t0 := time.Unix(1000, 0)
	s := newSegments(1000, t0)
	s.add(0, 600, t0.Add(time.Second))
	s.add(600, 1200, t0.Add(2*time.Second))   // crosses 1000
	s.add(1200, 3100, t0.Add(6*time.Second))  // crosses 2000 and 3000
	s.add(3100, 3900, t0.Add(10*time.Second)) // crosses nothing
	got := s.rates()
	want := []float64{500, 250, 1e12}
	if len(got) != 3 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("rates = %v, want 500, 250 and a third segment", got)
	}
	// The third segment ended in the same acknowledgement as the second:
	// its time is zero, so its rate is infinite rather than made up.
	if got[2] <= want[2] {
		t.Fatalf("third rate = %v, want +Inf for a segment inside one acknowledgement", got[2])
	}
}

package loadgen

import (
	"sync"
	"time"
)

// segments records when the count of acknowledged events crossed each
// multiple of size, so that a long run can show whether its rate held:
// the rate over the first size events against the rate over the last.
type segments struct {
	size  int64
	start time.Time

	mu      sync.Mutex
	crossed []time.Time // crossed[k] is when the count reached (k+1)·size
}

func newSegments(size int64, start time.Time) *segments {
	return &segments{size: size, start: start}
}

// add records that the count went from before to after at time at.
func (s *segments) add(before, after int64, at time.Time) {
	if s == nil || s.size <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := before/s.size + 1; k*s.size <= after; k++ {
		s.crossed = append(s.crossed, at)
	}
}

// rates returns the rate, in events per second, of each whole segment.
func (s *segments) rates() []float64 {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]float64, len(s.crossed))
	prev := s.start
	for i, t := range s.crossed {
		out[i] = float64(s.size) / t.Sub(prev).Seconds()
		prev = t
	}
	return out
}

package harness

import (
	"context"
	"sync"

	"github.com/mediatorhq/mediator/witness"
)

// WitnessStore is a witness.Store in memory, for a test's own witness
// (witness.New): the real witness code over state that ends with the test.
type WitnessStore struct {
	mu sync.Mutex
	m  map[string]witness.Checkpoint
}

// NewWitnessStore returns an empty store.
func NewWitnessStore() *WitnessStore { return &WitnessStore{m: map[string]witness.Checkpoint{}} }

// Latest implements witness.Store.
func (s *WitnessStore) Latest(_ context.Context, origin string) (witness.Checkpoint, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.m[origin]
	return c, ok, nil
}

// Put implements witness.Store: it replaces prev (nil: none) with next, or
// returns witness.ErrChanged if the latest is no longer prev.
func (s *WitnessStore) Put(_ context.Context, origin string, prev *witness.Checkpoint, next witness.Checkpoint) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.m[origin]
	if ok != (prev != nil) || (ok && c != *prev) {
		return witness.ErrChanged
	}
	s.m[origin] = next
	return nil
}

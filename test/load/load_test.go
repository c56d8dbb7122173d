package load

import (
	"bytes"
	"testing"
	"time"

	"github.com/mediatorhq/mediator/redact"
)

// TestWriteBatchMakesValidEvents: every generated event passes the real
// decoder and minimization, so load runs measure accepted events.
func TestWriteBatchMakesValidEvents(t *testing.T) {
	var b bytes.Buffer
	WriteBatch(&b, "run", 100, 200)
	raws, p := redact.SplitBatch(b.Bytes(), false, 1000)
	if p != nil || len(raws) != 200 {
		t.Fatalf("split: %v %+v", len(raws), p)
	}
	m := redact.NewMinimizer(redact.DefaultProfile(), redact.PseudonymKey{Version: 1, Key: make([]byte, 32)})
	for i, raw := range raws {
		ev, probs := redact.DecodeEvent(i, raw)
		if probs == nil {
			_, probs = m.Minimize(i, ev, time.Now())
		}
		if probs != nil {
			t.Fatalf("event %d refused: %+v\n%s", i, probs, raw)
		}
	}
}

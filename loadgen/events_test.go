package loadgen

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
	events, probs, p := redact.DecodeBatch(b.Bytes(), false, 1000)
	if p != nil || probs != nil || len(events) != 200 {
		t.Fatalf("decode: %d events, %+v %+v", len(events), probs, p)
	}
	m := redact.NewMinimizer(redact.DefaultProfile(), redact.PseudonymKey{Version: 1, Key: make([]byte, 32)})
	for i, ev := range events {
		if _, probs := m.Minimize(i, ev, time.Now()); probs != nil {
			t.Fatalf("event %d refused: %+v", i, probs)
		}
	}
}

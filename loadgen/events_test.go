package loadgen

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/mediatorhq/mediator/redact"
)

// TestWriteBatchMakesValidEvents: every generated event passes the real
// decoder and minimization, so load runs measure accepted events.
func TestWriteBatchMakesValidEvents(t *testing.T) {
	for _, c := range []struct {
		runID string
		first int64
	}{
		{"run", 100},
		// A random run id may end in digits, and a long run reaches
		// numbers of seven digits: together they must not read as a
		// phone number.
		{"load-3k9a12", 1_234_500},
	} {
		writeBatchIsValid(t, c.runID, c.first)
	}
}

func writeBatchIsValid(t *testing.T, runID string, first int64) {
	t.Helper()
	var b bytes.Buffer
	WriteBatch(&b, runID, first, 200)
	events, probs, p := redact.DecodeBatch(b.Bytes(), false, 1000)
	if p != nil || probs != nil || len(events) != 200 {
		t.Fatalf("decode: %d events, %+v %+v", len(events), probs, p)
	}
	m := redact.NewMinimizer(redact.DefaultProfile(), "gw-test")
	for i, ev := range events {
		if _, probs := m.Minimize(i, ev, time.Now()); probs != nil {
			t.Fatalf("event %d refused: %+v", i, probs)
		}
	}
}

func TestWriteMaximalBatchIsValidAndMaximal(t *testing.T) {
	var b bytes.Buffer
	n := WriteMaximalBatch(&b, "max-test")
	var body struct {
		Events []struct {
			EventID    string   `json:"event_id"`
			Recipients []string `json:"recipients"`
		} `json:"events"`
	}
	if err := json.Unmarshal(b.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	recipients := 0
	for _, e := range body.Events {
		recipients += len(e.Recipients)
	}
	t.Logf("%d events, %d bytes, %d recipients", n, b.Len(), recipients)
	if len(body.Events) != n || n != 10000 || recipients != 50000 || b.Len() > MaxBodyBytes || b.Len() < MaxBodyBytes*95/100 || recipients > 50000 || recipients < 40000 {
		t.Fatalf("%d events (said %d), %d bytes, %d recipients: not a maximal valid body", len(body.Events), n, b.Len(), recipients)
	}
}

// TestCoverNamesEveryIdentifier: with Cover, the first PoolCover events
// name every identifier of the pools, so they warm an agent's cache.
func TestCoverNamesEveryIdentifier(t *testing.T) {
	var b bytes.Buffer
	writeBatch(&b, "cover", 0, PoolCover, true, true)
	events, probs, p := redact.DecodeBatch(b.Bytes(), false, PoolCover)
	if p != nil || probs != nil {
		t.Fatalf("decode: %+v %+v", probs, p)
	}
	convs, people := map[string]bool{}, map[string]bool{}
	for _, ev := range events {
		convs[ev.ConversationID] = true
		people[ev.Sender] = true
		for _, r := range ev.Recipients {
			people[r] = true
		}
	}
	if len(convs) != poolConversations || len(people) != poolSenders+poolRecipients {
		t.Fatalf("%d conversations and %d people named, want %d and %d", len(convs), len(people), poolConversations, poolSenders+poolRecipients)
	}
}

package client

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/mediatorhq/mediator/pseudonym"
	"github.com/mediatorhq/mediator/redact"
)

// testPseudonyms is one VOPRF key for the package's tests, evaluated in
// process: the real client, with its verification, and a real key.
var testPseudonyms = sync.OnceValue(func() *pseudonym.Key {
	k, err := pseudonym.GenerateKey()
	if err != nil {
		panic(err)
	}
	return k
})

// localPseudonyms is a pseudonym client of the tests' key.
func localPseudonyms() *pseudonym.Client {
	k := testPseudonyms()
	return pseudonym.NewClient(k.Public(), pseudonym.Local(pseudonym.NewEvaluator(k)), 0)
}

// TestPseudonymizeEvents: every identifier becomes its pseudonym, numbers
// after E.164 normalisation, one kind per field; an identifier that cannot
// be one refuses its event here, which is then sent nowhere.
func TestPseudonymizeEvents(t *testing.T) {
	ctx := context.Background()
	p := localPseudonyms()
	events := []*redact.Event{
		{ConversationID: "14155550100@s.whatsapp.net", Sender: "+1 415-555-0100", Recipients: []string{"+14155550100", "user-7"}},
		{ConversationID: "grp_2026_11_30", Sender: "bad\u0000id"},
		nil,
		{ConversationID: "chat:887766554433", Sender: strings.Repeat("x", 129)},
	}
	probs, err := PseudonymizeEvents(ctx, p, events)
	if err != nil {
		t.Fatal(err)
	}
	if len(probs) != 2 || probs[0].Index != 1 || probs[0].Path != "$.sender" || probs[1].Index != 3 || events[1] != nil || events[3] != nil {
		t.Fatalf("problems %+v, events %v", probs, events)
	}
	ev := events[0]
	want := func(k pseudonym.Kind, v string) string {
		ps, err := p.Pseudonyms(ctx, k, []string{v})
		if err != nil {
			t.Fatal(err)
		}
		return ps[0]
	}
	if ev.ConversationID != want(pseudonym.KindConversation, "14155550100@s.whatsapp.net") ||
		ev.Sender != want(pseudonym.KindPhone, "+14155550100") || ev.Recipients[0] != ev.Sender ||
		ev.Recipients[1] != want(pseudonym.KindID, "user-7") {
		t.Fatalf("pseudonyms: %+v", ev)
	}
	if ev.Recipients[1] == want(pseudonym.KindConversation, "user-7") {
		t.Fatal("kinds share a namespace")
	}
}

// counting is a Pseudonymizer that counts what it is asked.
type counting struct{ n int }

func (c *counting) Pseudonyms(_ context.Context, k pseudonym.Kind, values []string) ([]string, error) {
	c.n += len(values)
	out := make([]string, len(values))
	for i, v := range values {
		out[i] = pseudonym.Synthetic(string(k) + v)
	}
	return out, nil
}

// TestSendRawEventsCapsRecipientsFirst: a body over the recipient cap is
// refused before a single identifier is sent to the pseudonym service.
func TestSendRawEventsCapsRecipientsFirst(t *testing.T) {
	c, err := New("http://127.0.0.1:1", "token", nil)
	if err != nil {
		t.Fatal(err)
	}
	p := &counting{}
	c.UsePseudonyms(p)
	var b strings.Builder
	b.WriteString(`{"events":[`)
	for i := range 51 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"event_id":"e%d","kind":"message","conversation_id":"c","message_hash":"sha256:%064d","sender":"s","recipients":[`, i, i)
		for r := range 1000 {
			if r > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `"+1415%07d"`, i*1000+r)
		}
		b.WriteString(`],"transport":"sms","status":"sent","occurred_at":"2026-12-01T00:00:00Z"}`)
	}
	b.WriteString(`]}`)
	_, err = c.SendRawEvents(context.Background(), []byte(b.String()), false, false)
	if !IsCode(err, redact.CodeTooManyRecipients) || p.n != 0 {
		t.Fatalf("51,000 recipients: %v after %d evaluations", err, p.n)
	}
}

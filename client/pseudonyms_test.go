package client

import (
	"context"
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

package redact

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mediatorhq/mediator/pseudonym"
)

var (
	testSubmitter = "gw-test"
	testNow       = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	hashA         = "sha256:" + strings.Repeat("ab", 32)
)

func validEvent() map[string]any {
	return map[string]any{
		"event_id":        "ev-1",
		"kind":            "message",
		"conversation_id": pseudonym.Synthetic("conv-1"),
		"message_hash":    hashA,
		"sender":          pseudonym.Synthetic("+14155550100"),
		"recipients":      []any{pseudonym.Synthetic("+14155550101"), pseudonym.Synthetic("user-opaque-7")},
		"transport":       "rcs-e2ee",
		"status":          "delivered",
		"occurred_at":     "2026-11-25T11:58:42.123Z",
		"carrier":         map[string]any{"mcc": "310", "mnc": "260"},
		"downgrade":       map[string]any{"from": "rcs-e2ee", "to": "sms", "reason": "peer +1 (415) 555-0199 offline, mail bob@example.com or see https://x.example/y"},
		"client":          map[string]any{"platform": "android", "version": "1.2.3"},
	}
}

func process(t *testing.T, raw string) (*Record, []Problem) {
	t.Helper()
	ev, probs := DecodeEvent(0, []byte(raw))
	if probs != nil {
		return nil, probs
	}
	return Minimize(0, ev, DefaultProfile(), testSubmitter, testNow)
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestMinimizeValidEvent(t *testing.T) {
	rec, probs := process(t, mustJSON(validEvent()))
	if probs != nil {
		t.Fatalf("problems: %+v", probs)
	}
	if rec.OccurredAt != "2026-11-25T11:58:00Z" {
		t.Errorf("occurred_at = %q, want truncated to the minute", rec.OccurredAt)
	}
	if rec.Carrier.MCC != "310" || rec.Carrier.MNC != "" {
		t.Errorf("carrier = %+v, want MNC dropped", rec.Carrier)
	}
	if rec.Sender != pseudonym.Synthetic("+14155550100") || rec.V != RecordVersion || rec.Submitter != testSubmitter {
		t.Errorf("sender, version or submitter = %q %d %q", rec.Sender, rec.V, rec.Submitter)
	}
	if rec.EventID != EventIDDigest(testSubmitter, "ev-1") || !strings.HasPrefix(rec.EventID, "eid1:") {
		t.Errorf("event_id = %q, want its digest bound to the submitter", rec.EventID)
	}
	if EventIDDigest("gw-other", "ev-1") == rec.EventID {
		t.Error("the event id digest is not bound to the submitter")
	}
	want := "peer [redacted] offline, mail [redacted] or see [redacted]"
	if rec.Downgrade.Reason != want {
		t.Errorf("reason = %q, want %q", rec.Downgrade.Reason, want)
	}
	out := mustJSON(rec)
	for _, raw := range []string{"415", "0100", "bob@", "example.com", "user-opaque-7", "11:58:42", `"ev-1"`} {
		if strings.Contains(out, raw) {
			t.Errorf("record keeps %q: %s", raw, out)
		}
	}
}

// TestOpaqueIDsOfAnyShape: an event id is never refused for its shape,
// and is kept only as its digest; identifier fields take pseudonyms and
// nothing else, whatever the raw value looks like.
func TestOpaqueIDsOfAnyShape(t *testing.T) {
	for _, id := range []string{"grp_2026_11_30", "chat:887766554433", "14155550100@s.whatsapp.net", "gw-conv-1764460800", "+1 415 555 0100"} {
		m := validEvent()
		m["event_id"] = id
		rec, probs := process(t, mustJSON(m))
		if probs != nil {
			t.Fatalf("event id %q refused: %+v", id, probs)
		}
		if strings.Contains(mustJSON(rec), id) {
			t.Fatalf("event id %q kept readable", id)
		}
		for _, field := range []string{"conversation_id", "sender"} {
			m := validEvent()
			m[field] = id
			if _, probs := process(t, mustJSON(m)); len(probs) != 1 || probs[0].Code != CodeNotAPseudonym || probs[0].Path != "$."+field {
				t.Fatalf("raw %s %q: %+v, want %s", field, id, probs, CodeNotAPseudonym)
			}
		}
	}
}

func TestDecodeRefuses(t *testing.T) {
	with := func(f func(m map[string]any)) string { m := validEvent(); f(m); return mustJSON(m) }
	cases := []struct {
		name, raw, code, path string
	}{
		{"body", with(func(m map[string]any) { m["body"] = "hello" }), CodeContentNotAccepted, "$.body"},
		{"text nested", with(func(m map[string]any) { m["client"].(map[string]any)["text"] = "hi" }), CodeContentNotAccepted, "$.client.text"},
		{"attachment_url deep", with(func(m map[string]any) {
			m["x"] = map[string]any{"y": []any{map[string]any{"attachment_url": "https://a"}}}
		}), CodeContentNotAccepted, "$.x.y[0].attachment_url"},
		{"Plaintext any case", with(func(m map[string]any) { m["PlainText"] = "x" }), CodeContentNotAccepted, "$.PlainText"},
		{"cyrillic look-alike", with(func(m map[string]any) { m["b\u043edy"] = "hello" }), CodeUnknownField, `$.["b\u043edy"]`},
		{"case variant of a real field", with(func(m map[string]any) { delete(m, "event_id"); m["Event_ID"] = "x" }), CodeUnknownField, "$.Event_ID"},
		{"unknown field", with(func(m map[string]any) { m["color"] = "red" }), CodeUnknownField, "$.color"},
		{"duplicate key", `{"event_id":"a","event_id":"b"}`, CodeDuplicateKey, "$.event_id"},
		{"bad hash", with(func(m map[string]any) { m["message_hash"] = "sha256:ABC" }), CodeInvalidField, "$.message_hash"},
		{"uppercase hash", with(func(m map[string]any) { m["message_hash"] = "sha256:" + strings.Repeat("AB", 32) }), CodeInvalidField, "$.message_hash"},
		{"bad kind", with(func(m map[string]any) { m["kind"] = "chat" }), CodeInvalidField, "$.kind"},
		{"missing sender", with(func(m map[string]any) { delete(m, "sender") }), CodeMissingField, "$.sender"},
		{"future", with(func(m map[string]any) { m["occurred_at"] = "2026-11-25T13:00:00Z" }), CodeInvalidField, "$.occurred_at"},
		{"not rfc3339", with(func(m map[string]any) { m["occurred_at"] = "yesterday" }), CodeInvalidField, "$.occurred_at"},
		{"wrong type", with(func(m map[string]any) { m["recipients"] = "x" }), CodeInvalidField, "$.recipients"},
		{"long reason", with(func(m map[string]any) { m["downgrade"].(map[string]any)["reason"] = strings.Repeat("x", 201) }), CodeInvalidField, "$.downgrade.reason"},
		{"control char id", with(func(m map[string]any) { m["event_id"] = "a\u0000b" }), CodeInvalidField, "$.event_id"},
		{"raw conversation", with(func(m map[string]any) { m["conversation_id"] = "conv-1" }), CodeNotAPseudonym, "$.conversation_id"},
		{"pseudonym too short", with(func(m map[string]any) { m["sender"] = pseudonym.Synthetic("a")[:40] }), CodeNotAPseudonym, "$.sender"},
		{"long id", with(func(m map[string]any) { m["event_id"] = strings.Repeat("e", 129) }), CodeInvalidField, "$.event_id"},
		{"bad recipient", with(func(m map[string]any) { m["recipients"] = []any{pseudonym.Synthetic("ok"), "+14155550100"} }), CodeNotAPseudonym, "$.recipients[1]"},
		{"empty recipient", with(func(m map[string]any) { m["recipients"] = []any{pseudonym.Synthetic("ok"), ""} }), CodeMissingField, "$.recipients[1]"},
		{"not an object", `[1,2]`, CodeMalformed, "$"},
		{"trailing", mustJSON(validEvent()) + "{}", CodeMalformed, "$"},
		{"deep", strings.Repeat(`{"a":`, 20) + "1" + strings.Repeat("}", 20), CodeTooDeep, ""},
		{"invalid utf8", "{\"event_id\":\"\xff\"}", CodeMalformed, "$"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec, probs := process(t, c.raw)
			if rec != nil {
				t.Fatalf("accepted: %+v", rec)
			}
			found := false
			for _, p := range probs {
				if p.Code == c.code && (c.path == "" || p.Path == c.path) {
					found = true
				}
				if strings.Contains(p.Message, "hello") || strings.Contains(p.Message, "https://a") {
					t.Errorf("problem echoes the value: %+v", p)
				}
			}
			if !found {
				t.Fatalf("want %s at %s, got %+v", c.code, c.path, probs)
			}
		})
	}
}

func TestSplitBatch(t *testing.T) {
	evs, p := SplitBatch([]byte(`{"events":[{"a":1},{"b":2}]}`), false, 10)
	if p != nil || len(evs) != 2 {
		t.Fatalf("json batch: %v %+v", evs, p)
	}
	evs, p = SplitBatch([]byte("{\"a\":1}\n\n{\"b\":2}\n"), true, 10)
	if p != nil || len(evs) != 2 {
		t.Fatalf("ndjson batch: %v %+v", evs, p)
	}
	for name, body := range map[string]string{
		"too many":        `{"events":[1,2,3]}`,
		"content at top":  `{"events":[],"body":"x"}`,
		"no events":       `{}`,
		"duplicate":       `{"events":[],"events":[]}`,
		"not object":      `[]`,
		"trailing":        `{"events":[]} x`,
		"events not list": `{"events":{}}`,
	} {
		if _, p := SplitBatch([]byte(body), false, 2); p == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, p := SplitBatch([]byte("1\n2\n3\n"), true, 2); p == nil {
		t.Error("ndjson over the limit accepted")
	}
	// A repeated key of the body is named as such (jsontext's
	// ErrDuplicateName), not as malformed JSON.
	for _, body := range []string{`{"events":[],"events":[]}`, `{"events":[1],"events":[]}`} {
		if _, p := SplitBatch([]byte(body), false, 2); p == nil || p.Code != CodeDuplicateKey {
			t.Errorf("%s: %+v, want %s", body, p, CodeDuplicateKey)
		}
	}
}

func TestParseProfile(t *testing.T) {
	p, err := ParseProfile([]byte(`{"granularity":"1h","keep_mnc":true}`))
	if err != nil || p.Granularity.Duration != time.Hour || !p.KeepMNC || p.MaxRecipients != 1024 {
		t.Fatalf("profile = %+v, %v", p, err)
	}
	if _, err := ParseProfile([]byte(`{"granularity":"1h","keep_everything":true}`)); err == nil {
		t.Fatal("unknown profile field accepted")
	}
	if _, err := ParseProfile([]byte(`{"granularity":"0s"}`)); err == nil {
		t.Fatal("zero granularity accepted")
	}
	ev, _ := DecodeEvent(0, []byte(mustJSON(validEvent())))
	rec, _ := Minimize(0, ev, Profile{Granularity: Duration{time.Hour}, MaxFutureSkew: Duration{time.Minute}, KeepMNC: true, MaxRecipients: 5}, testSubmitter, testNow)
	if rec.OccurredAt != "2026-11-25T11:00:00Z" || rec.Carrier.MNC != "260" {
		t.Fatalf("profile not applied: %+v", rec)
	}
}

func FuzzDecodeAndMinimize(f *testing.F) {
	f.Add(mustJSON(validEvent()))
	f.Add(`{"event_id":"a","body":"secret"}`)
	f.Add(`{"events":[]}`)
	f.Add(`{"event_id":"a","event_id":"b"}`)
	f.Add(strings.Repeat("[", 50))
	f.Fuzz(func(t *testing.T, raw string) {
		ev, probs := DecodeEvent(0, []byte(raw))
		if (ev == nil) == (probs == nil) {
			t.Fatalf("exactly one of event and problems must be set: %v %v", ev, probs)
		}
		if ev == nil {
			return
		}
		rec, probs := Minimize(0, ev, DefaultProfile(), testSubmitter, testNow)
		if rec == nil {
			if len(probs) == 0 {
				t.Fatal("refused without a problem")
			}
			return
		}
		// An accepted record holds only pseudonyms in identifier fields
		// and never the event id as sent.
		for _, id := range append([]string{rec.Sender, rec.ConversationID}, rec.Recipients...) {
			if !pseudonym.Valid(id) {
				t.Fatalf("identifier %q kept", id)
			}
		}
		if rec.EventID != EventIDDigest(testSubmitter, ev.EventID) {
			t.Fatalf("event id %q kept", rec.EventID)
		}
		if strings.Contains(raw, `"body"`) {
			t.Fatalf("an event with a body field was accepted: %q", raw)
		}
	})
}

func BenchmarkDecodeAndMinimize(b *testing.B) {
	raw := []byte(mustJSON(validEvent()))
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		ev, probs := DecodeEvent(0, raw)
		if probs != nil {
			b.Fatal(probs)
		}
		if _, probs := Minimize(0, ev, DefaultProfile(), testSubmitter, testNow); probs != nil {
			b.Fatal(fmt.Sprint(probs))
		}
	}
}

// TestDecodeBatch: a clean body takes the one-pass path and gives the same
// events as decoding them one by one; a body with a bad event names it by
// index and keeps the others; a wrong type is reported at its path.
func TestDecodeBatch(t *testing.T) {
	good := mustJSON(validEvent())
	body := []byte(`{"events":[` + good + `,` + good + `]}`)
	evs, probs, bp := DecodeBatch(body, false, 10)
	one, _ := DecodeEvent(0, []byte(good))
	if bp != nil || probs != nil || len(evs) != 2 || !reflect.DeepEqual(evs[1], one) {
		t.Fatalf("clean batch: %v %v %v", evs, probs, bp)
	}
	bad := strings.Replace(good, `"recipients":[`, `"recipients":[7,`, 1)
	evs, probs, bp = DecodeBatch([]byte(`{"events":[`+good+`,`+bad+`]}`), false, 10)
	if bp != nil || evs[0] == nil || evs[1] != nil || len(probs) != 1 ||
		probs[0].Index != 1 || probs[0].Path != "$.recipients[0]" || probs[0].Code != CodeInvalidField {
		t.Fatalf("batch with a wrong type: %v %+v %v", evs, probs, bp)
	}
	if _, _, bp = DecodeBatch([]byte(`{"events":[`+good+`,`+good+`]}`), false, 1); bp == nil {
		t.Fatal("a batch over the limit was accepted")
	}
	evs, probs, bp = DecodeBatch([]byte(good+"\n"+`{"body":"x"}`+"\n"), true, 10)
	if bp != nil || evs[0] == nil || evs[1] != nil || probs[0].Code != CodeContentNotAccepted {
		t.Fatalf("ndjson with content: %v %+v %v", evs, probs, bp)
	}
}

// TestRefusalCode: content wins, then a raw identifier, then the rest;
// the mediator and a client refusing for it answer alike.
func TestRefusalCode(t *testing.T) {
	p := func(codes ...string) []Problem {
		var out []Problem
		for i, c := range codes {
			out = append(out, Problem{Index: i, Code: c})
		}
		return out
	}
	for want, probs := range map[string][]Problem{
		CodeContentNotAccepted:      p(CodeNotAPseudonym, CodeContentNotAccepted),
		CodeNotAPseudonym:           p(CodeIdentifierInOpaqueField, CodeNotAPseudonym, CodeTooManyRecipients),
		CodeIdentifierInOpaqueField: p(CodeInvalidField, CodeIdentifierInOpaqueField),
		"validation_failed":         p(CodeInvalidField, CodeMissingField),
	} {
		if got := RefusalCode(probs); got != want {
			t.Errorf("%v: %s, want %s", probs, got, want)
		}
	}
	if n := CountEvents([]Problem{{Index: 0}, {Index: 0}, {Index: 3}}); n != 2 {
		t.Errorf("CountEvents = %d, want 2", n)
	}
}

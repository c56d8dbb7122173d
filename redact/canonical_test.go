package redact

import (
	"encoding/json"
	"testing"

	"github.com/gowebpki/jcs"
)

func canonicalOf(t testing.TB, r *Record) (ours, want string) {
	raw, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	w, err := jcs.Transform(raw)
	if err != nil {
		t.Fatal(err)
	}
	return string(r.AppendCanonicalJSON(nil)), string(w)
}

func TestCanonicalMatchesJCS(t *testing.T) {
	full := &Record{EventID: "e\"1\\", Kind: "message", ConversationID: "c\u2028\u0001é🙂<>&", MessageHash: "sha256:ab",
		CEKHash: "sha256:cd", Sender: "hmac-sha256:1:aa", Recipients: []string{"x", "y\t"}, Transport: "sms",
		Status: "read", OccurredAt: "2026-01-01T00:00:00Z", Carrier: &RecordCarrier{MCC: "310", MNC: "26"},
		Downgrade: &Downgrade{From: "rcs", To: "sms", Reason: "x\ny\u007f"}, Client: &Client{Platform: "ios", Version: "1"},
		Submitter: "gw-\"1\u2028", V: RecordVersion}
	minimal := &Record{EventID: "e", Kind: "k", ConversationID: "c", MessageHash: "h", Sender: "s",
		Recipients: []string{}, Transport: "t", Status: "s", OccurredAt: "o",
		Carrier: &RecordCarrier{MCC: "1"}, Downgrade: &Downgrade{From: "a", To: "b"}, Client: &Client{Platform: "web"}}
	for _, r := range []*Record{full, minimal, {Recipients: []string{}}} {
		if ours, want := canonicalOf(t, r); ours != want {
			t.Fatalf("not canonical:\nours %s\njcs  %s", ours, want)
		}
	}
}

func FuzzCanonicalRecord(f *testing.F) {
	f.Add("e", "c", "reason \u2028 \"q\"", "v1", "310", "", true)
	f.Add("\x00\x1f", "\xff\xfe", "", "", "", "26", false)
	f.Fuzz(func(t *testing.T, id, convo, reason, version, mcc, mnc string, withOptional bool) {
		r := &Record{EventID: id, Kind: "message", ConversationID: convo, MessageHash: "sha256:x", Sender: id + convo,
			Recipients: []string{convo, reason}, Transport: "rcs", Status: "sent", OccurredAt: "t"}
		if withOptional {
			r.CEKHash = version
			r.Carrier = &RecordCarrier{MCC: mcc, MNC: mnc}
			r.Downgrade = &Downgrade{From: id, To: convo, Reason: reason}
			r.Client = &Client{Platform: mcc, Version: version}
			r.Submitter = reason
			r.V = len(reason)
		}
		if ours, want := canonicalOf(t, r); ours != want {
			t.Fatalf("not canonical:\nours %q\njcs  %q", ours, want)
		}
	})
}

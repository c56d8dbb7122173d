package redact

import (
	"strings"
	"testing"

	"github.com/mediatorhq/mediator/pseudonym"
)

// The shapes the adversarial review got through, and the ids gateways
// really use, which must keep passing.
var (
	identifierShapes = []string{
		"+14155550100",
		"+1 (415) 555-0100",
		"+44 20 7946 0958",
		"4155550100",
		"415-555-0100",
		"415.555.0100",
		"415/555/0100",
		"415_555_0100",
		"(415) 555 0100",
		"1-415-555-0100",
		"555-0100 ext",
		"４１５５５５０１００",   // full-width digits
		"４１５－５５５－０１００", // full-width digits and dashes
		"alice@example.com",
		"alice＠example.com", // full-width at sign
		"ａｌｉｃｅ＠ｅｘａｍｐｌｅ．ｃｏｍ",
		"conv:+14155550100:+14155550101",
		"gw1/415_555_0100/2",
		"sip:alice@example.org",
		"415-555-0100 415-555-0101 415-555-0102",
	}
	opaqueIDs = []string{
		"ev-1", "conv-42", "evt-1234567", "lg-9f3a-12345678",
		"550e8400-e29b-41d4-a716-446655440000",
		"12345678-1234-1234-1234-123456789012",
		"550e8400e29b41d4a716446655440000",
		"01ARZ3NDEKTSV4RRFFQ69G5FAV",
		"evt-1764504000123456789", // a nanosecond timestamp
		"batch-2026-11-30-0001",
		"2026-11-30T12:34:56Z/7",
		"5.2", "8.1.0-beta.2", "v2.24.23.78", "120.0.6099.109", "2024.11.3",
		"gw-1:000000000042",
	}
)

func TestLooksLikeIdentifier(t *testing.T) {
	for _, s := range identifierShapes {
		if !LooksLikeIdentifier(s) {
			t.Errorf("LooksLikeIdentifier(%q) = false, want true", s)
		}
	}
	for _, s := range opaqueIDs {
		if LooksLikeIdentifier(s) {
			t.Errorf("LooksLikeIdentifier(%q) = true, want false", s)
		}
	}
}

func TestRedactTextShapes(t *testing.T) {
	for _, s := range identifierShapes {
		text := "peer " + s + " unreachable"
		got := RedactText(text)
		if got == Normalize(text) || !strings.Contains(got, redactedMark) {
			t.Errorf("RedactText(%q) = %q: nothing redacted", text, got)
		}
		if !ContainsIdentifier(text) {
			t.Errorf("ContainsIdentifier(%q) = false", text)
		}
		for _, digits := range []string{"555", "0100", "alice"} {
			if strings.Contains(got, digits) {
				t.Errorf("RedactText(%q) = %q: %q left", text, got, digits)
			}
		}
	}
	for _, text := range []string{
		"peer not reachable over RCS",
		"retry 3 of 5 after 30 s",
		"Seized on 2026-11-30 at 14:05 under warrant W-42 for case CR-1142",
		"client 120.0.6099.109 lacks MLS",
		"relay 10.0.0.1 timed out",
	} {
		if got := RedactText(text); got != text {
			t.Errorf("RedactText(%q) = %q, want it unchanged", text, got)
		}
		if ContainsIdentifier(text) {
			t.Errorf("ContainsIdentifier(%q) = true", text)
		}
	}
}

// minimizeWith runs one valid event with field (a dotted path) set to v.
func minimizeWith(t *testing.T, field, v string) []Problem {
	t.Helper()
	ev := validEvent()
	if field == "client.version" {
		ev["client"] = map[string]any{"platform": "ios", "version": v}
	} else {
		ev[field] = v
	}
	_, probs := process(t, mustJSON(ev))
	return probs
}

// TestMinimizeRefusesIdentifiersInClientVersion: client.version is not an
// opaque id but a version, kept as is, so it is still refused for a
// number's or an address's shape; event ids of any shape pass.
func TestMinimizeRefusesIdentifiersInClientVersion(t *testing.T) {
	for _, s := range identifierShapes {
		probs := minimizeWith(t, "client.version", s)
		if len(probs) != 1 || probs[0].Code != CodeIdentifierInOpaqueField || probs[0].Path != "$.client.version" {
			t.Errorf("client.version = %q: got %v, want one %s problem", s, probs, CodeIdentifierInOpaqueField)
		}
		if probs := minimizeWith(t, "event_id", s); probs != nil {
			t.Errorf("event_id = %q refused: %v", s, probs)
		}
	}
	for _, id := range opaqueIDs {
		if probs := minimizeWith(t, "event_id", id); probs != nil {
			t.Errorf("event_id = %q refused: %v", id, probs)
		}
	}
	for _, v := range []string{"5.2", "8.1.0-beta.2", "v2.24.23.78", "120.0.6099.109", "10.15.7+build.3"} {
		if probs := minimizeWith(t, "client.version", v); probs != nil {
			t.Errorf("client.version %q refused: %v", v, probs)
		}
	}
	for _, v := range []string{"latest", "5.2 beta", "1.2.3.4.5", "5.2;drop", "<script>"} {
		if probs := minimizeWith(t, "client.version", v); len(probs) != 1 || probs[0].Code != CodeInvalidField {
			t.Errorf("client.version %q: got %v, want invalid_field", v, probs)
		}
	}
}

func TestCountRecipients(t *testing.T) {
	evs := []*Event{{Recipients: []string{"a", "b"}}, nil, {Recipients: []string{"c"}}}
	if p := CountRecipients(evs, 3); p != nil {
		t.Fatalf("3 recipients under a cap of 3: %v", p)
	}
	if p := CountRecipients(evs, 2); p == nil || p.Code != CodeTooManyRecipients || p.Index != -1 {
		t.Fatalf("3 recipients over a cap of 2: %v", p)
	}
	if DefaultProfile().MaxRecipientsPerRequest != 50000 {
		t.Fatal("the default cap changed without the docs")
	}
}

// TestNamesConversation: a scope or a hold names a conversation by its
// pseudonym, or by an HMAC-era id that never looked like a person.
func TestNamesConversation(t *testing.T) {
	for _, ok := range []string{pseudonym.Synthetic("c"), "conv-a", "chat-room-7"} {
		if !NamesConversation(ok) {
			t.Errorf("%q refused", ok)
		}
	}
	for _, bad := range []string{"", "14155550100@s.whatsapp.net", "+1 415 555 0100", "alice@example.com", "a\x00b", strings.Repeat("x", 129)} {
		if NamesConversation(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}

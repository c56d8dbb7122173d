package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/mediatorhq/mediator/seal"
)

// Identifier shapes the adversarial review got into storage through opaque
// fields and free text; every one carries the canary number 415 555 0177
// or the canary address canary.wide@example.org.
var identifierCanaries = []string{
	"+14155550177",
	"+1 (415) 555-0177",
	"4155550177",
	"415/555/0177",
	"415_555_0177",
	"415.555.0177",
	"４１５５５５０１７７",
	"４１５－５５５－０１７７",
	"canary.wide@example.org",
	"canary.wide＠example.org",
	"ｃａｎａｒｙ．ｗｉｄｅ＠ｅｘａｍｐｌｅ．ｏｒｇ",
}

// What must not be found anywhere afterwards, in any of those shapes.
var identifierCanaryFragments = []string{"555-0177", "5550177", "555/0177", "555_0177", "555.0177",
	"５５５", "０１７７", "canary.wide", "ｃａｎａｒｙ", "＠example"}

// TestIdentifiersInOpaqueFields: an event id is never refused for its
// shape, whatever it holds, and is kept only as a digest; a conversation
// id that is not a pseudonym is refused with 422 not_a_pseudonym (the
// client pseudonymises it before it leaves); a client.version that looks
// like a number or an address is refused with identifier_in_opaque_field,
// and so is a lawful-access justification holding one; a downgrade reason
// is accepted with the identifier redacted. None of the shapes reaches the
// database, the logs or the metrics.
func TestIdentifiersInOpaqueFields(t *testing.T) {
	in := startServe(t, serveOpts{})
	in.waitReady(t, 60*time.Second)
	gw, _ := in.issuer.Issue("gateway-1", []string{"ingest"}, time.Hour)
	olga, _ := in.issuer.Issue("olga", []string{"officer"}, time.Hour)
	events := in.base + "/v1/events"

	var ids []map[string]any
	for _, shape := range identifierCanaries {
		ids = append(ids, event(shape, conv("conv-ok"), nil))
		for _, field := range []string{"conversation_id", "client.version"} {
			ev := event("ok-id", conv("conv-ok"), nil)
			want := "not_a_pseudonym"
			switch field {
			case "client.version":
				ev["client"] = map[string]string{"platform": "ios", "version": shape}
				want = "identifier_in_opaque_field"
			default:
				ev[field] = shape
			}
			code, body := post(t, events, "application/json", gw, batch(ev))
			e, _ := body["error"].(map[string]any)
			if code != 422 || e["code"] != want {
				t.Errorf("%s %q: %d %v, want 422 %s", field, shape, code, body, want)
				continue
			}
			if d, _ := e["details"].([]any); len(d) != 1 || d[0].(map[string]any)["path"] != "$."+field {
				t.Errorf("%s %q: details %v", field, shape, e["details"])
			}
		}
	}
	if code, body := post(t, events, "application/json", gw, batch(ids...)); code != 200 || body["accepted"] != float64(len(ids)) {
		t.Fatalf("events whose ids hold numbers and addresses: %d %v", code, body)
	}

	// A downgrade reason is free text: kept, with the identifier redacted.
	var accepted []map[string]any
	for i, shape := range identifierCanaries {
		accepted = append(accepted, event("reason-"+string(rune('a'+i)), conv("conv-reasons"),
			map[string]any{"downgrade": map[string]string{"from": "rcs-e2ee", "to": "sms", "reason": "peer " + shape + " unreachable"}}))
	}
	if code, body := post(t, events, "application/json", gw, batch(accepted...)); code != 200 || body["accepted"] != float64(len(accepted)) {
		t.Fatalf("events with identifiers only in their downgrade reasons: %d %v", code, body)
	}

	// A lawful-access justification holding one is refused before anything is kept.
	_, rk, err := seal.NewKey(seal.KEMX25519)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	for _, shape := range identifierCanaries {
		b, _ := json.Marshal(map[string]any{"case_id": "case-1", "legal_basis": "court_order", "warrant_ref": "W-1", "jurisdiction": "US",
			"justification": "The suspect used " + shape + " daily.", "recipient_public_key": rk, "expires_at": now.Add(24 * time.Hour),
			"scope": map[string]any{"conversation_ids": []string{conv("conv-reasons")}, "from": now.Add(-time.Hour), "to": now.Add(time.Hour)}})
		code, body := post(t, in.base+"/v1/access-requests", "application/json", olga, b)
		if e, _ := body["error"].(map[string]any); code != 422 || e["code"] != "identifier_in_opaque_field" {
			t.Errorf("justification with %q: %d %v, want 422 identifier_in_opaque_field", shape, code, body)
		}
	}

	metrics := rawGet(t, in.metrics)
	if !strings.Contains(metrics, `mediator_events_rejected_total{reason="identifier_in_opaque_field"}`) ||
		!strings.Contains(metrics, `mediator_events_rejected_total{reason="not_a_pseudonym"}`) {
		t.Errorf("no rejection counted by reason:\n%s", grepLines(metrics, "mediator_events_rejected"))
	}
	dump := dumpTables(t, in.dsn)
	if !strings.Contains(dump, "[redacted]") {
		t.Fatal("no redacted reason in the dump; the canary check proves nothing")
	}
	for _, where := range []struct{ name, text string }{{"database", dump}, {"logs", in.proc.Output()}, {"metrics", metrics}} {
		for _, c := range append(identifierCanaryFragments, identifierCanaries...) {
			if strings.Contains(where.text, c) {
				t.Errorf("canary %q found in %s", c, where.name)
			}
		}
	}
}

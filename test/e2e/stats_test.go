package e2e

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mediatorhq/mediator/loadgen"
	"github.com/mediatorhq/mediator/pseudonym"
)

// TestSOCStatsWithoutIdentifiers: a SOC dashboard asks for transport
// counts, E2EE coverage and downgrades by carrier, platform and transport;
// no group or count under k comes back, and nothing in the answer is a
// pseudonym or a conversation id.
func TestSOCStatsWithoutIdentifiers(t *testing.T) {
	in := startServe(t, serveOpts{})
	in.waitReady(t, 60*time.Second)
	gw, _ := in.issuer.Issue("gateway-1", []string{"ingest"}, time.Hour)
	aud, _ := in.issuer.Issue("soc", []string{"auditor"}, time.Hour)
	officer, _ := in.issuer.Issue("olga", []string{"officer"}, time.Hour)

	// Reports cover complete, aligned windows only: the events happened
	// in the last hour of yesterday (UTC), and the window asked is 24h.
	yesterday := time.Now().UTC().Truncate(24 * time.Hour).Add(-time.Hour).Format(time.RFC3339)
	var b bytes.Buffer
	loadgen.WriteBatch(&b, "stats", 0, 3000)
	batch := regexp.MustCompile(`"occurred_at":"[^"]+"`).ReplaceAll(b.Bytes(), []byte(`"occurred_at":"`+yesterday+`"`))
	if code, body := post(t, in.base+"/v1/events", "application/json", gw, batch); code != 200 || body["accepted"] != 3000.0 {
		t.Fatalf("ingest: %d %v", code, body)
	}
	// Three messages from a carrier nobody else uses: a group under k.
	var small strings.Builder
	small.WriteString(`{"events":[`)
	for i := range 3 {
		if i > 0 {
			small.WriteString(",")
		}
		fmt.Fprintf(&small, `{"event_id":"lonely-%d","kind":"message","conversation_id":"%s","message_hash":"sha256:%064d",
			"sender":"%s","recipients":["%s"],"transport":"sms","status":"sent",
			"occurred_at":"%s","carrier":{"mcc":"505"}}`, i, conv("conv-lonely"), i, pseudonym.Synthetic("+15005550100"), pseudonym.Synthetic("+15005550101"), yesterday)
	}
	small.WriteString("]}")
	if code, body := post(t, in.base+"/v1/events", "application/json", gw, []byte(small.String())); code != 200 {
		t.Fatalf("ingest: %d %v", code, body)
	}

	if code, _, _ := call(t, "GET", in.base+"/v1/stats/transport", officer); code != 403 {
		t.Fatalf("an officer read the SOC stats: %d", code)
	}
	if code, body, _ := call(t, "GET", in.base+"/v1/stats/transport?group_by=sender", aud); code != 422 {
		t.Fatalf("group_by=sender: %d %v", code, body)
	}
	// Counts are written every few seconds.
	var rep map[string]any
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, rep, _ = call(t, "GET", in.base+"/v1/stats/transport?window=24h&group_by=mcc", aud)
		if groups, _ := rep["groups"].([]any); len(groups) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no counts after 15s: %v", rep)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if code, body, _ := call(t, "GET", in.base+"/v1/stats/transport?window=61m", aud); code != 422 {
		t.Fatalf("a window that is not one of the fixed sizes: %d %v", code, body)
	}
	if rep["min_group_size"] != 10.0 || rep["rounded_to"] != 10.0 || rep["suppressed_groups"].(float64) < 1 ||
		rep["to"] != time.Now().UTC().Truncate(24*time.Hour).Format(time.RFC3339) {
		t.Fatalf("report: %v", rep)
	}
	for _, by := range []string{"mcc", "platform", "transport"} {
		code, rep, _ := call(t, "GET", in.base+"/v1/stats/transport?window=24h&group_by="+by, aud)
		if code != 200 {
			t.Fatalf("%s: %d %v", by, code, rep)
		}
		text := fmt.Sprint(rep)
		for _, forbidden := range []string{"hmac-sha256", "conv-", "stats-", "lonely", "+1500"} {
			if strings.Contains(text, forbidden) {
				t.Fatalf("%s: the report carries %q", by, forbidden)
			}
		}
		var messages float64
		for _, g := range rep["groups"].([]any) {
			g := g.(map[string]any)
			if g["key"] == "505" {
				t.Fatalf("%s: the group under k was reported: %v", by, g)
			}
			if g["messages"].(float64)+g["downgrades"].(float64) < 10 {
				t.Fatalf("%s: group under k: %v", by, g)
			}
			for _, n := range []any{g["messages"], g["downgrades"]} {
				if int64(n.(float64))%10 != 0 {
					t.Fatalf("%s: a total that is not a multiple of k: %v", by, g)
				}
			}
			for _, c := range g["counts"].([]any) {
				if n := c.(map[string]any)["events"].(float64); n < 10 || int64(n)%10 != 0 {
					t.Fatalf("%s: cell under k or not a multiple of it: %v", by, c)
				}
			}
			messages += g["messages"].(float64)
		}
		if messages == 0 {
			t.Fatalf("%s: no messages counted: %v", by, rep)
		}
	}
}

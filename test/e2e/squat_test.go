package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestEventIDsCannotBeSquatted plays a gateway that claims another
// gateway's event id first: the genuine event is still logged, as its own
// entry naming its submitter; a resend of it is a duplicate with the
// original seq; a resend with other content is 409 event_id_conflict and
// writes nothing.
func TestEventIDsCannotBeSquatted(t *testing.T) {
	in := startServe(t, serveOpts{})
	in.waitReady(t, 60*time.Second)
	evil, _ := in.issuer.Issue("gw-evil", []string{"ingest"}, time.Hour)
	genuine, _ := in.issuer.Issue("gw-genuine", []string{"ingest"}, time.Hour)
	aud, _ := in.issuer.Issue("auditor-1", []string{"auditor"}, time.Hour)
	events := in.base + "/v1/events"

	forged := batch(event("ev-shared", conv("conv-forged"), nil))
	if code, body := post(t, events, "application/json", evil, forged); code != 200 || body["accepted"] != 1.0 {
		t.Fatalf("the squatter: %d %v", code, body)
	}
	genuineBody := batch(event("ev-shared", conv("conv-real"), nil))
	code, body := post(t, events, "application/json", genuine, genuineBody)
	if code != 200 || body["accepted"] != 1.0 || body["duplicates"] != 0.0 || body["first_seq"] != 1.0 {
		t.Fatalf("the genuine event after the squat: %d %v, want accepted as seq 1", code, body)
	}
	if code, body := post(t, events, "application/json", genuine, genuineBody); code != 200 || body["duplicates"] != 1.0 || body["first_seq"] != 1.0 {
		t.Fatalf("a resend: %d %v, want a duplicate of seq 1", code, body)
	}
	changed := batch(event("ev-new", conv("conv-real"), nil), event("ev-shared", conv("conv-changed"), nil))
	code, body = post(t, events, "application/json", genuine, changed)
	e, _ := body["error"].(map[string]any)
	if code != 409 || e["code"] != "event_id_conflict" {
		t.Fatalf("a resend with other content: %d %v, want 409 event_id_conflict", code, body)
	}
	if d, _ := e["details"].([]any); len(d) != 1 || d[0].(map[string]any)["index"] != 1.0 {
		t.Fatalf("conflict details: %v", e["details"])
	}
	// Nothing of the conflicting request was written, and each entry names
	// who sent it.
	_, page, _ := call(t, "GET", in.base+"/v1/audit/entries?limit=10", aud)
	entries, _ := page["entries"].([]any)
	if len(entries) != 2 {
		t.Fatalf("entries: %v", page)
	}
	for i, who := range []string{"gw-evil", "gw-genuine"} {
		b, _ := json.Marshal(entries[i])
		if s := string(b); !strings.Contains(s, `"submitter":"`+who+`"`) {
			t.Errorf("entry %d does not name %s: %s", i, who, s)
		}
	}
}

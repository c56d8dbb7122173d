package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/mediatorhq/mediator/pseudonym"
)

// Canary values: none of them may ever be stored, logged or exported.
const (
	canaryPhone  = "+1 415-555-0142"
	canaryDigits = "4155550142"
	canaryEmail  = "canary.person@example.org"
	canaryBody   = "CANARY-BODY-meet me at the docks"
)

// conv is the pseudonym the tests' gateways send for conversation name
// (pseudonym.Synthetic): the mediator checks only a pseudonym's form.
func conv(name string) string {
	if pseudonym.Valid(name) {
		return name
	}
	return pseudonym.Synthetic(name)
}

// event is an event as a gateway's client sends it to the mediator: its
// identifiers (the canary sender and recipients, the conversation) are
// pseudonyms, as the client makes them before anything leaves.
func event(id, convo string, extra map[string]any) map[string]any {
	e := map[string]any{
		"event_id":        id,
		"kind":            "message",
		"conversation_id": conv(convo),
		"message_hash":    "sha256:" + strings.Repeat("0a", 32),
		"sender":          pseudonym.Synthetic(canaryPhone),
		"recipients":      []string{pseudonym.Synthetic("+44 20 7946 0958"), pseudonym.Synthetic(canaryEmail)},
		"transport":       "rcs-e2ee",
		"status":          "delivered",
		"occurred_at":     time.Now().Add(-time.Minute).UTC().Format(time.RFC3339Nano),
		"carrier":         map[string]string{"mcc": "310", "mnc": "260"},
		"downgrade":       map[string]string{"from": "rcs-e2ee", "to": "sms", "reason": "peer offline, call " + canaryPhone + " or mail " + canaryEmail},
	}
	for k, v := range extra {
		e[k] = v
	}
	return e
}

// post sends body to path with a content type and token and decodes JSON.
func post(t *testing.T, url, contentType, token string, body []byte) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return resp.StatusCode, m
}

func batch(events ...map[string]any) []byte {
	b, _ := json.Marshal(map[string]any{"events": events})
	return b
}

// getText GETs url with token and returns the status and body.
func getText(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestIngestToProof is the gateway-to-court story: a gateway sends events,
// content is refused, resends are idempotent, an auditor fetches a signed
// checkpoint and proofs that verify with x/mod/sumdb, exports an evidence
// bundle that verifies offline, and `mediator audit verify` passes until a
// superuser edits a row, then names it.
func TestIngestToProof(t *testing.T) {
	in := startServe(t, serveOpts{extraEnv: []string{"MEDIATOR_LOG_LEVEL=debug"}})
	in.waitReady(t, 60*time.Second)
	gw, _ := in.issuer.Issue("gateway-1", []string{"ingest"}, time.Hour)
	aud, _ := in.issuer.Issue("auditor-1", []string{"auditor"}, time.Hour)
	events := in.base + "/v1/events"

	// What the chapters learn and later ones use.
	var (
		vkey   string    // the log's verifier key
		root   tlog.Hash // the signed root of the six entries
		bundle string    // the evidence bundle of conv-a
	)

	// Who may ingest.
	step(t, "only a gateway may ingest, and only JSON", func(t *testing.T) {
		if code, _ := post(t, events, "application/json", "", batch(event("x", "c", nil))); code != 401 {
			t.Fatalf("no token: %d", code)
		}
		if code, _ := post(t, events, "application/json", aud, batch(event("x", "c", nil))); code != 403 {
			t.Fatalf("auditor ingest: %d", code)
		}
		if code, body := post(t, events, "text/plain", gw, batch(event("x", "c", nil))); code != 415 || errorCode(body) != "unsupported_media_type" {
			t.Fatalf("text/plain: %d %v", code, body)
		}
	})

	// Three good events.
	step(t, "the gateway sends three events", func(t *testing.T) {
		code, body := post(t, events, "application/json", gw, batch(event("e1", conv("conv-a"), nil), event("e2", conv("conv-a"), nil), event("e3", conv("conv-b"), nil)))
		if code != 200 || body["accepted"] != 3.0 || body["duplicates"] != 0.0 || body["first_seq"] != 0.0 || body["last_seq"] != 2.0 {
			t.Fatalf("first batch: %d %v", code, body)
		}
	})

	// A resend is not appended twice and returns the original seqs.
	step(t, "a resend is not appended twice", func(t *testing.T) {
		code, body := post(t, events, "application/json", gw, batch(event("e2", conv("conv-a"), nil), event("e3", conv("conv-b"), nil)))
		if code != 200 || body["accepted"] != 0.0 || body["duplicates"] != 2.0 || body["first_seq"] != 1.0 || body["last_seq"] != 2.0 {
			t.Fatalf("resend: %d %v", code, body)
		}
	})

	step(t, "content is refused and never stored", func(t *testing.T) {
		// Content is refused with a reason, index and path, and never stored.
		code, body := post(t, events, "application/json", gw, batch(event("bad1", conv("conv-a"), map[string]any{"body": canaryBody})))
		if code != 422 || errorCode(body) != "content_not_accepted" || !strings.Contains(fmt.Sprint(body), "$.body") {
			t.Fatalf("content: %d %v", code, body)
		}
		// Atomic: one bad event refuses the whole request.
		code, body = post(t, events+"?atomic=true", "application/json", gw, batch(event("e4", conv("conv-a"), nil), event("bad2", conv("conv-a"), map[string]any{"text": canaryBody})))
		if code != 422 || errorCode(body) != "content_not_accepted" {
			t.Fatalf("atomic: %d %v", code, body)
		}
		// Not atomic: the good one is kept, the bad one reported by index.
		code, body = post(t, events, "application/json", gw, batch(event("e4", conv("conv-a"), nil), event("bad3", conv("conv-a"), map[string]any{"attachment_url": "https://x/" + canaryBody})))
		if code != 200 || body["accepted"] != 1.0 || body["rejected"] != 1.0 || body["first_seq"] != 3.0 {
			t.Fatalf("mixed: %d %v", code, body)
		}
	})

	step(t, "the gateway sends NDJSON", func(t *testing.T) {
		var nd bytes.Buffer
		for _, id := range []string{"e5", "e6"} {
			b, _ := json.Marshal(event(id, conv("conv-c"), nil))
			nd.Write(b)
			nd.WriteByte('\n')
		}
		code, body := post(t, events, "application/x-ndjson", gw, nd.Bytes())
		if code != 200 || body["accepted"] != 2.0 || body["last_seq"] != 5.0 {
			t.Fatalf("ndjson: %d %v", code, body)
		}
	})

	// The checkpoint job signs within its interval (1 s).
	step(t, "an auditor fetches a signed checkpoint", func(t *testing.T) {
		var cpText string
		deadline := time.Now().Add(10 * time.Second)
		for {
			code, txt := getText(t, in.base+"/v1/audit/checkpoint", aud)
			if code == 200 && strings.Contains(txt, "\n6\n") {
				cpText = txt
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no checkpoint for size 6: %d %q", code, txt)
			}
			time.Sleep(100 * time.Millisecond)
		}
		_, vkey = getText(t, in.base+"/v1/audit/verifier-key", aud)
		verifier, err := note.NewVerifier(strings.TrimSpace(vkey))
		if err != nil {
			t.Fatalf("verifier key %q: %v", vkey, err)
		}
		n, err := note.Open([]byte(cpText), note.VerifierList(verifier))
		if err != nil {
			t.Fatalf("checkpoint does not verify: %v\n%s", err, cpText)
		}
		lines := strings.Split(n.Text, "\n")
		if lines[0] != "mediator/audit" || lines[1] != "6" {
			t.Fatalf("checkpoint body: %q", n.Text)
		}
		rootBytes, _ := base64.StdEncoding.DecodeString(lines[2])
		copy(root[:], rootBytes)
	})

	// Every entry's inclusion proof checks against the signed root.
	step(t, "every entry's inclusion proof checks against the signed root", func(t *testing.T) {
		for seq := 0; seq < 6; seq++ {
			_, entryBody, _ := call(t, "GET", fmt.Sprintf("%s/v1/audit/entries/%d", in.base, seq), aud)
			leaf, _ := base64.StdEncoding.DecodeString(entryBody["leaf"].(string))
			_, proofBody, _ := call(t, "GET", fmt.Sprintf("%s/v1/audit/proof/inclusion?seq=%d&tree_size=6", in.base, seq), aud)
			if err := tlog.CheckRecord(decodeHashes(t, proofBody["hashes"]), 6, root, int64(seq), tlog.RecordHash(leaf)); err != nil {
				t.Fatalf("inclusion of %d: %v (%v)", seq, err, proofBody)
			}
			rec := entryBody["record"].(map[string]any)
			if !pseudonym.Valid(rec["sender"].(string)) || rec["v"] != float64(2) || !strings.HasPrefix(rec["event_id"].(string), "eid1:") {
				t.Fatalf("a record of the pseudonym era: %v", rec)
			}
		}
		_, p3, _ := call(t, "GET", in.base+"/v1/audit/proof/consistency?from=3&to=6", aud)
		if len(decodeHashes(t, p3["hashes"])) == 0 {
			t.Fatalf("consistency proof: %v", p3)
		}
		if code, _, _ := call(t, "GET", in.base+"/v1/audit/proof/inclusion?seq=9&tree_size=99", aud); code != 400 && code != 404 {
			t.Fatalf("proof beyond the log: %d", code)
		}
	})

	// Search by conversation, paged.
	step(t, "an auditor searches by conversation, paged", func(t *testing.T) {
		_, page, _ := call(t, "GET", in.base+"/v1/audit/entries?conversation_id="+conv("conv-a")+"&limit=2", aud)
		if got := page["entries"].([]any); len(got) != 2 || page["next_after_seq"] != 1.0 {
			t.Fatalf("page 1: %v", page)
		}
		_, page, _ = call(t, "GET", in.base+"/v1/audit/entries?conversation_id="+conv("conv-a")+"&limit=2&after_seq=1", aud)
		if got := page["entries"].([]any); len(got) != 1 || got[0].(map[string]any)["seq"] != 3.0 {
			t.Fatalf("page 2: %v", page)
		}
	})

	// Export an evidence bundle and verify it offline with the CLI.
	step(t, "an exported bundle verifies offline and an edited one does not", func(t *testing.T) {
		var code int
		code, bundle = getText(t, in.base+"/v1/audit/export?conversation_id="+conv("conv-a"), aud)
		if code != 200 || strings.Count(bundle, "\n") != 5 || !strings.HasPrefix(bundle, `{"type":"header"`) || !strings.Contains(bundle, `{"type":"trailer","count":3,`) {
			t.Fatalf("export: %d\n%s", code, bundle)
		}
		dir := t.TempDir()
		bundlePath := filepath.Join(dir, "bundle.ndjson")
		os.WriteFile(bundlePath, []byte(bundle), 0o600)
		if out, _, err := runCmd(t, nil, "audit", "verify", "--bundle", bundlePath, "--key", strings.TrimSpace(vkey)); err != nil || !strings.Contains(out, "ok: 3 entries") {
			t.Fatalf("bundle verify: %v %s", err, out)
		}
		bundleLines := strings.SplitAfter(bundle, "\n")
		for name, c := range map[string]struct{ bundle, says string }{
			"a record edited":       {bundleLines[0] + strings.Replace(strings.Join(bundleLines[1:], ""), `"conversation_id":"`+conv("conv-a")+`"`, `"conversation_id":"`+conv("conv-z")+`"`, 1), "first bad seq: 0"},
			"an entry line removed": {bundleLines[0] + strings.Join(bundleLines[2:], ""), "entries were removed or added"},
			"cut short":             {strings.Join(bundleLines[:3], ""), "no trailer"},
			"only the header":       {bundleLines[0], "no trailer"},
		} {
			os.WriteFile(bundlePath, []byte(c.bundle), 0o600)
			if out, _, err := runCmd(t, nil, "audit", "verify", "--bundle", bundlePath, "--key", strings.TrimSpace(vkey)); err == nil || !strings.Contains(out, c.says) {
				t.Errorf("%s: %v %s", name, err, out)
			}
		}
	})

	// Nothing sensitive anywhere: tables, logs, metrics, bundle.
	step(t, "nothing sensitive is in the tables, logs, metrics or bundle", func(t *testing.T) {
		metrics := rawGet(t, in.metrics)
		if !strings.Contains(metrics, `mediator_events_rejected_total{reason="content_not_accepted"} 3`) ||
			!strings.Contains(metrics, `mediator_downgrades_total{from="rcs-e2ee",to="sms"} 6`) {
			t.Fatalf("ingest metrics missing:\n%s", grepLines(metrics, "mediator_events|mediator_downgrades"))
		}
		dump := dumpTables(t, in.dsn)
		for _, where := range []struct{ name, text string }{
			{"database", dump}, {"logs", in.proc.Output()}, {"metrics", metrics}, {"bundle", bundle},
		} {
			for _, c := range []string{canaryPhone, canaryDigits, canaryEmail, canaryBody, "canary.person", "20 7946 0958"} {
				if strings.Contains(where.text, c) {
					t.Errorf("canary %q found in %s", c, where.name)
				}
			}
		}
		if !strings.Contains(dump, "ps1_") {
			t.Fatal("the dump holds no records; the canary check proved nothing")
		}
	})

	// `mediator audit verify` passes, then names a row a superuser edited.
	step(t, "audit verify passes, then names a row a superuser edited", func(t *testing.T) {
		verifyEnv := []string{"DATABASE_URL=" + in.dsn}
		out, _, err := runCmd(t, verifyEnv, "audit", "verify", "--key", strings.TrimSpace(vkey))
		if err != nil || !strings.Contains(out, "ok: 6 entries") {
			t.Fatalf("audit verify: %v %s", err, out)
		}
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, in.dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		for _, q := range []string{
			"ALTER TABLE audit_entries DISABLE TRIGGER audit_entries_append_only",
			`UPDATE audit_entries SET leaf = convert_to(replace(convert_from(leaf, 'UTF8'), '"status":"delivered"', '"status":"failed"'), 'UTF8') WHERE seq = 4`,
		} {
			if _, err := conn.Exec(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		out, _, err = runCmd(t, verifyEnv, "audit", "verify", "--key", strings.TrimSpace(vkey))
		if err == nil || !strings.Contains(out, "first bad seq: 4") {
			t.Fatalf("audit verify after tampering: %v %s", err, out)
		}
	})
}

func decodeHashes(t *testing.T, v any) []tlog.Hash {
	t.Helper()
	list, _ := v.([]any)
	out := make([]tlog.Hash, len(list))
	for i, x := range list {
		b, err := base64.StdEncoding.DecodeString(x.(string))
		if err != nil || len(b) != 32 {
			t.Fatalf("bad hash %v", x)
		}
		copy(out[i][:], b)
	}
	return out
}

// dumpTables returns every row of every table in the database as text,
// with bytea shown as UTF-8 where it is.
func dumpTables(t *testing.T, dsn string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, tbl := range tables {
		rows, err := conn.Query(ctx, "SELECT t::text FROM "+pgx.Identifier{tbl}.Sanitize()+" t")
		if err != nil {
			t.Fatal(err)
		}
		texts, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range texts {
			b.WriteString(s)
			b.WriteByte('\n')
		}
	}
	// bytea columns render as hex; add the leaves decoded.
	rows, err = conn.Query(ctx, "SELECT convert_from(leaf, 'UTF8') FROM audit_entries")
	if err != nil {
		t.Fatal(err)
	}
	leaves, _ := pgx.CollectRows(rows, pgx.RowTo[string])
	b.WriteString(strings.Join(leaves, "\n"))
	return b.String()
}

func grepLines(s, pattern string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, p := range strings.Split(pattern, "|") {
			if strings.Contains(l, p) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

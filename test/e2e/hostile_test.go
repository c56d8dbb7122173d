package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mediatorhq/mediator/pseudonym"
)

// TestHostileInput sends what an attacker or a broken client would: huge
// bodies, deep nesting, invalid UTF-8, NUL bytes, huge numbers, wrong
// content types, SQL metacharacters in every filter, path tricks, and slow
// headers. Each gets a clear 4xx (never a 500, never internals), nothing
// is stored, and the service stays healthy with a log that verifies.
func TestHostileInput(t *testing.T) {
	in := startServe(t, serveOpts{})
	in.waitReady(t, 60*time.Second)
	tok := func(roles ...string) string { s, _ := in.issuer.Issue("hostile", roles, time.Hour); return s }
	gw, dep, aud, off, adm := tok("ingest"), tok("depositor"), tok("auditor"), tok("officer"), tok("admin")

	event := func(extra string) string {
		return `{"event_id":"h-1","kind":"message","conversation_id":"` + conv("c") + `","message_hash":"sha256:` + strings.Repeat("0", 64) +
			`","sender":"` + pseudonym.Synthetic("+14155550100") + `","recipients":["` + pseudonym.Synthetic("+14155550101") + `"],"transport":"sms","status":"sent","occurred_at":"2026-11-27T00:00:00Z"` + extra + `}`
	}
	deep := strings.Repeat(`{"a":`, 100000) + "1" + strings.Repeat("}", 100000)
	type tcase struct {
		name, method, path, ctype, token string
		body                             []byte
		want                             []int
	}
	cases := []tcase{
		{"events body over 8 MiB", "POST", "/v1/events", "application/json", gw, bytes.Repeat([]byte(" "), 9<<20), []int{413}},
		{"deposit body over 1 MiB", "POST", "/v1/escrow/keys", "application/json", dep, bytes.Repeat([]byte(" "), 2<<20), []int{413}},
		{"deeply nested event", "POST", "/v1/events", "application/json", gw, []byte(`{"events":[` + deep + `]}`), []int{400, 422}},
		{"deeply nested request", "POST", "/v1/access-requests", "application/json", off, []byte(deep), []int{400}},
		{"invalid UTF-8 in an id", "POST", "/v1/events", "application/json", gw, []byte(`{"events":[` + strings.Replace(event(""), `"h-1"`, "\"h\xff\xfe\"", 1) + `]}`), []int{422}},
		{"NUL byte in an id", "POST", "/v1/events", "application/json", gw, []byte(`{"events":[` + strings.Replace(event(""), `"h-1"`, `"h\u00001"`, 1) + `]}`), []int{422}},
		{"NUL byte in a deposit", "POST", "/v1/escrow/keys", "application/json", dep, []byte(`{"conversation_id":"c\u0000","key_id":"k","key":"MDEyMzQ1Njc4OWFiY2RlZg=="}`), []int{422}},
		{"huge number for a time", "POST", "/v1/events", "application/json", gw, []byte(`{"events":[` + strings.Replace(event(""), `"2026-11-27T00:00:00Z"`, "1e400", 1) + `]}`), []int{422}},
		{"huge number for a KEM", "POST", "/v1/access-requests", "application/json", off, []byte(`{"recipient_public_key":{"kem_id":1e400}}`), []int{400}},
		{"huge array of events", "POST", "/v1/events", "application/json", gw, []byte(`{"events":[` + strings.TrimSuffix(strings.Repeat(`{},`, 10001), ",") + `]}`), []int{422}},
		{"content smuggled in an unknown field", "POST", "/v1/events", "application/json", gw, []byte(`{"events":[` + event(`,"client":{"platform":"ios","body":"hi"}`) + `]}`), []int{422}},
		{"text/plain events", "POST", "/v1/events", "text/plain", gw, []byte(`{"events":[]}`), []int{415}},
		{"no content type on a deposit", "POST", "/v1/escrow/keys", "", dep, []byte(`{}`), []int{415}},
		{"form instead of JSON", "POST", "/v1/roster/proposals", "application/x-www-form-urlencoded", adm, []byte(`threshold=3`), []int{415}},
		{"trailing data after JSON", "POST", "/v1/roster/proposals", "application/json", adm, []byte(`{"threshold":3} {"threshold":2}`), []int{400}},
		{"SQL in conversation filter", "GET", "/v1/audit/entries?conversation_id=" + url.QueryEscape(`' OR '1'='1`) + "&kind=" + url.QueryEscape(`x'; DROP TABLE audit_entries; --`), "", aud, nil, []int{200}},
		{"SQL in time filter", "GET", "/v1/audit/entries?from=" + url.QueryEscape(`2026-01-01' OR 1=1--`), "", aud, nil, []int{400}},
		{"SQL in seq", "GET", "/v1/audit/entries/" + url.PathEscape(`1 OR 1=1`), "", aud, nil, []int{400}},
		{"SQL in after_seq", "GET", "/v1/audit/entries?after_seq=" + url.QueryEscape(`0;SELECT`), "", aud, nil, []int{400}},
		{"SQL in proof", "GET", "/v1/audit/proof/inclusion?seq=0&tree_size=" + url.QueryEscape(`1)--`), "", aud, nil, []int{400}},
		{"SQL in export", "GET", "/v1/audit/export?conversation_id=" + url.QueryEscape(`'; DELETE FROM escrow_keys; --`), "", aud, nil, []int{200, 404}},
		{"SQL in status filter", "GET", "/v1/access-requests?status=" + url.QueryEscape(`pending' OR 1=1--`), "", aud, nil, []int{422}},
		{"SQL in request id", "GET", "/v1/access-requests/" + url.PathEscape(`' OR 1=1--`), "", aud, nil, []int{404}},
		{"SQL in a roster digest", "GET", "/v1/roster/proposals/" + url.PathEscape(`x'; DROP TABLE roster_versions;--`), "", adm, nil, []int{404}},
		{"SQL in group_by", "GET", "/v1/stats/transport?group_by=" + url.QueryEscape(`mcc; DROP TABLE transport_counts`), "", aud, nil, []int{422}},
		{"SQL in window", "GET", "/v1/stats/transport?window=" + url.QueryEscape(`1h' --`), "", aud, nil, []int{422}},
		{"dot segments to a public route", "GET", "/v1/audit/../../healthz", "", "", nil, []int{404}},
		{"dot segments past auth", "GET", "/healthz/../v1/whoami", "", "", nil, []int{404}},
		{"encoded dot segments", "GET", "/v1/access-requests/%2e%2e/%2e%2e/v1/approvers", "", aud, nil, []int{404}},
		{"double slash", "GET", "//v1/whoami", "", "", nil, []int{404}},
		{"encoded slash in an id", "GET", "/v1/access-requests/a%2Fb", "", aud, nil, []int{404}},
		{"trailing slash", "GET", "/v1/whoami/", "", aud, nil, []int{404}},
		{"very long path", "GET", "/v1/access-requests/" + strings.Repeat("a", 8000), "", aud, nil, []int{404}},
	}
	client := &http.Client{Timeout: 30 * time.Second}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequest(c.method, in.base+"/", bytes.NewReader(c.body))
			if err != nil {
				t.Fatal(err)
			}
			// Send the path exactly as written: no client-side cleaning.
			req.URL.Opaque = "//" + req.URL.Host + c.path
			if c.ctype != "" {
				req.Header.Set("Content-Type", c.ctype)
			}
			if c.token != "" {
				req.Header.Set("Authorization", "Bearer "+c.token)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !slices.Contains(c.want, resp.StatusCode) {
				t.Fatalf("%s %s: %d, want one of %v: %.300s", c.method, c.path[:min(len(c.path), 120)], resp.StatusCode, c.want, b)
			}
			for _, word := range internals {
				if strings.Contains(string(b), word) {
					t.Fatalf("the answer shows internals (%q): %.300s", word, b)
				}
			}
			if strings.Contains(string(b), "Go struct") || strings.Contains(string(b), "access.") {
				t.Fatalf("the answer names Go types: %.300s", b)
			}
			if resp.StatusCode >= 400 && !strings.Contains(string(b), `"code"`) {
				t.Fatalf("an error without the envelope: %.300s", b)
			}
		})
	}

	// Slow headers: a client that never finishes its headers is cut off.
	conn, err := net.Dial("tcp", strings.TrimPrefix(in.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
	t0 := time.Now()
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	line, _ := bufio.NewReader(conn).ReadString('\n') // the server's answer or close
	conn.Close()
	if held := time.Since(t0); held > 10*time.Second || strings.Contains(line, "200") {
		t.Fatalf("a slow-header client held its connection for %v (read %q)", held, line)
	}

	// Nothing of it got in, and the service is well.
	in.waitReady(t, 10*time.Second)
	if n := countRows(t, in.dsn, "audit_entries"); n != 0 {
		t.Fatalf("hostile input left %d log entries", n)
	}
	if n := countRows(t, in.dsn, "roster_proposals"); n != 0 {
		t.Fatalf("hostile input left %d roster proposals", n)
	}
	if strings.Contains(in.proc.Output(), "panic") {
		t.Fatalf("the service panicked:\n%s", in.proc.Output())
	}
}

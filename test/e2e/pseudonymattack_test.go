package e2e

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mediatorhq/mediator/client"
	"github.com/mediatorhq/mediator/pseudonym"
	"github.com/mediatorhq/mediator/pseudonymservice"
	"github.com/mediatorhq/mediator/redact"
)

// recorder keeps every byte the pseudonym service receives and sends:
// its operator's whole view of the traffic.
type recorder struct {
	next http.Handler
	mu   sync.Mutex
	seen bytes.Buffer
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	req.Body = io.NopCloser(bytes.NewReader(body))
	rec := httptest.NewRecorder()
	r.next.ServeHTTP(rec, req)
	r.mu.Lock()
	r.seen.WriteString(req.Method + " " + req.URL.String() + "\n")
	r.seen.Write(body)
	r.seen.WriteByte('\n')
	r.seen.Write(rec.Body.Bytes())
	r.seen.WriteByte('\n')
	r.mu.Unlock()
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())
}

// candidates are the 10,000 phone numbers an attacker tries: +1 415 555
// 0000 to 9999. The target is one of them.
func candidates() []string {
	out := make([]string, 10000)
	for i := range out {
		out[i] = fmt.Sprintf("+1415555%04d", i)
	}
	return out
}

// TestNeitherSideAloneLinks plays both parties of the pseudonym split
// (docs/threat-model.md, "Who can link a pseudonym to a person"). A
// gateway sends events from a target number through the real VOPRF
// service and the client package. Then:
//
//   - the mediator's side — its host, the database superuser, the Vault
//     root token, every token the mediator's issuer can mint, but no
//     credential at the pseudonym service — tries all 10,000 candidate
//     numbers with everything it holds (hashes, every Transit key it can
//     export, the HMAC era's scheme, the service without a credential)
//     and links none of them to the stored pseudonym;
//   - the service's operator — its key, its logs and metrics, every byte
//     its callers sent and it answered, but no database — computes the
//     pseudonym of every candidate and finds none of them in all it saw:
//     it saw blinded elements only, fresh for every evaluation;
//   - together (the key and the database) they find the target, which is
//     what proves the two checks above could have failed.
func TestNeitherSideAloneLinks(t *testing.T) {
	ctx := context.Background()
	in := startServe(t, serveOpts{})
	in.waitReady(t, 60*time.Second)

	key, err := pseudonym.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	var serviceLogs bytes.Buffer
	svc, err := pseudonymservice.NewService(pseudonymservice.ServiceConfig{Key: key, Log: slog.New(slog.NewJSONHandler(&serviceLogs, nil)),
		MetricsToken: []byte("monitoring-token-of-the-operator"), Callers: []pseudonymservice.Caller{{Name: "gw-1", Token: []byte("gateway-credential")}}})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{next: svc.Handler()}
	srv := httptest.NewServer(rec)
	defer srv.Close()

	all := candidates()
	const target = 4711
	gwToken, _ := in.issuer.Issue("gateway-1", []string{"ingest"}, time.Hour)
	gw, err := client.New(in.base, gwToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	// No cache: every identifier is evaluated afresh, so the operator sees
	// each evaluation of the target, and the same number twice.
	gw.UsePseudonyms(pseudonym.NewClient(key.Public(), pseudonym.HTTPEvaluate(srv.URL, "gateway-credential", nil), -1))
	var events []map[string]any
	for i := range 3 {
		e := event(fmt.Sprintf("attack-%d", i), "", nil)
		e["conversation_id"] = "chat:887766554433"
		e["sender"] = all[target]
		e["recipients"] = []string{all[target+i+1]}
		delete(e, "downgrade")
		events = append(events, e)
	}
	res, err := gw.SendRawEvents(ctx, batch(events...), false, true)
	if err != nil || res.Accepted != 3 {
		t.Fatalf("the gateway's events: %+v %v", res, err)
	}

	// What the database holds: the senders as stored.
	conn, err := pgx.Connect(ctx, in.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var stored []string
	rows, err := conn.Query(ctx, `SELECT convert_from(leaf, 'UTF8')::jsonb->>'sender' FROM audit_entries
		WHERE convert_from(leaf, 'UTF8')::jsonb->>'v' = '2' ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		stored = append(stored, s)
	}
	if rows.Err() != nil || len(stored) != 3 || !pseudonym.Valid(stored[0]) {
		t.Fatalf("stored senders: %v %v", stored, rows.Err())
	}
	target0 := stored[0]
	dump := dumpTables(t, in.dsn)

	t.Run("the mediator's side cannot link", func(t *testing.T) {
		// Every key the Vault root token can take from the mediator's
		// Transit mount.
		admin := adminVault(t, env.Vault)
		var exported [][]byte
		if list, err := admin.Logical().ListWithContext(ctx, "mediator-transit/keys"); err == nil && list != nil {
			names, _ := list.Data["keys"].([]any)
			for _, n := range names {
				for _, kind := range []string{"hmac-key", "encryption-key", "signing-key"} {
					sec, err := admin.Logical().ReadWithContext(ctx, fmt.Sprintf("mediator-transit/export/%s/%v", kind, n))
					if err != nil || sec == nil {
						continue
					}
					keys, _ := sec.Data["keys"].(map[string]any)
					for _, k := range keys {
						exported = append(exported, []byte(fmt.Sprint(k)))
					}
				}
			}
		}
		// The service without a credential, and with every credential
		// the mediator's side can make.
		for _, tok := range []string{"", gwToken, "monitoring-guess"} {
			_, err := pseudonym.NewClient(key.Public(), pseudonym.HTTPEvaluate(srv.URL, tok, nil), -1).Pseudonyms(ctx, pseudonym.KindPhone, all[:1])
			if err == nil {
				t.Fatalf("the pseudonym service evaluated for the mediator's side (token %q)", tok)
			}
		}
		guesses := func(c string) []string {
			n, _ := redact.NormalizeE164(c)
			out := []string{c, n, pseudonym.Synthetic(c), pseudonym.Synthetic(n)}
			for _, input := range [][]byte{[]byte(c), pseudonym.Input(pseudonym.KindPhone, n), []byte("e164:" + n)} {
				sum := sha256.Sum256(input)
				out = append(out, pseudonym.Format(sum[:]), hex.EncodeToString(sum[:]))
				for _, k := range exported {
					m := hmac.New(sha256.New, k)
					m.Write(input)
					mac := m.Sum(nil)
					out = append(out, pseudonym.Format(mac), hex.EncodeToString(mac))
				}
			}
			return out
		}
		for i, c := range all {
			for _, g := range guesses(c) {
				if g == target0 {
					t.Fatalf("candidate %d linked to the stored pseudonym", i)
				}
				if i == target && strings.Contains(dump, g) && len(g) > 8 {
					t.Fatalf("the database holds a form of the target: %q", g)
				}
			}
		}
		for _, where := range []struct{ name, text string }{{"database", dump}, {"logs", in.proc.Output()}, {"metrics", rawGet(t, in.metrics)}} {
			for _, s := range []string{"4155554711", "555-4711", "5554711", "887766554433"} {
				if strings.Contains(where.text, s) {
					t.Fatalf("%s holds %q", where.name, s)
				}
			}
		}
	})

	t.Run("the service's operator cannot link", func(t *testing.T) {
		rec.mu.Lock()
		view := rec.seen.String() + serviceLogs.String()
		rec.mu.Unlock()
		req, _ := http.NewRequest("GET", srv.URL+"/metrics", nil)
		req.Header.Set("Authorization", "Bearer monitoring-token-of-the-operator")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			view += string(b)
		}
		if !strings.Contains(view, "/v1/evaluate") {
			t.Fatalf("the operator's view lacks the evaluations it served: %.300s", view)
		}
		// The operator evaluates every candidate with its own key.
		mine := pseudonym.NewClient(key.Public(), pseudonym.Local(pseudonym.NewEvaluator(key)), -1)
		ps, err := mine.Pseudonyms(ctx, pseudonym.KindPhone, all)
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range ps {
			encoded := strings.TrimPrefix(p, pseudonym.Prefix)
			if strings.Contains(view, encoded) || strings.Contains(view, all[i][1:]) {
				t.Fatalf("the operator's view holds candidate %d or its pseudonym", i)
			}
		}
		// The target was evaluated at least three times (no cache), each
		// time blinded afresh: no two blinded elements are alike.
		var elements []string
		for _, line := range strings.Split(view, "\n") {
			var req pseudonym.EvaluateRequest
			if json.Unmarshal([]byte(strings.TrimSpace(line)), &req) == nil {
				for _, e := range req.Elements {
					elements = append(elements, string(e))
				}
			}
		}
		seen := map[string]bool{}
		for _, e := range elements {
			if seen[e] {
				t.Fatal("one blinded element sent twice: evaluations could be linked")
			}
			seen[e] = true
		}
		if len(elements) < 6 {
			t.Fatalf("only %d blinded elements recorded", len(elements))
		}

		// Together, the key and the database link the target: the check
		// above could have failed.
		found := -1
		for i, p := range ps {
			if p == target0 {
				found = i
			}
		}
		if found != target {
			t.Fatalf("with the key and the database the target is %d, want %d", found, target)
		}
	})
}

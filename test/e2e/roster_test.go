package e2e

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/notify"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/wire"
)

// webhookReceiver is a real HTTP receiver that verifies every delivery
// the way docs/operations.md tells receivers to, and keeps each event and
// its raw body.
type webhookReceiver struct {
	mu     sync.Mutex
	secret []byte
	events []map[string]any
	bodies []string
	bad    int
}

func (rc *webhookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if err := notify.Verify(rc.secret, r.Header.Get(notify.SignatureHeader), body, time.Now(), 5*time.Minute); err != nil {
		rc.bad++
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var ev map[string]any
	json.Unmarshal(body, &ev)
	rc.events = append(rc.events, ev)
	rc.bodies = append(rc.bodies, string(body))
}

// waitEvent waits for an event of type typ matching want (field → value).
func (rc *webhookReceiver) waitEvent(t *testing.T, typ string, want map[string]any, within time.Duration) map[string]any {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		rc.mu.Lock()
		for _, ev := range rc.events {
			if ev["type"] != typ {
				continue
			}
			ok := true
			for k, v := range want {
				if fmt.Sprint(ev[k]) != fmt.Sprint(v) {
					ok = false
				}
			}
			if ok {
				rc.mu.Unlock()
				return ev
			}
		}
		got := len(rc.events)
		rc.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no %s event %v within %s (%d events)", typ, want, within, got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// gauge reads one sample of the instance's /metrics.
func gauge(t *testing.T, in *instance, sample string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`).FindStringSubmatch(rawGet(t, in.metrics))
	if m == nil {
		return ""
	}
	return m[1]
}

func waitGauge(t *testing.T, in *instance, sample, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for got := gauge(t, in, sample); got != want; got = gauge(t, in, sample) {
		if time.Now().After(deadline) {
			t.Fatalf("%s is %q, want %s", sample, got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRosterGovernance plays each insider against the roster on the real
// binary and PostgreSQL, with webhooks to a real receiver (and one that
// hangs) and a short liveness window:
//   - one admin cannot add an approver (410, and a proposal alone changes
//     nothing); one approver's signature does not adopt a version; a
//     newcomer without proof of possession is never adopted;
//   - a quorum adopts, and every step is a log entry;
//   - approvers check in with the CLI and the liveness metrics move, and
//     fall back when they go quiet, with a webhook event;
//   - every delivery verifies with the documented signature, names no
//     person, and a receiver that hangs delays nothing.
func TestRosterGovernance(t *testing.T) {
	dir := t.TempDir()
	secret := strings.Repeat("w", 48)
	os.WriteFile(filepath.Join(dir, "hook.secret"), []byte(secret), 0o600)
	rc := &webhookReceiver{secret: []byte(secret)}
	good := httptest.NewServer(rc)
	defer good.Close()
	stop := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-stop }))
	defer hang.Close()
	defer close(stop)
	hooks, _ := json.Marshal(map[string]any{"webhooks": []map[string]string{
		{"url": hang.URL, "secret_file": filepath.Join(dir, "hook.secret")},
		{"url": good.URL, "secret_file": filepath.Join(dir, "hook.secret")},
	}})
	os.WriteFile(filepath.Join(dir, "hooks.json"), hooks, 0o600)
	in := startServe(t, serveOpts{extraEnv: []string{"MEDIATOR_WEBHOOKS=" + filepath.Join(dir, "hooks.json"),
		"MEDIATOR_LIVENESS_INTERVAL=200ms", "MEDIATOR_LIVENESS_WINDOW=4s", "MEDIATOR_ROSTER_PROPOSAL_WAIT=1s"}})
	in.waitReady(t, 60*time.Second)
	tok := func(sub string, roles ...string) string { s, _ := in.issuer.Issue(sub, roles, time.Hour); return s }
	admin, olga := tok("ada", "admin"), tok("olga", "officer")
	keys, _ := e2eApprovers()

	// What the chapters learn and later ones use.
	var (
		eve           ed25519.PrivateKey // a newcomer's key
		next          roster.Roster      // version 2: the genesis and eve
		digest        string             // the proposal being signed
		genesisDigest string
		genuine       wire.RosterChain // versions 1 and 2 as the mediator serves them
	)
	sign := func(t *testing.T, who string, key ed25519.PrivateKey) map[string]any {
		t.Helper()
		b, _ := json.Marshal(wire.RosterSignature{Signature: roster.Sign(key, digest, who).Signature})
		code, body := post(t, in.base+"/v1/roster/proposals/"+digest+"/signatures", "application/json", tok(who, "approver"), b)
		if code != 200 {
			t.Fatalf("%s signs: %d %v", who, code, body)
		}
		return body
	}

	step(t, "the approvers adopt the genesis", func(t *testing.T) {
		ensureRoster(t, in, keys)
		rc.waitEvent(t, "roster.adopted", map[string]any{"roster_version": 1}, 10*time.Second)
	})

	// One admin: the registry is gone, and a proposal is only a proposal.
	step(t, "one admin can only propose an approver", func(t *testing.T) {
		if code, body := post(t, in.base+"/v1/approvers", "application/json", admin, []byte(`{"id":"eve","roles":["legal"],"public_key":""}`)); code != 410 || errorCode(body) != "roster_required" {
			t.Fatalf("the retired registry: %d %v", code, body)
		}
		var evePub ed25519.PublicKey
		evePub, eve, _ = ed25519.GenerateKey(nil)
		next = in.genesis
		next.Approvers = append(append([]roster.Approver(nil), in.genesis.Approvers...), roster.Approver{ID: "eve", Roles: []string{"legal"}, PublicKey: evePub})
		draft, _ := json.Marshal(wire.RosterDraft{Approvers: next.Approvers, Custodians: next.Custodians, Threshold: next.Threshold, Rule: next.Rule})
		code, body := post(t, in.base+"/v1/roster/proposals", "application/json", admin, draft)
		if code != 201 || body["status"] != "awaiting_signatures" || body["version"] != float64(2) {
			t.Fatalf("propose: %d %v", code, body)
		}
		digest = body["digest"].(string)
		rc.waitEvent(t, "roster.proposal_waiting", map[string]any{"roster_digest": digest}, 10*time.Second)
	})

	// An admin cannot sign; eve's own signature and lena's are not a quorum.
	step(t, "an admin cannot sign and one approver is no quorum", func(t *testing.T) {
		b, _ := json.Marshal(wire.RosterSignature{Signature: roster.Sign(eve, digest, "ada").Signature})
		if code, _ := post(t, in.base+"/v1/roster/proposals/"+digest+"/signatures", "application/json", admin, b); code != 403 {
			t.Fatalf("an admin signed: %d", code)
		}
		sign(t, "eve", eve)
		if p := sign(t, "lena", keys["lena"]); p["status"] != "awaiting_signatures" || !strings.Contains(fmt.Sprint(p["missing"]), "security role") {
			t.Fatalf("one approver adopted a version: %v", p)
		}
		if _, chain, _ := call(t, "GET", in.base+"/v1/roster", tok("gw", "depositor")); chain["version"] != float64(1) {
			t.Fatalf("the roster changed without a quorum: %v", chain["version"])
		}
	})

	step(t, "a quorum adopts version 2", func(t *testing.T) {
		if p := sign(t, "sam", keys["sam"]); p["status"] != "adopted" {
			t.Fatalf("a quorum did not adopt: %v", p)
		}
		rc.waitEvent(t, "roster.adopted", map[string]any{"roster_version": 2}, 10*time.Second)
	})

	// A superuser re-orders the chain in the database (version 2 first):
	// the mediator's own check refuses to serve it (503). A mediator host
	// serving it anyway, or with a version signed only by the keys it
	// added, gets nothing from a depositor's client or the CLI.
	step(t, "the mediator refuses to serve a re-ordered chain", func(t *testing.T) {
		genesisDigest, _ = in.genesis.Digest()
		gw, _ := newClient(in.base, tok("gw", "depositor"), http.DefaultClient)
		var err error
		genuine, err = gw.RosterChain(context.Background())
		if err != nil || len(genuine.Chain) != 2 {
			t.Fatalf("the chain: %v %d", err, len(genuine.Chain))
		}
		db, err := pgx.Connect(context.Background(), in.dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close(context.Background())
		mustExec(t, db, "SET session_replication_role = replica")
		swap := func() {
			mustExec(t, db, `UPDATE roster_versions SET version = 3 - version + 10 WHERE genesis = $1`, genesisDigest)
			mustExec(t, db, `UPDATE roster_versions SET version = version - 10 WHERE genesis = $1`, genesisDigest)
		}
		swap()
		if code, body, _ := call(t, "GET", in.base+"/v1/roster", tok("gw", "depositor")); code != 503 || !strings.Contains(fmt.Sprint(body), "does not verify") {
			t.Fatalf("the mediator served a re-ordered chain: %d %v", code, body)
		}
		swap()
	})

	step(t, "a depositor and the CLI refuse a re-ordered or forged chain", func(t *testing.T) {
		forgedV3 := next
		forgedV3.Version, forgedV3.Previous = 3, roster.Digest(genuine.Chain[1].Roster)
		malloryPub, mallory, _ := ed25519.GenerateKey(nil)
		forgedV3.Approvers = append(append([]roster.Approver(nil), next.Approvers...), roster.Approver{ID: "mallory", Roles: []string{"legal", "security"}, PublicKey: malloryPub})
		forgedCanonical, _ := forgedV3.Canonical()
		for name, chain := range map[string][]roster.Signed{
			"re-ordered": {genuine.Chain[1], genuine.Chain[0]},
			"forged v3":  {genuine.Chain[0], genuine.Chain[1], {Roster: forgedCanonical, Signatures: []roster.Signature{roster.Sign(mallory, roster.Digest(forgedCanonical), "mallory")}}},
		} {
			fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				json.NewEncoder(w).Encode(wire.RosterChain{Genesis: genesisDigest, Version: uint64(len(chain)), Digest: roster.Digest(chain[len(chain)-1].Roster), Chain: chain})
			}))
			dep, _ := newClient(fake.URL, tok("gw", "depositor"), http.DefaultClient)
			if _, err := dep.DepositByRoster(context.Background(), genesisDigest, conv("conv-z"), "e1", make([]byte, 32)); err == nil {
				t.Errorf("a depositor accepted a %s chain", name)
			}
			if out, _, err := runCmd(t, []string{"MEDIATOR_URL=" + fake.URL, "MEDIATOR_TOKEN=x", "MEDIATOR_ROSTER_GENESIS=" + genesisDigest}, "roster", "verify"); err == nil {
				t.Errorf("roster verify passed a %s chain: %s", name, out)
			}
			fake.Close()
		}
		if out, stderr, err := runCmd(t, []string{"MEDIATOR_URL=" + in.base, "MEDIATOR_TOKEN=" + tok("aud", "auditor"), "MEDIATOR_ROSTER_GENESIS=" + genesisDigest},
			"roster", "verify"); err != nil || !strings.Contains(out, "ok: roster version 2") {
			t.Fatalf("roster verify: %v %s %s", err, out, stderr)
		}
	})

	// max is added without proving he holds his key: never adopted.
	step(t, "a newcomer without proof of possession is not adopted", func(t *testing.T) {
		maxPub, _, _ := ed25519.GenerateKey(nil)
		v3 := next
		v3.Approvers = append(append([]roster.Approver(nil), next.Approvers...), roster.Approver{ID: "max", Roles: []string{"security"}, PublicKey: maxPub})
		draft, _ := json.Marshal(wire.RosterDraft{Approvers: v3.Approvers, Custodians: v3.Custodians, Threshold: v3.Threshold, Rule: v3.Rule})
		_, body := post(t, in.base+"/v1/roster/proposals", "application/json", admin, draft)
		digest = body["digest"].(string)
		sign(t, "lena", keys["lena"])
		if p := sign(t, "sam", keys["sam"]); p["status"] != "awaiting_signatures" || !strings.Contains(fmt.Sprint(p["missing"]), "max's signature with their new key") {
			t.Fatalf("max without proof of possession: %v", p)
		}
	})

	// Its wait is noticed.
	step(t, "a proposal waiting too long is noticed", func(t *testing.T) {
		waitGauge(t, in, "mediator_roster_version", "2", 5*time.Second)
		rc.waitEvent(t, "roster.proposal_waiting", map[string]any{"status": "waiting_too_long"}, 10*time.Second)
	})

	// Liveness: nobody has checked in; lena does (the CLI), then sam; the
	// quorum is live; they go quiet past the window and it is not, with a
	// webhook event.
	step(t, "check-ins make the quorum live until the approvers go quiet", func(t *testing.T) {
		waitGauge(t, in, "mediator_roster_quorum_live", "0", 5*time.Second)
		lenaKey := filepath.Join(dir, "lena.key")
		keyFile, _ := json.Marshal(map[string]string{"type": "mediator-approver-key-v1", "private_key": base64.StdEncoding.EncodeToString(keys["lena"].Seed())})
		os.WriteFile(lenaKey, keyFile, 0o600)
		if out, stderr, err := runCmd(t, []string{"MEDIATOR_URL=" + in.base, "MEDIATOR_TOKEN=" + tok("lena", "approver")}, "approver", "checkin", "--key", lenaKey); err != nil ||
			!strings.Contains(out, "checked in as lena") {
			t.Fatalf("checkin: %v %s %s", err, out, stderr)
		}
		waitGauge(t, in, `mediator_roster_live_approvers{role="legal"}`, "1", 5*time.Second)
		if got := gauge(t, in, "mediator_roster_quorum_live"); got != "0" {
			t.Fatalf("quorum live with only legal checked in: %s", got)
		}
		at := time.Now().UTC().Truncate(time.Second)
		b, _ := json.Marshal(wire.Checkin{At: at, Signature: ed25519.Sign(keys["sam"], roster.CheckinMessage("sam", at))})
		if code, body := post(t, in.base+"/v1/roster/checkins", "application/json", tok("sam", "approver"), b); code != 201 {
			t.Fatalf("sam checks in: %d %v", code, body)
		}
		waitGauge(t, in, "mediator_roster_quorum_live", "1", 5*time.Second)
		waitGauge(t, in, "mediator_roster_quorum_live", "0", 10*time.Second)
		rc.waitEvent(t, "roster.quorum_not_live", nil, 10*time.Second)
	})

	// Request workflow events, while one receiver hangs: the officer's
	// call is not delayed by it.
	step(t, "a hanging webhook receiver delays no request", func(t *testing.T) {
		start := time.Now()
		r := readyRequestUnapproved(t, in, admin, olga, conv("conv-1"))
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("filing a request took %s with a hanging webhook receiver", d)
		}
		rc.waitEvent(t, "access_request.filed", map[string]any{"request_id": r.id}, 10*time.Second)
		rc.waitEvent(t, "access_request.needs_approvals", map[string]any{"request_id": r.id}, 10*time.Second)
		approve := func(who string) {
			sig := ed25519.Sign(r.keys[who], approval.Message(r.id, r.digest, "approve", who))
			b, _ := json.Marshal(map[string]any{"decision": "approve", "signature": sig})
			if code, body := post(t, in.base+"/v1/access-requests/"+r.id+"/approvals", "application/json", tok(who, "approver"), b); code != 201 {
				t.Fatalf("approval by %s: %d %v", who, code, body)
			}
		}
		approve("lena")
		rc.waitEvent(t, "access_request.approval", map[string]any{"request_id": r.id, "approvals": 1}, 10*time.Second)
		post(t, in.base+"/v1/access-requests/"+r.id+"/release", "application/json", olga, []byte(`{}`))
		rc.waitEvent(t, "access_request.denied", map[string]any{"request_id": r.id}, 10*time.Second)
	})

	// Every delivery verified; none names a person or the metadata.
	step(t, "every webhook delivery verifies and names no one", func(t *testing.T) {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		if rc.bad != 0 {
			t.Errorf("%d deliveries did not verify", rc.bad)
		}
		for _, body := range rc.bodies {
			var event map[string]any
			if err := json.Unmarshal([]byte(body), &event); err != nil {
				t.Fatalf("a webhook body is not JSON: %s", body)
			}
			for key, v := range event {
				value, ok := v.(string)
				if _, err := uuid.Parse(value); !ok || err == nil || strings.HasPrefix(value, "sha256:") {
					continue // numbers, random ids and digests (whose hex may spell "ada")
				}
				for _, name := range []string{"olga", "lena", "sam", "eve", "ada", "case-1", conv("conv-1"), "max"} {
					if strings.Contains(key, name) || strings.Contains(value, name) {
						t.Errorf("a webhook event names %q: %s", name, body)
					}
				}
			}
		}
		if got := gauge(t, in, `mediator_webhook_deliveries_total{result="delivered"}`); got == "" || got == "0" {
			t.Errorf("no delivered webhook counted: %q", got)
		}
	})

	// The webhook secret is a canary: nowhere in the service's logs or
	// metrics.
	step(t, "the webhook secret is in no log or metric", func(t *testing.T) {
		if strings.Contains(in.proc.Output(), secret) || strings.Contains(rawGet(t, in.metrics), secret) {
			t.Error("the webhook secret leaked into the logs or metrics")
		}
	})
}

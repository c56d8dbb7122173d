package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
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

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/uuid"

	"github.com/mediatorhq/mediator/api"
	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/dev"
	"github.com/mediatorhq/mediator/policy"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/seal"
	"github.com/mediatorhq/mediator/wire"
)

// TestEveryRouteAndRoleOverHTTP: for every route the router has and every
// role (and no token), a real request is let through exactly when the
// policy allows it: otherwise 401 without a token and 403 forbidden with
// one. Allowed calls may still fail in the handler (a missing body, an
// unknown id), but never on authorization.
func TestEveryRouteAndRoleOverHTTP(t *testing.T) {
	ctx := context.Background()
	in := startServe(t, serveOpts{})
	in.waitReady(t, 60*time.Second)
	routes, err := api.Routes(api.NewRouter(api.Deps{Metrics: api.NewMetrics("test")}))
	if err != nil {
		t.Fatal(err)
	}
	engine, err := policy.Load(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	params := strings.NewReplacer("{id}", "00000000-0000-4000-8000-000000000000", "{seq}", "0")
	client := &http.Client{Timeout: 30 * time.Second}
	checked := 0
	for _, route := range routes {
		method, pattern, _ := strings.Cut(route, " ")
		for _, role := range []string{"", "ingest", "depositor", "officer", "approver", "auditor", "admin"} {
			in0 := policy.AuthzInput{Method: method, Route: pattern, Roles: []string{}}
			token := ""
			if role != "" {
				in0 = policy.AuthzInput{Authenticated: true, Subject: "probe-" + role, Roles: []string{role}, Method: method, Route: pattern}
				token, _ = in.issuer.Issue("probe-"+role, []string{role}, time.Hour)
			}
			allowed, err := engine.Authorize(ctx, in0)
			if err != nil {
				t.Fatal(err)
			}
			req, _ := http.NewRequest(method, in.base+params.Replace(pattern), bytes.NewReader([]byte(`{}`)))
			req.Header.Set("Content-Type", "application/json")
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			code := errorCode(decode(b))
			switch {
			case allowed && (resp.StatusCode == 401 || code == "forbidden"):
				t.Errorf("%s as %q: allowed by the policy, refused: %d %s", route, role, resp.StatusCode, b)
			case !allowed && role == "" && resp.StatusCode != 401:
				t.Errorf("%s without a token: %d, want 401", route, resp.StatusCode)
			case !allowed && role != "" && (resp.StatusCode != 403 || code != "forbidden"):
				t.Errorf("%s as %q: denied by the policy, answered %d %s", route, role, resp.StatusCode, b)
			}
			checked++
		}
	}
	if checked < 7*20 {
		t.Fatalf("only %d route × role pairs checked", checked)
	}
}

func decode(b []byte) map[string]any {
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

// TestForgedTokensAndApprovals: tokens with alg none, HS256 keyed with the
// public key, a wrong issuer or audience, expired, not yet valid, or an
// unknown key are all 401; an approval signature replayed on another
// request, and one by an approver a roster version removed, are refused.
func TestForgedTokensAndApprovals(t *testing.T) {
	in := startServe(t, serveOpts{})
	in.waitReady(t, 60*time.Second)
	raw, err := os.ReadFile(filepath.Join(in.state, "dev-issuer.jwk"))
	if err != nil {
		t.Fatal(err)
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(raw); err != nil {
		t.Fatal(err)
	}
	jwks, _ := os.ReadFile(dev.JWKSPath(in.state))
	now := time.Now()
	good := jwt.Claims{Issuer: dev.IssuerName, Audience: jwt.Audience{dev.Audience}, Subject: "mallory",
		Expiry: jwt.NewNumericDate(now.Add(time.Hour)), NotBefore: jwt.NewNumericDate(now.Add(-time.Minute))}
	with := func(f func(*jwt.Claims)) jwt.Claims { c := good; f(&c); return c }
	_, stranger, _ := ed25519.GenerateKey(nil)
	pubJWK, _ := json.Marshal(jwk.Public())
	forged := map[string]string{
		"alg none":                   rawToken(t, map[string]string{"alg": "none", "typ": "JWT", "kid": jwk.KeyID}, good, nil),
		"HS256 keyed with the JWKS":  rawToken(t, map[string]string{"alg": "HS256", "typ": "JWT", "kid": jwk.KeyID}, good, jwks),
		"HS256 keyed with the JWK":   rawToken(t, map[string]string{"alg": "HS256", "typ": "JWT", "kid": jwk.KeyID}, good, pubJWK),
		"HS256 keyed with raw bytes": rawToken(t, map[string]string{"alg": "HS256", "typ": "JWT", "kid": jwk.KeyID}, good, jwk.Public().Key.(ed25519.PublicKey)),
		"wrong issuer":               signed(t, jwk.Key, jwk.KeyID, with(func(c *jwt.Claims) { c.Issuer = "https://evil.example" })),
		"wrong audience":             signed(t, jwk.Key, jwk.KeyID, with(func(c *jwt.Claims) { c.Audience = jwt.Audience{"other"} })),
		"expired":                    signed(t, jwk.Key, jwk.KeyID, with(func(c *jwt.Claims) { c.Expiry = jwt.NewNumericDate(now.Add(-time.Minute)) })),
		"not yet valid":              signed(t, jwk.Key, jwk.KeyID, with(func(c *jwt.Claims) { c.NotBefore = jwt.NewNumericDate(now.Add(time.Hour)) })),
		"unknown kid":                signed(t, stranger, "unknown-kid", good),
		"known kid, another key":     signed(t, stranger, jwk.KeyID, good),
	}
	if code, body, _ := call(t, "GET", in.base+"/v1/whoami", signed(t, jwk.Key, jwk.KeyID, good)); code != 200 {
		t.Fatalf("the well-formed control token was refused: %d %v", code, body)
	}
	for name, tok := range forged {
		code, body, hdr := call(t, "GET", in.base+"/v1/whoami", tok)
		if code != 401 || errorCode(body) != "unauthenticated" || hdr.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: %d %v", name, code, body)
		}
	}

	// Approval signatures cannot be moved or used after deactivation.
	tok := func(sub string, roles ...string) string { s, _ := in.issuer.Issue(sub, roles, time.Hour); return s }
	admin, olga := tok("ada", "admin"), tok("olga", "officer")
	lena, sam := tok("lena", "approver"), tok("sam", "approver")
	first := readyRequestUnapproved(t, in, admin, olga, conv("conv-1"))
	second := readyRequestUnapproved(t, in, admin, olga, conv("conv-2"))
	sig := ed25519.Sign(first.keys["lena"], approval.Message(first.id, first.digest, "approve", "lena"))
	b, _ := json.Marshal(map[string]any{"decision": "approve", "signature": sig})
	if code, body := post(t, in.base+"/v1/access-requests/"+second.id+"/approvals", "application/json", lena, b); code != 422 || errorCode(body) != "bad_signature" {
		t.Fatalf("a signature replayed on another request: %d %v", code, body)
	}
	if code, body := post(t, in.base+"/v1/access-requests/"+first.id+"/approvals", "application/json", lena, b); code != 201 {
		t.Fatalf("the signature on its own request: %d %v", code, body)
	}
	// Removing sam is a roster version: proposed by an admin, adopted
	// once lena and sam (a quorum of the version in force) signed it. From
	// then on sam's approvals are refused.
	removeSam := in.genesis
	olgaEntry, _ := in.genesis.Officer("olga")
	removeSam.Approvers = []roster.Approver{in.genesis.Approvers[0], {ID: "ola", Roles: []string{"security"}, PublicKey: first.keys["sam"].Public().(ed25519.PublicKey)}, olgaEntry}
	draft, _ := json.Marshal(wire.RosterDraft{Approvers: removeSam.Approvers, Custodians: removeSam.Custodians, Threshold: removeSam.Threshold, Rule: removeSam.Rule})
	code, body := post(t, in.base+"/v1/roster/proposals", "application/json", admin, draft)
	if code != 201 || body["status"] != "awaiting_signatures" {
		t.Fatalf("propose: %d %v", code, body)
	}
	digest := body["digest"].(string)
	for _, who := range []string{"lena", "sam", "ola"} {
		key := first.keys[who]
		if who == "ola" {
			key = first.keys["sam"] // ola takes over sam's key: one key, one person per version
		}
		b, _ := json.Marshal(wire.RosterSignature{Signature: roster.Sign(key, digest, who).Signature})
		if code, body = post(t, in.base+"/v1/roster/proposals/"+digest+"/signatures", "application/json", tok(who, "approver"), b); code != 200 {
			t.Fatalf("%s signs: %d %v", who, code, body)
		}
	}
	if body["status"] != "adopted" {
		t.Fatalf("removing sam was not adopted: %v", body)
	}
	sig = ed25519.Sign(first.keys["sam"], approval.Message(first.id, first.digest, "approve", "sam"))
	b, _ = json.Marshal(map[string]any{"decision": "approve", "signature": sig})
	if code, body := post(t, in.base+"/v1/access-requests/"+first.id+"/approvals", "application/json", sam, b); code != 403 || errorCode(body) != "not_an_approver" {
		t.Fatalf("an approval by a removed approver: %d %v", code, body)
	}
}

// rawToken builds a JWT by hand (for algorithms no library will sign
// with): HMAC-SHA256 with secret, or no signature when secret is nil.
func rawToken(t *testing.T, header map[string]string, c jwt.Claims, secret []byte) string {
	t.Helper()
	h, _ := json.Marshal(header)
	body, _ := json.Marshal(struct {
		jwt.Claims
		Roles []string `json:"roles"`
	}{c, []string{"admin"}})
	enc := base64.RawURLEncoding.EncodeToString
	signing := enc(h) + "." + enc(body)
	if secret == nil {
		return signing + "."
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(signing))
	return signing + "." + enc(m.Sum(nil))
}

func signed(t *testing.T, key any, kid string, c jwt.Claims) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(c).Claims(map[string]any{"roles": []string{"admin"}}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

type openRequest struct {
	id, digest string
	keys       map[string]ed25519.PrivateKey
}

// readyRequestUnapproved has the instance adopt its genesis roster (once) and
// files a request by olga for convo, to a fresh recipient key.
func readyRequestUnapproved(t *testing.T, in *instance, admin, olga, convo string) openRequest {
	t.Helper()
	return readyRequestUnapprovedTo(t, in, admin, olga, convo, "")
}

// readyRequestUnapprovedTo is readyRequestUnapproved with the recipient
// read from a public key file written by `mediator keygen --recipient`;
// with recipient empty, to a fresh key.
func readyRequestUnapprovedTo(t *testing.T, in *instance, admin, olga, convo, recipient string) openRequest {
	t.Helper()
	r := openRequest{keys: map[string]ed25519.PrivateKey{}}
	keys, _ := e2eApprovers()
	r.keys = keys
	ensureRoster(t, in, keys)
	var rk seal.PublicKey
	if recipient == "" {
		_, pub, err := seal.NewKey(seal.KEMX25519)
		if err != nil {
			t.Fatal(err)
		}
		rk = pub
	} else {
		b, err := os.ReadFile(recipient)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &rk); err != nil {
			t.Fatalf("recipient key %s: %v", recipient, err)
		}
	}
	code, created := post(t, in.base+"/v1/access-requests", "application/json", olga, signedRequestBody(t, convo, rk))
	if code != 201 {
		t.Fatalf("request: %d %v", code, created)
	}
	r.id, r.digest = fmt.Sprint(created["id"]), fmt.Sprint(created["digest"])
	return r
}

// signedRequestBody is the body of POST /v1/access-requests for a
// request by the officer olga for convo to recipient, signed with her
// key as `mediator request create --key` signs it.
func signedRequestBody(t *testing.T, convo string, recipient seal.PublicKey) []byte {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Second)
	r := approval.Request{ID: uuid.NewString(), Requester: "olga", CaseID: "case-1", LegalBasis: "court_order", WarrantRef: "W-1",
		Jurisdiction: "US", Justification: "See the case file.", Recipient: recipient, CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour),
		Scope: approval.Scope{ConversationIDs: []string{convo}, From: now.Add(-time.Hour), To: now.Add(time.Hour)}}
	c, err := r.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(wire.CreateRequest{ID: r.ID, CaseID: r.CaseID, LegalBasis: r.LegalBasis, WarrantRef: r.WarrantRef,
		Jurisdiction: r.Jurisdiction, Justification: r.Justification, Recipient: recipient, CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt,
		Scope:            wire.Scope{ConversationIDs: r.Scope.ConversationIDs, From: r.Scope.From, To: r.Scope.To},
		OfficerSignature: approval.SignRequest(e2eOfficerKey(), approval.Digest(c))})
	return b
}

package custodian_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/mediatorhq/mediator/custodian"
	"github.com/mediatorhq/mediator/dev"
	"github.com/mediatorhq/mediator/escrow"
	"github.com/mediatorhq/mediator/test/harness/testca"
	"github.com/mediatorhq/mediator/wire"
)

// serveTLS stops custodian i of f and serves it again with cfg as
// `mediator custodian serve` does (Server, Serve), on a fresh port of
// 127.0.0.1, until the test ends. It returns its https URL.
func serveTLS(t *testing.T, f *fixture, i int, cfg custodian.Config) string {
	t.Helper()
	f.set.Stop(i)
	c, err := custodian.Open(context.Background(), cfg, nil, custodian.NewMetrics())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := c.Server()
	go func() {
		if err := c.Serve(srv, ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("custodian %s: %v", cfg.Name, err)
		}
	}()
	t.Cleanup(func() { srv.Close(); c.Close() })
	return "https://" + ln.Addr().String()
}

// tlsCall makes one call with hc and returns the answer's status and
// error code.
func tlsCall(hc *http.Client, method, url, token, body string) (int, string, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var env wire.Error
	_ = json.NewDecoder(resp.Body).Decode(&env)
	return resp.StatusCode, env.Error.Code, nil
}

// TestMutualTLS: with client_ca_file, every call that needs the
// mediator's or the operator's token also needs a client certificate the
// bundle verifies: without one it is refused 401
// client_certificate_required whatever the token; a certificate of
// another authority fails the handshake (or, when the client declines to
// offer it, is refused alike); a bundle with no certificate stops the
// custodian from serving; with a right one the mediator deposits
// through its custodians file (client_cert_file, client_key_file), and the
// token is still required. The public routes need no certificate.
func TestMutualTLS(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, dev.CustodianOptions{})
	dir := t.TempDir()
	ca, other := testca.New(t, dir, "custodians-ca"), testca.New(t, dir, "other-ca")
	_, vkey, err := note.GenerateKey(rand.Reader, "mediator/audit")
	if err != nil {
		t.Fatal(err)
	}
	cfg := f.set.Custodians[0].Config
	cfg.TLSCertFile, cfg.TLSKeyFile = ca.Server(t, "custodian-1")
	cfg.ClientCAFile = ca.File
	cfg.Witness = &custodian.WitnessConfig{Logs: []custodian.WitnessLog{{Origin: "mediator/audit", VerifierKeys: []string{vkey}}}}
	b, _ := json.Marshal(cfg)
	if _, err := custodian.ParseConfig(b); err != nil {
		t.Fatalf("a configuration with client_ca_file and TLS: %v", err)
	}
	notPEM := cfg
	notPEM.ClientCAFile = filepath.Join(dir, "clients.pem")
	os.WriteFile(notPEM.ClientCAFile, []byte("not pem"), 0o600)
	if c, err := custodian.Open(ctx, notPEM, nil, nil); err == nil || !strings.Contains(err.Error(), "client_ca_file") {
		if c != nil {
			c.Close()
		}
		t.Errorf("a client_ca_file without a certificate: %v", err)
	}
	url := serveTLS(t, f, 0, cfg)
	mediatorTok, operatorTok := f.set.Custodians[0].MediatorToken, f.set.Custodians[0].OperatorToken

	client := func(tc *tls.Config) *http.Client {
		tc.RootCAs = ca.Pool()
		return &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
	}
	load := func(cert, key string) tls.Certificate {
		c, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	right := load(ca.Client(t, "mediator"))
	wrong := load(other.Client(t, "stranger"))
	anonymous := client(&tls.Config{})
	withRight := client(&tls.Config{Certificates: []tls.Certificate{right}})

	tokenRoutes := []struct{ method, path, token string }{
		{"POST", "/v1/shares", mediatorTok}, {"POST", "/v1/shares/commit", mediatorTok}, {"POST", "/v1/shares/abort", mediatorTok},
		{"POST", "/v1/shares/destroy", mediatorTok}, {"POST", "/v1/holds", mediatorTok}, {"POST", "/v1/releases", mediatorTok},
		{"POST", "/v1/rewrap", operatorTok}, {"GET", "/metrics", operatorTok},
	}
	for _, r := range tokenRoutes {
		status, code, err := tlsCall(anonymous, r.method, url+r.path, r.token, `{}`)
		if err != nil || status != http.StatusUnauthorized || code != "client_certificate_required" {
			t.Errorf("%s %s with the token and no client certificate: %d %s %v, want 401 client_certificate_required", r.method, r.path, status, code, err)
		}
	}

	// The public routes take no certificate.
	push, _ := json.Marshal(wire.RosterPush{Chain: f.chain})
	for _, r := range []struct{ method, path, body string }{
		{"GET", "/healthz", ""}, {"GET", "/readyz", ""}, {"GET", "/v1/custodian", ""}, {"GET", "/v1/roster/status", ""},
		{"POST", "/v1/roster", string(push)},
	} {
		if status, code, err := tlsCall(anonymous, r.method, url+r.path, "", r.body); err != nil || status != http.StatusOK {
			t.Errorf("public %s %s without a client certificate: %d %s %v", r.method, r.path, status, code, err)
		}
	}
	for _, path := range []string{"/v1/vetoes", "/v1/holds/signed", "/v1/shares/status", "/v1/shares/inventory", "/add-checkpoint"} {
		// A malformed body: refused for what it is, not for a certificate.
		status, code, err := tlsCall(anonymous, "POST", url+path, "", `{"nope":1}`)
		if err != nil || status == http.StatusUnauthorized || status/100 != 4 {
			t.Errorf("public POST %s without a client certificate: %d %s %v, want a 4xx other than 401", path, status, code, err)
		}
	}

	// Another authority's certificate: a client that offers it anyway
	// fails the handshake; Go's client, seeing the custodian asks for
	// another authority, offers none, and is refused as above.
	forced := client(&tls.Config{GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &wrong, nil }})
	if status, _, err := tlsCall(forced, "POST", url+"/v1/shares/destroy", mediatorTok, `{"shares":[]}`); err == nil {
		t.Errorf("a client certificate of another authority was let through the handshake: %d", status)
	}
	declined := client(&tls.Config{Certificates: []tls.Certificate{wrong}})
	if status, code, err := tlsCall(declined, "POST", url+"/v1/shares/destroy", mediatorTok, `{"shares":[]}`); err != nil ||
		status != http.StatusUnauthorized || code != "client_certificate_required" {
		t.Errorf("another authority's certificate, not offered: %d %s %v", status, code, err)
	}

	// The right certificate: the token is still needed; with both the
	// operator's calls answer.
	if status, code, err := tlsCall(withRight, "POST", url+"/v1/shares/destroy", "not-the-token", `{"shares":[]}`); err != nil ||
		status != http.StatusUnauthorized || code != "unauthenticated" {
		t.Errorf("the right certificate and a wrong token: %d %s %v, want 401 unauthenticated", status, code, err)
	}
	if status, code, err := tlsCall(withRight, "GET", url+"/metrics", operatorTok, ""); err != nil || status != http.StatusOK {
		t.Errorf("the operator's metrics with the right certificate: %d %s %v", status, code, err)
	}

	// The mediator deposits through its custodians file: ca_file for the
	// custodian's certificate, client_cert_file and client_key_file for
	// its own.
	certFile, keyFile := ca.Client(t, "mediator-file")
	file := f.set.File
	file.CAFile, file.ClientCertFile, file.ClientKeyFile = ca.File, certFile, keyFile
	file.Custodians = append([]escrow.CustodianEntry(nil), file.Custodians...)
	file.Custodians[0].URL = url
	rs, err := file.Remotes()
	if err != nil {
		t.Fatal(err)
	}
	f.remotes[0] = rs[0]
	id, receipts := f.deposit(t, "conv-mtls", "e1", bytes.Repeat([]byte{7}, 32))
	if res, err := rs[0].Destroy(ctx, ref(id, receipts, 0)); err != nil || res[0].Outcome != "too_young" {
		t.Errorf("destroy over mutual TLS: %+v %v", res, err)
	}
	file.ClientCertFile, file.ClientKeyFile = "", ""
	rs, _ = file.Remotes()
	var unavailable *escrow.UnavailableError
	if _, err := rs[0].Destroy(ctx, ref(id, receipts, 0)); !errors.As(err, &unavailable) || !strings.Contains(err.Error(), "client_certificate_required") {
		t.Errorf("the mediator without its client certificate: %v", err)
	}
}

// TestClientCAConfig: client_ca_file is refused without TLS, among the
// other problems of the file.
func TestClientCAConfig(t *testing.T) {
	base := map[string]any{
		"name": "custodian-1", "listen": "127.0.0.1:8443",
		"vault":               map[string]any{"addr": "http://127.0.0.1:8200", "token_file": "/run/secrets/vault"},
		"transit":             map[string]any{"mount": "mediator-transit", "key": "custodian-1"},
		"kv":                  map[string]any{"mount": "mediator-kv", "prefix": "custodians/custodian-1"},
		"mediator_token_file": "/run/secrets/m", "operator_token_file": "/run/secrets/o",
	}
	parse := func(extra map[string]any) error {
		m := map[string]any{}
		for k, v := range base {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		b, _ := json.Marshal(m)
		_, err := custodian.ParseConfig(b)
		return err
	}
	if err := parse(nil); err != nil {
		t.Fatalf("the base configuration: %v", err)
	}
	withTLS := map[string]any{"tls_cert_file": "/etc/c/cert.pem", "tls_key_file": "/etc/c/key.pem", "client_ca_file": "/etc/c/clients.pem"}
	if err := parse(withTLS); err != nil {
		t.Fatalf("client_ca_file with TLS: %v", err)
	}
	for _, extra := range []map[string]any{
		{"client_ca_file": "/etc/c/clients.pem"},
		{"client_ca_file": "/etc/c/clients.pem", "tls_cert_file": "/etc/c/cert.pem"},
	} {
		err := parse(extra)
		if err == nil || !strings.Contains(err.Error(), "client_ca_file needs tls_cert_file and tls_key_file") {
			t.Errorf("%v: %v, want client_ca_file refused without TLS", extra, err)
		}
	}
	// Every problem at once: client_ca_file's with the others.
	err := parse(map[string]any{"client_ca_file": "/etc/c/clients.pem", "listen": "nowhere"})
	if err == nil || !strings.Contains(err.Error(), "client_ca_file") || !strings.Contains(err.Error(), "listen must be host:port") {
		t.Errorf("the problems listed together: %v", err)
	}
}

package escrow

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mediatorhq/mediator/seal"
	"github.com/mediatorhq/mediator/test/harness/testca"
)

// TestCustodiansFileRefusesPlainHTTPOffLoopback: the mediator's bearer
// token for a custodian, and the evidence of every release, never travel
// in clear over a network: plain http is accepted only to a loopback
// address.
func TestCustodiansFileRefusesPlainHTTPOffLoopback(t *testing.T) {
	file := func(url string) []byte {
		f := CustodianFile{Threshold: 2}
		for i := range 3 {
			_, hk, _ := seal.NewKey(seal.KEMX25519)
			sk, _, _ := ed25519.GenerateKey(nil)
			u := fmt.Sprintf("https://custodian-%d.example:8443", i+1)
			if i == 1 {
				u = url
			}
			f.Custodians = append(f.Custodians, CustodianEntry{Name: fmt.Sprintf("custodian-%d", i+1), URL: u,
				TokenFile: "/run/secrets/c", HPKEKey: hk, SigningKey: sk})
		}
		b, _ := json.Marshal(f)
		return b
	}
	for url, ok := range map[string]bool{
		"https://custodian-2.example:8443": true,
		"http://127.0.0.1:9102":            true,
		"http://custodian-2.example:8443":  false,
		"http://192.0.2.10:9102":           false,
	} {
		_, err := ParseCustodians(file(url))
		if (err == nil) != ok {
			t.Errorf("%s: %v, want ok=%v", url, err, ok)
		}
		if err != nil && !strings.Contains(err.Error(), "loopback") {
			t.Errorf("%s: the error does not say why: %v", url, err)
		}
	}
}

// TestCustodiansFileCABundle: with ca_file, the mediator trusts exactly
// that bundle for custodians' TLS: a custodian whose certificate it
// signs answers; without it, the same custodian is refused.
func TestCustodiansFileCABundle(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"name":"custodian-1"}`))
	}))
	defer srv.Close()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)
	tok := filepath.Join(dir, "token")
	os.WriteFile(tok, []byte("t"), 0o600)
	_, hk, _ := seal.NewKey(seal.KEMX25519)
	sk, _, _ := ed25519.GenerateKey(nil)
	f := CustodianFile{Threshold: 2, CAFile: ca, Custodians: []CustodianEntry{{Name: "custodian-1", URL: srv.URL, TokenFile: tok, HPKEKey: hk, SigningKey: sk}}}
	rs, err := f.Remotes()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rs[0].Info(context.Background()); err != nil {
		t.Fatalf("a custodian signed by the CA bundle: %v", err)
	}
	f.CAFile = ""
	rs, _ = f.Remotes()
	if _, err := rs[0].Info(context.Background()); err == nil {
		t.Fatal("a custodian with a certificate no trusted CA signed was called")
	}
	os.WriteFile(ca, []byte("not pem"), 0o644)
	f.CAFile = ca
	if _, err := f.Remotes(); err == nil {
		t.Fatal("a ca_file without a certificate was accepted")
	}
}

// TestCustodiansFileClientCertificate: client_cert_file and
// client_key_file go together; with them the mediator presents its
// client certificate to a custodian that requires one, which answers;
// without them the same custodian refuses the handshake; a key that
// cannot be read stops Remotes.
func TestCustodiansFileClientCertificate(t *testing.T) {
	dir := t.TempDir()
	ca := testca.New(t, dir, "custodians-ca")
	serverCert, serverKey := ca.Server(t, "custodian-1")
	clientCert, clientKey := ca.Client(t, "mediator")
	cert, err := tls.LoadX509KeyPair(serverCert, serverKey)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"name":"custodian-1"}`))
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool()}
	srv.StartTLS()
	defer srv.Close()
	tok := filepath.Join(dir, "token")
	os.WriteFile(tok, []byte("t"), 0o600)
	f := CustodianFile{Threshold: 2, CAFile: ca.File, ClientCertFile: clientCert, ClientKeyFile: clientKey}
	for i := range 2 {
		_, hk, _ := seal.NewKey(seal.KEMX25519)
		sk, _, _ := ed25519.GenerateKey(nil)
		f.Custodians = append(f.Custodians, CustodianEntry{Name: fmt.Sprintf("custodian-%d", i+1), URL: srv.URL, TokenFile: tok, HPKEKey: hk, SigningKey: sk})
	}

	for _, tc := range []struct {
		cert, key string
		ok        bool
	}{{clientCert, clientKey, true}, {clientCert, "", false}, {"", clientKey, false}, {"", "", true}} {
		g := f
		g.ClientCertFile, g.ClientKeyFile = tc.cert, tc.key
		b, _ := json.Marshal(g)
		_, err := ParseCustodians(b)
		if (err == nil) != tc.ok {
			t.Errorf("client_cert_file %q, client_key_file %q: %v, want ok=%v", tc.cert, tc.key, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "client_cert_file and client_key_file go together") {
			t.Errorf("the error does not say why: %v", err)
		}
	}

	rs, err := f.Remotes()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rs[0].Info(context.Background()); err != nil {
		t.Fatalf("with the client certificate: %v", err)
	}
	g := f
	g.ClientCertFile, g.ClientKeyFile = "", ""
	rs, _ = g.Remotes()
	if _, err := rs[0].Info(context.Background()); err == nil {
		t.Fatal("a custodian that requires a client certificate answered a mediator without one")
	}
	g = f
	g.ClientKeyFile = filepath.Join(dir, "missing.key")
	if _, err := g.Remotes(); err == nil || !strings.Contains(err.Error(), "client_key_file") {
		t.Fatalf("a client key that cannot be read: %v", err)
	}
}

package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mediatorhq/mediator/pseudonym"
)

// TestPseudonymServiceFromTheCLI: `pseudonym keygen` writes a private key
// file (0600) and prints the public key; `pseudonym serve` with a config
// naming that key and a caller's token file answers that caller over
// HTTP with evaluations a client trusting the printed key verifies, and
// refuses one without the token. A config with an unknown field does not
// start.
func TestPseudonymServiceFromTheCLI(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "oprf.key")
	_, stdout, _, err := runArgs([]string{"pseudonym", "keygen", "--out", keyFile}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(keyFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st, err)
	}
	pub, err := pseudonym.ParsePublicKey(strings.TrimSpace(stdout))
	if err != nil {
		t.Fatalf("printed public key: %v", err)
	}
	if _, _, _, err := runArgs([]string{"pseudonym", "keygen", "--out", keyFile}, nil); err == nil {
		t.Fatal("keygen overwrote a key file")
	}
	tokenFile := filepath.Join(dir, "gw.token")
	if err := os.WriteFile(tokenFile, []byte("a-gateway-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	config := filepath.Join(dir, "pseudonym.json")
	write := func(body string) {
		if err := os.WriteFile(config, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(fmt.Sprintf(`{"listen": %q, "key_file": %q, "callers": [{"name": "gw-1", "token_file": %q}], "colour": "blue"}`, addr, keyFile, tokenFile))
	if _, _, _, err := runArgs([]string{"pseudonym", "serve", "--config", config}, nil); err == nil || !strings.Contains(err.Error(), "colour") {
		t.Fatalf("a config with an unknown field: %v", err)
	}
	write(fmt.Sprintf(`{"listen": %q, "key_file": %q, "callers": [{"name": "gw-1", "token_file": %q}]}`, addr, keyFile, tokenFile))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		c := testCall(nil)
		done <- c.dispatch(ctx, commands(), []string{"pseudonym", "serve", "--config", config})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	for i := 0; ; i++ {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if i == 100 {
			t.Fatalf("the service did not start: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	c := pseudonym.NewClient(pub, pseudonym.HTTPEvaluate("http://"+addr, "a-gateway-token-0123456789", nil), -1)
	ps, err := c.Pseudonyms(context.Background(), pseudonym.KindConversation, []string{"chat:887766554433"})
	if err != nil || !pseudonym.Valid(ps[0]) {
		t.Fatalf("evaluation over HTTP: %v %v", ps, err)
	}
	_, err = pseudonym.NewClient(pub, pseudonym.HTTPEvaluate("http://"+addr, "", nil), -1).
		Pseudonyms(context.Background(), pseudonym.KindConversation, []string{"x"})
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("without a token: %v", err)
	}
}

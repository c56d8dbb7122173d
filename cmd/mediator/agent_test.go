package main

import (
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mediatorhq/mediator/agent"
)

// TestAgentCommandStartsOnlyLocally: `mediator agent` needs --config; a
// configuration listening where another host could reach it stops the
// command before it contacts anything, naming the rule; and a mediator
// that cannot be reached stops it too, without a token in the error.
func TestAgentCommandStartsOnlyLocally(t *testing.T) {
	if _, _, _, err := runArgs([]string{"agent"}, nil); err == nil || !strings.Contains(err.Error(), "--config") {
		t.Fatalf("without --config: %v", err)
	}
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "agent.token")
	os.WriteFile(tokenFile, []byte("agent-token-canary-0123456789\n"), 0o600)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	write := func(listen string) string {
		b, _ := json.Marshal(map[string]any{"listen": listen, "mediator_url": closed, "token_file": tokenFile,
			"roster_genesis": "sha256:" + strings.Repeat("0f", 32), "pseudonym_token_file": tokenFile, "state_file": filepath.Join(dir, "state.json")})
		path := filepath.Join(dir, "agent.json")
		os.WriteFile(path, b, 0o600)
		return path
	}
	for _, listen := range []string{"0.0.0.0:9000", "10.1.2.3:80", ":9000"} {
		_, _, _, err := runArgs([]string{"agent", "--config", write(listen)}, nil)
		if !errors.Is(err, agent.ErrNotLocal) || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("listen %s: %v, want the agent's refusal to listen beyond this host", listen, err)
		}
	}
	_, _, stderr, err := runArgs([]string{"agent", "--config", write("unix://" + filepath.Join(dir, "agent.sock"))}, nil)
	if err == nil || !strings.Contains(err.Error(), "cannot reach the mediator") {
		t.Fatalf("with the mediator unreachable: %v", err)
	}
	if strings.Contains(err.Error()+stderr, "canary") {
		t.Fatalf("the token is in the error or the log: %v %s", err, stderr)
	}
	if _, err := os.Lstat(filepath.Join(dir, "agent.sock")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("an agent that did not start left its socket: %v", err)
	}
}

package agent

import (
	"encoding/json"
	"errors"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const testGenesis = "sha256:0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f"

// configDir writes the two token files into a new directory and returns
// it with a valid configuration's fields.
func configDir(t *testing.T) (string, map[string]any) {
	t.Helper()
	dir := t.TempDir()
	for name, tok := range map[string]string{"agent.token": "mediator-token-canary-1234\n", "pseudonym.token": "pseudonym-token-canary-5678\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(tok), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir, map[string]any{
		"listen":               "unix://" + filepath.Join(dir, "agent.sock"),
		"mediator_url":         "http://127.0.0.1:8080",
		"token_file":           filepath.Join(dir, "agent.token"),
		"roster_genesis":       testGenesis,
		"pseudonym_token_file": filepath.Join(dir, "pseudonym.token"),
		"state_file":           filepath.Join(dir, "state.json"),
	}
}

// loadWith writes fields, changed by change (a nil value deletes the
// field), as the configuration file and loads it.
func loadWith(t *testing.T, dir string, fields map[string]any, change map[string]any) (Config, error) {
	t.Helper()
	f := maps.Clone(fields)
	for k, v := range change {
		if v == nil {
			delete(f, k)
		} else {
			f[k] = v
		}
	}
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "agent.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return Load(path)
}

// TestLoadReadsEverything: a valid file loads, with the tokens read from
// their files (and offered to the log mask), the defaults of the
// optional fields, and the optional fields when given.
func TestLoadReadsEverything(t *testing.T) {
	dir, fields := configDir(t)
	cfg, err := loadWith(t, dir, fields, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != (Address{Network: "unix", Address: filepath.Join(dir, "agent.sock")}) || cfg.RosterGenesis != testGenesis ||
		cfg.RosterRefresh != DefaultRosterRefresh || cfg.CacheSize != 0 || cfg.RootCAs != nil {
		t.Fatalf("loaded %+v", cfg)
	}
	if s := cfg.Secrets(); len(s) != 2 || s[0] != "mediator-token-canary-1234" || s[1] != "pseudonym-token-canary-5678" {
		t.Fatalf("secrets %q", s)
	}
	cfg, err = loadWith(t, dir, fields, map[string]any{"listen": "[::1]:9000", "cache_size": 500, "roster_refresh": "30s"})
	if err != nil || cfg.Listen.Network != "tcp" || cfg.CacheSize != 500 || cfg.RosterRefresh != 30*time.Second {
		t.Fatalf("optional fields: %+v %v", cfg, err)
	}
}

// TestLoadRefusesANonLocalListen: the agent takes raw identifiers and
// keys from callers it does not authenticate, so a listen address another
// host could reach is refused before anything starts; loopback and unix
// sockets load.
func TestLoadRefusesANonLocalListen(t *testing.T) {
	dir, fields := configDir(t)
	for _, listen := range []string{"0.0.0.0:9000", "10.1.2.3:80", ":9000", "[::]:9000", "192.168.1.20:7000", "example.com:80",
		"[fe80::1%eth0]:80", "127.0.0.1", ""} {
		_, err := loadWith(t, dir, fields, map[string]any{"listen": listen})
		if !errors.Is(err, ErrNotLocal) {
			t.Errorf("listen %q: %v, want ErrNotLocal", listen, err)
		}
	}
	for _, listen := range []string{"unix://relative/agent.sock", "unix:///tmp/../tmp/agent.sock", "127.0.0.1:http", "127.0.0.1:70000"} {
		if _, err := loadWith(t, dir, fields, map[string]any{"listen": listen}); err == nil {
			t.Errorf("listen %q loaded", listen)
		}
	}
	for _, listen := range []string{"127.0.0.1:9000", "127.0.0.2:0", "[::1]:9000", "localhost:9000", "LOCALHOST:1", "unix:///run/agent.sock"} {
		if _, err := loadWith(t, dir, fields, map[string]any{"listen": listen}); err != nil {
			t.Errorf("listen %q: %v", listen, err)
		}
	}
}

// TestLoadRefusesUnknownFieldsAndBadValues: an unknown field, a field
// in another case, a missing required field and a malformed value each
// stop the load, naming the field.
func TestLoadRefusesUnknownFieldsAndBadValues(t *testing.T) {
	dir, fields := configDir(t)
	for _, c := range []struct {
		change map[string]any
		want   string
	}{
		{map[string]any{"colour": "blue"}, "colour"},
		{map[string]any{"Listen": "127.0.0.1:1"}, "Listen"},
		{map[string]any{"token": "inline-secret"}, "token"},
		{map[string]any{"mediator_url": nil}, "mediator_url"},
		{map[string]any{"mediator_url": "ftp://mediator"}, "mediator_url"},
		{map[string]any{"roster_genesis": "sha256:abc"}, "roster_genesis"},
		{map[string]any{"roster_genesis": nil}, "roster_genesis"},
		{map[string]any{"token_file": nil}, "token_file"},
		{map[string]any{"pseudonym_token_file": nil}, "pseudonym_token_file"},
		{map[string]any{"state_file": nil}, "state_file"},
		{map[string]any{"roster_refresh": "abc"}, "roster_refresh"},
		{map[string]any{"roster_refresh": "10ms"}, "roster_refresh"},
		{map[string]any{"cache_size": "many"}, "cache_size"},
	} {
		_, err := loadWith(t, dir, fields, c.change)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error naming %s", c.change, err, c.want)
		}
	}
	path := filepath.Join(dir, "twice.json")
	os.WriteFile(path, []byte(`{"listen":"127.0.0.1:1","listen":"10.0.0.1:1"}`), 0o600)
	if _, err := Load(path); err == nil {
		t.Error("a field given twice loaded")
	}
}

// TestLoadRefusesMissingFiles: a token file, the pseudonym token file,
// the CA file or the state file's directory that is missing (or empty,
// for a token) stops the load, and no error repeats a token.
func TestLoadRefusesMissingFiles(t *testing.T) {
	dir, fields := configDir(t)
	empty := filepath.Join(dir, "empty.token")
	os.WriteFile(empty, []byte("\n"), 0o600)
	notPEM := filepath.Join(dir, "ca.pem")
	os.WriteFile(notPEM, []byte("not a certificate"), 0o600)
	for _, c := range []struct {
		change map[string]any
		want   string
	}{
		{map[string]any{"token_file": filepath.Join(dir, "missing.token")}, "token_file"},
		{map[string]any{"token_file": empty}, "token_file"},
		{map[string]any{"pseudonym_token_file": filepath.Join(dir, "missing.token")}, "pseudonym_token_file"},
		{map[string]any{"state_file": filepath.Join(dir, "no-such-dir", "state.json")}, "state_file"},
		{map[string]any{"ca_file": filepath.Join(dir, "missing.pem")}, "ca_file"},
		{map[string]any{"ca_file": notPEM}, "ca_file"},
	} {
		_, err := loadWith(t, dir, fields, c.change)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error naming %s", c.change, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "canary") {
			t.Errorf("the error repeats a token: %v", err)
		}
	}
	if _, err := Load(filepath.Join(dir, "missing.json")); err == nil {
		t.Error("a missing configuration file loaded")
	}
}

// TestStateRoundTrips: the memory saved is the memory loaded, the file is
// 0600 with no temporary file left beside it, a missing file is no
// memory, and a file for another genesis, malformed or with an unknown
// field is refused.
func TestStateRoundTrips(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	if _, ok, err := LoadState(path, testGenesis); ok || err != nil {
		t.Fatalf("a missing state file: %v %v", ok, err)
	}
	want := State{Genesis: testGenesis, Version: 7, Digest: "sha256:" + strings.Repeat("a1", 32)}
	if err := SaveState(path, want); err != nil {
		t.Fatal(err)
	}
	want.Version = 8
	if err := SaveState(path, want); err != nil {
		t.Fatal(err)
	}
	got, ok, err := LoadState(path, testGenesis)
	if err != nil || !ok || got != want {
		t.Fatalf("loaded %+v %v %v, want %+v", got, ok, err, want)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("state file mode: %v %v", st, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("files beside the state file: %v", entries)
	}
	other := "sha256:" + strings.Repeat("b2", 32)
	if _, _, err := LoadState(path, other); !errors.Is(err, ErrOtherGenesis) {
		t.Fatalf("a state for another genesis: %v, want ErrOtherGenesis", err)
	}
	for _, body := range []string{`{"genesis":"` + testGenesis + `","version":1}`, `{"genesis":"` + testGenesis + `","version":0,"digest":"` + want.Digest + `"}`,
		`{"genesis":"` + testGenesis + `","version":1,"digest":"` + want.Digest + `","extra":1}`, `not json`} {
		os.WriteFile(path, []byte(body), 0o600)
		if _, _, err := LoadState(path, testGenesis); err == nil {
			t.Errorf("state %s loaded", body)
		}
	}
}

// TestListenUnixSocket: the socket is created 0600 under its path, a
// stale socket file is replaced, a live one and a regular file are not,
// and Close removes the socket.
func TestListenUnixSocket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.sock")
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close() // leaves the file, as a killed agent does
	ln, err := Listen(Address{Network: "unix", Address: path})
	if err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	if st, err := os.Lstat(path); err != nil || st.Mode()&os.ModeSocket == 0 || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v %v", st, err)
	}
	if ln.Addr().String() != path {
		t.Fatalf("Addr %s, want %s", ln.Addr(), path)
	}
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	if c, err := net.Dial("unix", path); err != nil {
		t.Fatalf("dial the agent's socket: %v", err)
	} else {
		c.Close()
	}
	if _, err := Listen(Address{Network: "unix", Address: path}); err == nil {
		t.Fatal("a second listener replaced a live socket")
	}
	ln.Close()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the socket is left after Close: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("left in the socket's directory: %v", entries)
	}
	regular := filepath.Join(dir, "file")
	os.WriteFile(regular, []byte("x"), 0o600)
	if _, err := Listen(Address{Network: "unix", Address: regular}); err == nil {
		t.Fatal("listening replaced a regular file")
	}
}

// TestListenAndServeOnlyLocally: a loopback TCP listener opens; Serve
// refuses a listener on every interface.
func TestListenAndServeOnlyLocally(t *testing.T) {
	ln, err := Listen(Address{Network: "tcp", Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	if _, err := Listen(Address{Network: "tcp", Address: "0.0.0.0:0"}); !errors.Is(err, ErrNotLocal) {
		t.Fatalf("Listen on 0.0.0.0: %v", err)
	}
	wide, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer wide.Close()
	if err := (&Agent{}).Serve(t.Context(), wide); !errors.Is(err, ErrNotLocal) {
		t.Fatalf("Serve on 0.0.0.0: %v, want ErrNotLocal", err)
	}
}

package custodian

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	vaultapi "github.com/hashicorp/vault/api"
)

// fakeKV answers every KV v2 write with status write, and a metadata read
// with status meta and, if 200, current version current.
func fakeKV(t *testing.T, write, meta, current int) *store {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.HasPrefix(r.URL.Path, "/v1/kv/data/") && (r.Method == http.MethodPut || r.Method == http.MethodPost):
			w.WriteHeader(write)
			fmt.Fprint(w, `{"errors":["check-and-set parameter did not match the current version"]}`)
		case strings.HasPrefix(r.URL.Path, "/v1/kv/metadata/") && r.Method == http.MethodGet:
			w.WriteHeader(meta)
			if meta == http.StatusOK {
				fmt.Fprintf(w, `{"data":{"current_version":%d,"versions":{}}}`, current)
			} else {
				fmt.Fprint(w, `{"errors":[]}`)
			}
		default:
			t.Errorf("unexpected %s %s", r.Method, r.URL.Path)
			w.WriteHeader(http.StatusTeapot)
		}
	}))
	return storeAt(t, srv)
}

// storeAt is custodian-1's store on the fake Vault srv, which it closes
// when the test ends.
func storeAt(t *testing.T, srv *httptest.Server) *store {
	t.Helper()
	t.Cleanup(srv.Close)
	cfg := vaultapi.DefaultConfig()
	cfg.Address, cfg.MaxRetries = srv.URL, 0
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken("t")
	return newStore(c, "kv", "custodian-1")
}

// TestCASRefused: a check-and-set write counts as refused (errExists for
// write-once, errChanged for a rewrite) only when Vault answers 400 and
// the path's state, read again, confirms it; whatever the message says,
// any other answer or an unreadable state is a failure.
func TestCASRefused(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name                  string
		write, meta, current  int
		wantOnce, wantReplace error // nil: a failure, neither sentinel
	}{
		{"refused, the record moved on", 400, 200, 3, errExists, errChanged},
		{"refused, still at the version read", 400, 200, 2, errExists, nil},
		{"400 for another reason, nothing there", 400, 404, 0, nil, errChanged},
		{"400, the state unreadable", 400, 403, 0, nil, nil},
		{"400, the state unavailable", 400, 500, 0, nil, nil},
		{"not a 400", 500, 200, 3, nil, nil},
		{"denied", 403, 200, 3, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := fakeKV(t, tc.write, tc.meta, tc.current)
			err := s.putOnce(ctx, s.path("roster"), map[string]any{"a": "b"})
			check(t, "putOnce", err, tc.wantOnce)
			err = s.replace(ctx, s.path("roster"), &vaultapi.KVSecret{VersionMetadata: &vaultapi.KVVersionMetadata{Version: 2}}, map[string]any{"a": "c"})
			check(t, "replace of version 2", err, tc.wantReplace)
		})
	}
}

func check(t *testing.T, what string, err, want error) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("%s: no error", what)
	case want != nil && err != want:
		t.Errorf("%s: %v, want %v", what, err, want)
	case want == nil && (errors.Is(err, errExists) || errors.Is(err, errChanged)):
		t.Errorf("%s: %v, want a failure", what, err)
	}
}

// TestReplaceDestroysWhatIsLeft: a replace asks Vault to destroy only the
// older versions p's metadata lists as not destroyed yet, never every
// version from 1 on: what a rewrite costs does not grow with the record's
// age (a witness rewrites its record at every cosignature).
func TestReplaceDestroysWhatIsLeft(t *testing.T) {
	var destroyed []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.HasPrefix(r.URL.Path, "/v1/kv/data/") && (r.Method == http.MethodPut || r.Method == http.MethodPost):
			fmt.Fprint(w, `{"data":{"version":901}}`)
		case strings.HasPrefix(r.URL.Path, "/v1/kv/metadata/") && r.Method == http.MethodGet:
			// Vault keeps the newest ten: 892–899 destroyed by the
			// replaces before, 900 the one replaced, 901 the new one.
			versions := make([]string, 0, 10)
			for v := 892; v <= 901; v++ {
				versions = append(versions, fmt.Sprintf(`"%d":{"destroyed":%v}`, v, v < 900))
			}
			fmt.Fprintf(w, `{"data":{"current_version":901,"versions":{%s}}}`, strings.Join(versions, ","))
		case strings.HasPrefix(r.URL.Path, "/v1/kv/destroy/"):
			body, _ := io.ReadAll(r.Body)
			destroyed = append(destroyed, string(body))
			w.WriteHeader(http.StatusNoContent)
		default:
			t.Errorf("unexpected %s %s", r.Method, r.URL.Path)
			w.WriteHeader(http.StatusTeapot)
		}
	}))
	s := storeAt(t, srv)
	sec := &vaultapi.KVSecret{VersionMetadata: &vaultapi.KVVersionMetadata{Version: 900}}
	if err := s.replace(context.Background(), s.path("witness/x"), sec, map[string]any{"a": "b"}); err != nil {
		t.Fatal(err)
	}
	if len(destroyed) != 1 || strings.ReplaceAll(destroyed[0], " ", "") != `{"versions":[900]}` {
		t.Fatalf("destroy requests %q, want one of version 900", destroyed)
	}
}

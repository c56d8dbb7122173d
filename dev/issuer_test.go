package dev

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mediatorhq/mediator/identity"
)

func TestIssueBounds(t *testing.T) {
	iss, err := LoadOrCreateIssuer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := iss.Issue("", nil, time.Hour); err == nil {
		t.Error("empty subject issued")
	}
	if _, err := iss.Issue("a", nil, 48*time.Hour); err == nil {
		t.Error("ttl above the cap issued")
	}
}

func TestIssuerKeyFileIsPrivate(t *testing.T) {
	dir := t.TempDir()
	first, err := LoadOrCreateIssuer(dir)
	if err != nil {
		t.Fatal(err)
	}
	second, err := LoadIssuer(dir)
	if err != nil || second.key.KeyID != first.key.KeyID {
		t.Fatalf("dev key not reloaded from the state directory: %v", err)
	}
	st, err := os.Stat(filepath.Join(dir, devKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("dev key mode = %v", st.Mode().Perm())
	}
	if _, err := identity.NewFileKeys(filepath.Join(dir, devKeyFile)); err == nil {
		t.Fatal("a JWKS holding a private key was accepted")
	}
}

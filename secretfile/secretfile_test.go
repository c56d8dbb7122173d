package secretfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "s")
	os.WriteFile(p, []byte("  s3cr3t-canary\n"), 0o600)
	if s, err := Read(p); err != nil || s != "s3cr3t-canary" {
		t.Fatalf("Read = %q, %v", s, err)
	}
	os.WriteFile(p, []byte("\n"), 0o600)
	if _, err := Read(p); err == nil {
		t.Fatal("an empty secret file was accepted")
	}
	os.WriteFile(p, []byte(strings.Repeat("x", maxSize+1)), 0o600)
	if _, err := Read(p); err == nil || strings.Contains(err.Error(), "xxx") {
		t.Fatalf("an oversized file: %v", err)
	}
	if _, err := Read(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("a missing file was read")
	}
}

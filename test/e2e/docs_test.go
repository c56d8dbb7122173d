package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestAPIGuideExamples runs every sh block of docs/api.md, in order and in
// one shell, against a fresh `mediator dev`: the guide's examples work as
// written.
func TestAPIGuideExamples(t *testing.T) {
	guide, err := os.ReadFile(filepath.Join("..", "..", "docs", "api.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(string(guide), -1)
	if len(blocks) < 10 {
		t.Fatalf("docs/api.md has %d sh blocks; the guide lost its examples", len(blocks))
	}
	state := t.TempDir()
	addr := freeAddr(t)
	p := start(t, []string{"DATABASE_URL=" + env.NewDatabase(t)}, "dev", "--addr", addr, "--state-dir", state)
	waitStatus(t, p, "http://"+addr+"/readyz", 200, 3*time.Minute)

	var script strings.Builder
	script.WriteString("set -euo pipefail\n")
	for i, b := range blocks {
		// Say which block runs, so a failure points at it.
		script.WriteString("echo '--- docs/api.md block " + string(rune('0'+i/10)) + string(rune('0'+i%10)) + "' >&2\n")
		script.WriteString(b[1])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script.String())
	cmd.Dir = t.TempDir()
	cmd.Env = append(cleanEnv(), "PATH="+filepath.Dir(mediator)+":"+os.Getenv("PATH"), "MEDIATOR_DEV_STATE_DIR="+state)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("docs/api.md examples failed: %v\n%s\n--- dev output:\n%s", err, out.String(), p.Output())
	}
	for _, want := range []string{`"status":"ready"`, `"accepted":2`, "ok: ", "escrowed conv-a", "policy_denied", "released 1 keys", `"group_by":"transport"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the examples' output lacks %q:\n%s", want, out.String())
		}
	}
}

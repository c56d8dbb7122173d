package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/note"

	"github.com/mediatorhq/mediator/loadgen"
	"github.com/mediatorhq/mediator/mirror"
	"github.com/mediatorhq/mediator/witness"
)

// TestMirrorEndToEnd runs a regulator's `mediator mirror serve` on a
// database of its own, required by the log's witness policy:
//   - it receives the log's entries and cosigns every published
//     checkpoint, and serves the same checkpoint from its copy;
//   - stopped, publication stops (the log goes on signing); restarted, it
//     catches up and publication resumes;
//   - after the log's audit_entries is dropped, `mediator mirror restore`
//     rebuilds it from the mirror's copy, and `mediator audit verify`
//     passes with the same roots, witnesses checked.
func TestMirrorEndToEnd(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	skey, vkey, _ := note.GenerateKey(rand.Reader, "mediator/audit")
	keyFile := filepath.Join(dir, "checkpoint.key")
	mustWrite(t, keyFile, skey)
	mustWrite(t, filepath.Join(dir, "read-token"), "mirror-read-token-canary-0123456789")
	mirrorAddr := freeAddr(t)
	mirrorURL := "http://" + mirrorAddr
	config, _ := json.Marshal(map[string]any{
		"listen": mirrorAddr, "database_url": env.NewDatabase(t), "name": "regulator.e2e.example/mirror-1",
		"key_file": filepath.Join(dir, "mirror.key"), "read_token_file": filepath.Join(dir, "read-token"), "log_key": vkey})
	mustWrite(t, filepath.Join(dir, "mirror.json"), string(config))
	line, stderr, err := runCmd(t, nil, "mirror", "init", "--config", filepath.Join(dir, "mirror.json"), "--url", mirrorURL)
	if err != nil || !strings.HasPrefix(line, "witness regulator.e2e.example/mirror-1 ") || !strings.HasSuffix(line, " "+mirrorURL+"\n") {
		t.Fatalf("mirror init: %v %q\n%s", err, line, stderr)
	}
	mirrorKey := strings.Fields(line)[2]
	policy := filepath.Join(dir, "witnesses.policy")
	mustWrite(t, policy, "log "+vkey+"\n"+line+"group regulator all regulator.e2e.example/mirror-1\nquorum regulator\n")
	startMirror := func() *process {
		p := start(t, nil, "mirror", "serve", "--config", filepath.Join(dir, "mirror.json"))
		waitStatus(t, p, mirrorURL+"/healthz", 200, 30*time.Second)
		return p
	}
	mp := startMirror()

	in := startServe(t, serveOpts{extraEnv: []string{"MEDIATOR_CHECKPOINT_KEY_FILE=" + keyFile, "MEDIATOR_WITNESSES=" + policy}})
	in.waitReady(t, 60*time.Second)
	gw, _ := in.issuer.Issue("gw-mirror", []string{"ingest"}, time.Hour)
	aud, _ := in.issuer.Issue("aud-mirror", []string{"auditor"}, time.Hour)
	ingest := func(first int64, n int) {
		var body bytes.Buffer
		for i := 0; i < n; i += 1000 {
			body.Reset()
			loadgen.WriteBatch(&body, "mirror", first+int64(i), 1000)
			if code, resp := post(t, in.base+"/v1/events", "application/json", gw, body.Bytes()); code != 200 {
				t.Fatalf("ingest: %d %v", code, resp)
			}
		}
	}
	published := func(size int64, within time.Duration) string {
		t.Helper()
		var text string
		for deadline := time.Now().Add(within); ; time.Sleep(100 * time.Millisecond) {
			_, text = getText(t, in.base+"/v1/audit/checkpoint", aud)
			if strings.HasPrefix(text, fmt.Sprintf("mediator/audit\n%d\n", size)) {
				if !strings.Contains(text, "\n— regulator.e2e.example/mirror-1 ") {
					t.Fatalf("published without the mirror's cosignature:\n%s", text)
				}
				return text
			}
			if time.Now().After(deadline) {
				t.Fatalf("no published checkpoint of %d entries within %s:\n%s\n--- mirror:\n%s", size, within, text, mp.Output())
			}
		}
	}
	copyURL := mirrorURL + "/" + mirror.OriginHash("mediator/audit")
	token := "mirror-read-token-canary-0123456789"

	step(t, "the mirror cosigns what it holds and serves the same checkpoint", func(t *testing.T) {
		ingest(0, 3000)
		cp := published(3000, 30*time.Second)
		signed, err := mirror.Copy{URL: copyURL, Token: token}.Checkpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		mv, _ := witness.NewVerifier(mirrorKey)
		n, err := note.Open(signed, note.VerifierList(mv))
		if err != nil || !strings.HasPrefix(cp, n.Text) {
			t.Fatalf("the mirror's checkpoint %v:\n%s\nthe log's:\n%s", err, signed, cp)
		}
	})

	var signedBefore int64
	step(t, "with the mirror stopped nothing newer is published; restarted, it catches up", func(t *testing.T) {
		if err := mp.stop(t, syscall.SIGTERM); err != nil {
			t.Fatalf("mirror exit: %v\n%s", err, mp.Output())
		}
		ingest(3000, 2000)
		db, err := pgx.Connect(ctx, in.dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close(ctx)
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			if err := db.QueryRow(ctx, "SELECT max(tree_size) FROM audit_checkpoints").Scan(&signedBefore); err != nil {
				t.Fatal(err)
			}
			if signedBefore == 5000 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the log signed up to %d, not 5000", signedBefore)
			}
		}
		time.Sleep(2 * time.Second) // several checkpoint rounds
		if _, text := getText(t, in.base+"/v1/audit/checkpoint", aud); !strings.HasPrefix(text, "mediator/audit\n3000\n") {
			t.Fatalf("published while the required mirror was down:\n%s", text)
		}
		mp = startMirror()
		published(5000, 60*time.Second)
	})

	step(t, "a dropped entries table is restored from the mirror and verifies with the same roots", func(t *testing.T) {
		if err := in.proc.stop(t, syscall.SIGTERM); err != nil {
			t.Fatalf("serve exit: %v\n%s", err, in.proc.Output())
		}
		db, err := pgx.Connect(ctx, in.dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close(ctx)
		var root []byte
		if err := db.QueryRow(ctx, "SELECT root_hash FROM audit_checkpoints WHERE tree_size = 5000").Scan(&root); err != nil {
			t.Fatal(err)
		}
		mustExec(t, db, "DROP TABLE audit_entries")
		tokenFile := filepath.Join(dir, "read-token")
		op := []string{"DATABASE_URL=" + in.dsn}
		out, stderr, err := runCmd(t, op, "mirror", "restore", "--from", copyURL, "--token-file", tokenFile,
			"--log-key", vkey, "--mirror-key", mirrorKey, "--yes")
		if err != nil || !strings.Contains(out, "wrote 5000 entries") || strings.Contains(stderr, "WARNING") || strings.Contains(out+stderr, "mirror-read-token-canary") {
			t.Fatalf("mirror restore: %v\n%s\n%s", err, out, stderr)
		}
		out, stderr, err = runCmd(t, op, "mirror", "restore", "--from", copyURL, "--token-file", tokenFile,
			"--log-key", vkey, "--mirror-key", mirrorKey, "--yes")
		if err == nil || !strings.Contains(stderr, "not empty") {
			t.Fatalf("a second restore over the restored table: %v\n%s\n%s", err, out, stderr)
		}
		out, stderr, err = runCmd(t, append(op, "MEDIATOR_WITNESSES="+policy), "audit", "verify", "--key", vkey, "--output", "json")
		var r struct {
			OK               bool   `json:"ok"`
			TreeSize         int64  `json:"tree_size"`
			Root             string `json:"root"`
			WitnessesChecked bool   `json:"witnesses_checked"`
		}
		if err != nil || json.Unmarshal([]byte(out), &r) != nil || !r.OK || r.TreeSize != 5000 ||
			r.Root != base64.StdEncoding.EncodeToString(root) || !r.WitnessesChecked {
			t.Fatalf("audit verify after the restore: %v\n%s\n%s\nwant ok, 5000 entries, root %s", err, out, stderr, base64.StdEncoding.EncodeToString(root))
		}
	})
}

func mustWrite(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

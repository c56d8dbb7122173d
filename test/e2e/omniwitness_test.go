package e2e

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/mediatorhq/mediator/dev/servers"
	"github.com/mediatorhq/mediator/witness"
)

// TestIndependentWitness: transparency-dev's omniwitness, a witness no one
// here wrote (built from the module proxy at a pinned version, tools/witness),
// cosigns the mediator's checkpoints over C2SP tlog-witness: the service
// publishes only checkpoints that carry its cosignature, which verifies
// with its key; and it refuses a fork signed with the log's own key.
func TestIndependentWitness(t *testing.T) {
	ctx := context.Background()
	bin, err := servers.EnsureWitnessBinary(ctx, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		t.Fatalf("the pinned omniwitness could not be built: %v", err)
	}
	dir := t.TempDir()
	skey, vkey, _ := note.GenerateKey(rand.Reader, "mediator/audit")
	keyFile := filepath.Join(dir, "checkpoint.key")
	os.WriteFile(keyFile, []byte(skey), 0o600)
	wskey, wvkey, _ := note.GenerateKey(rand.Reader, "omniwitness.test")
	os.WriteFile(filepath.Join(dir, "witness.key"), []byte(wskey), 0o600)
	os.WriteFile(filepath.Join(dir, "logs.yaml"), []byte("Logs:\n  - Origin: mediator/audit\n    PublicKey: "+vkey+"\n"), 0o600)
	addr, metricsAddr := freeAddr(t), freeAddr(t)
	w := startProgram(t, bin, nil, "--listen", addr, "--metrics_listen", metricsAddr,
		"--private_key_path", filepath.Join(dir, "witness.key"), "--db_file", filepath.Join(dir, "witness.db"),
		"--additional_logs", filepath.Join(dir, "logs.yaml"), "--alsologtostderr")
	url := "http://" + addr
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, err := http.Post(url+"/add-checkpoint", "text/plain", strings.NewReader("garbage"))
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the omniwitness does not answer: %v\n%s", err, w.Output())
		}
	}
	cosigKey, err := fnote.VKeyToCosignatureV1(wvkey)
	if err != nil {
		t.Fatal(err)
	}
	wv, err := witness.NewVerifier(cosigKey)
	if err != nil {
		t.Fatal(err)
	}
	policy, _ := json.Marshal(map[string]any{"quorum": 1, "witnesses": []map[string]string{{"name": "omniwitness.test", "url": url, "verifier_key": cosigKey}}})
	os.WriteFile(filepath.Join(dir, "witnesses.json"), policy, 0o600)

	in := startServe(t, serveOpts{extraEnv: []string{"MEDIATOR_CHECKPOINT_KEY_FILE=" + keyFile, "MEDIATOR_WITNESSES=" + filepath.Join(dir, "witnesses.json")}})
	in.waitReady(t, 60*time.Second)
	gw, _ := in.issuer.Issue("gw", []string{"ingest"}, time.Hour)
	aud, _ := in.issuer.Issue("aud", []string{"auditor"}, time.Hour)
	for round := 0; round < 2; round++ {
		var evs []map[string]any
		for i := range 5 {
			evs = append(evs, event(fmt.Sprintf("ow-%d-%d", round, i), conv("conv-ow"), nil))
		}
		if code, body := post(t, in.base+"/v1/events", "application/json", gw, batch(evs...)); code != 200 {
			t.Fatalf("events: %d %v", code, body)
		}
		want := int64(5 * (round + 1))
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			_, text := getText(t, in.base+"/v1/audit/checkpoint", aud)
			n, err := note.Open([]byte(text), note.VerifierList(wv))
			if err == nil && len(n.Sigs) == 1 && strings.HasPrefix(n.Text, fmt.Sprintf("mediator/audit\n%d\n", want)) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no checkpoint of %d entries cosigned by the omniwitness:\n%s\n--- witness:\n%s", want, text, w.Output())
			}
		}
	}

	// A fork at the size it cosigned, signed with the log's own key.
	signer, _ := note.NewSigner(skey)
	resp, err := http.Post(url+"/add-checkpoint", "text/plain", strings.NewReader("old 10\n\n"+forkNote(t, signer, 10, 0x07)))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// C2SP leaves it 409 (same size, another root) or 422 (the empty
	// proof does not verify); either way, nothing is cosigned.
	if resp.StatusCode != http.StatusConflict && resp.StatusCode != http.StatusUnprocessableEntity || strings.Contains(string(body), "— ") {
		t.Fatalf("the omniwitness answered a fork with %d %q", resp.StatusCode, body)
	}
}

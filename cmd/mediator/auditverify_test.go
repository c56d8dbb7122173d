package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/mediatorhq/mediator/audit"
	"github.com/mediatorhq/mediator/witness"
)

// testBundle writes an evidence bundle of no entries (a query that
// matched none) under a checkpoint of size 1 that the log's key, named
// origin, signed, with the cosignatures of cosigners, and with count as
// the header's count. It returns its path and the log's verifier key.
func testBundle(t *testing.T, origin string, count int64, cosigners ...note.Signer) (string, string) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := note.NewSigner(skey)
	body := []byte(origin + "\n1\n" + "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n")
	signed, err := note.Sign(&note.Note{Text: string(body)}, append([]note.Signer{signer}, cosigners...)...)
	if err != nil {
		t.Fatal(err)
	}
	none := audit.NewSeqsDigest().Sum()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.Encode(audit.BundleLine{Type: "header", Query: &audit.BundleQuery{AfterSeq: -1}, Checkpoint: string(signed), Count: &count, SeqsSHA256: none})
	zero := int64(0)
	enc.Encode(audit.BundleLine{Type: "trailer", Count: &zero, SeqsSHA256: none})
	path := filepath.Join(t.TempDir(), "bundle.ndjson")
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, vkey
}

// verifyJSON is audit verify's JSON output, decoded loosely.
func verifyJSON(t *testing.T, stdout string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(stdout), &m); err != nil || strings.Count(strings.TrimSpace(stdout), "\n") != 0 {
		t.Fatalf("not one JSON object: %v\n%s", err, stdout)
	}
	for _, k := range []string{"ok", "source", "origin", "entries", "tree_size", "root", "checkpoints", "checkpoint_size", "keys", "keys_from",
		"witnesses_checked", "quorum", "witnessed", "not_checked", "problems", "first_failure", "origin_mismatch"} {
		if _, ok := m[k]; !ok {
			t.Errorf("no %q in %s", k, stdout)
		}
	}
	return m
}

// exitOf is the exit status run would give err.
func exitOf(err error) int { return exitStatus(err) }

// TestAuditVerifySaysWhatItChecked: an ok run names what it checked and,
// on a line a person reads, what it did not (witness cosignatures, with
// no witness policy); --output json says the same as one object.
func TestAuditVerifySaysWhatItChecked(t *testing.T) {
	path, vkey := testBundle(t, "mediator.test/audit", 0)
	_, out, _, err := runArgs([]string{"audit", "verify", "--bundle", path, "--key", vkey}, nil)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{
		"checked: 0 entries (tree size 1, root 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=) and 1 checkpoints of origin mediator.test/audit, with 1 keys (--key)",
		"not checked: witness cosignatures (no witness policy configured: --witnesses/MEDIATOR_WITNESSES)\n",
		"not checked: that no other entry matches the bundle's query",
		"ok: 0 entries and 1 checkpoints verified\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
	_, out, _, err = runArgs([]string{"audit", "verify", "--bundle", path, "--key", vkey, "--output", "json"}, nil)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	m := verifyJSON(t, out)
	if m["ok"] != true || m["source"] != "bundle" || m["origin"] != "mediator.test/audit" || m["tree_size"] != 1.0 || m["witnesses_checked"] != false ||
		m["first_failure"] != nil || m["origin_mismatch"] != nil || !strings.Contains(jsonText(m["not_checked"]), "witness cosignatures (no witness policy configured") {
		t.Fatalf("%s", out)
	}
	if _, _, _, err := runArgs([]string{"audit", "verify", "--bundle", path, "--key", vkey, "--output", "yaml"}, nil); exitOf(err) != 2 {
		t.Fatalf("--output yaml: %v", err)
	}
}

func jsonText(v any) string { b, _ := json.Marshal(v); return string(b) }

// TestAuditVerifyWitnessesFromTheEnvironment: MEDIATOR_WITNESSES, the
// variable serve reads, is a witness policy audit verify applies: a
// checkpoint without the quorum's cosignatures fails, one with them passes
// and says so.
func TestAuditVerifyWitnessesFromTheEnvironment(t *testing.T) {
	seed := make([]byte, 32)
	rand.Read(seed)
	w, wkey, err := witness.NewSigner("witness.test", seed)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := witness.NewVerifier(wkey); err != nil {
		t.Fatal(err)
	}
	policy := filepath.Join(t.TempDir(), "witnesses.json")
	b, _ := json.Marshal(map[string]any{"quorum": 1, "witnesses": []map[string]string{{"name": "witness.test", "url": "https://witness.test", "verifier_key": wkey}}})
	os.WriteFile(policy, b, 0o600)
	env := map[string]string{"MEDIATOR_WITNESSES": policy}

	bare, vkey := testBundle(t, "mediator.test/audit", 0)
	_, out, _, err := runArgs([]string{"audit", "verify", "--bundle", bare, "--key", vkey}, env)
	if exitOf(err) != 1 || !strings.Contains(out, "cosigned by 0 witnesses, short of the policy's quorum witnesses: 1 of (witness.test)") || !strings.Contains(out, "verification FAILED") {
		t.Fatalf("uncosigned, MEDIATOR_WITNESSES set: %v\n%s", err, out)
	}
	cosigned, vkey := testBundle(t, "mediator.test/audit", 0, w)
	_, out, _, err = runArgs([]string{"audit", "verify", "--bundle", cosigned, "--key", vkey}, env)
	if err != nil || !strings.Contains(out, "witnesses: 1 of 1 checkpoints cosigned by the quorum of 1") || strings.Contains(out, "not checked: witness") {
		t.Fatalf("cosigned: %v\n%s", err, out)
	}
	_, out, _, _ = runArgs([]string{"audit", "verify", "--bundle", cosigned, "--key", vkey, "--output", "json"}, env)
	if m := verifyJSON(t, out); m["ok"] != true || m["witnesses_checked"] != true || m["witnessed"] != 1.0 || m["quorum"] != 1.0 {
		t.Fatalf("%s", out)
	}
}

// TestAuditVerifyOriginIsConfiguration: an origin configured otherwise
// than the key's, or a bundle's checkpoint of another origin than the
// key's, is a configuration error (exit 3, "origin X expected, Y found"),
// never a failed verification; a bundle that is wrong still fails.
func TestAuditVerifyOriginIsConfiguration(t *testing.T) {
	path, vkey := testBundle(t, "mediator.test/audit", 0)
	for _, c := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"MEDIATOR_LOG_ORIGIN is not the key's, bundle", []string{"--bundle", path, "--key", vkey},
			map[string]string{"MEDIATOR_LOG_ORIGIN": "mediator.example/audit"}, "origin mediator.example/audit expected, mediator.test/audit found (in the --key)"},
		{"--log-origin is not the key's, database", []string{"--key", vkey, "--log-origin", "mediator.example/audit"},
			map[string]string{"DATABASE_URL": "postgres://127.0.0.1:1/none"}, "origin mediator.example/audit expected, mediator.test/audit found (in the --key)"},
		{"the bundle is another log's", []string{"--bundle", path, "--key", func() string {
			_, k, _ := note.GenerateKey(rand.Reader, "mediator.example/audit")
			return k
		}()}, nil, "origin mediator.example/audit expected, mediator.test/audit found (in the bundle's checkpoint)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, out, _, err := runArgs(append([]string{"audit", "verify"}, c.args...), c.env)
			if exitOf(err) != 3 || !strings.Contains(out, c.want) || strings.Contains(out, "FAIL") || strings.Contains(strings.ToLower(out), "tamper") {
				t.Fatalf("%v\n%s", err, out)
			}
			_, out, _, err = runArgs(append([]string{"audit", "verify", "--output", "json"}, c.args...), c.env)
			m := verifyJSON(t, out)
			if exitOf(err) != 3 || m["ok"] != false || m["origin_mismatch"] == nil || m["first_failure"] != nil || !strings.Contains(jsonText(m["origin_mismatch"]), "mediator.example/audit") {
				t.Fatalf("%v\n%s", err, out)
			}
		})
	}
	// The right origin and a bundle whose header promises an entry it
	// lacks: a failure, not a configuration error.
	short, vkey := testBundle(t, "mediator.test/audit", 1)
	_, out, _, err := runArgs([]string{"audit", "verify", "--bundle", short, "--key", vkey}, map[string]string{"MEDIATOR_LOG_ORIGIN": "mediator.test/audit"})
	if exitOf(err) != 1 || !strings.Contains(out, "verification FAILED") || strings.Contains(out, "expected,") {
		t.Fatalf("%v\n%s", err, out)
	}
	_, out, _, _ = runArgs([]string{"audit", "verify", "--bundle", short, "--key", vkey, "--output", "json"}, nil)
	if m := verifyJSON(t, out); m["ok"] != false || !strings.Contains(jsonText(m["first_failure"]), `"seq":null`) ||
		!strings.Contains(jsonText(m["first_failure"]), "entries were removed or added") {
		t.Fatalf("%s", out)
	}
}

// TestVerifyMeter: on a terminal the meter redraws one line with entries
// verified, entries/s and the time left, at most every meterEvery and
// always at the end, and clears it; with stderr not a terminal there is
// no meter and verification is told of none.
func TestVerifyMeter(t *testing.T) {
	if got, want := meterLine(50000, 200000, time.Second), "verified 50000 of 200000 entries, 50000 entries/s, ETA 3s"; got != want {
		t.Fatalf("%q, want %q", got, want)
	}
	if got, want := meterLine(0, 10, 0), "verified 0 of 10 entries"; got != want {
		t.Fatalf("%q, want %q", got, want)
	}
	if got, want := meterLine(12, 10, 2*time.Second), "verified 12 of 12 entries, 6 entries/s"; got != want {
		t.Fatalf("%q, want %q", got, want)
	}
	var b bytes.Buffer
	now := time.Unix(0, 0)
	m := &verifyMeter{w: &b, now: func() time.Time { return now }}
	p := m.progress()
	p(0, 300)
	now = now.Add(100 * time.Millisecond)
	p(100, 300) // too soon: not drawn
	now = now.Add(200 * time.Millisecond)
	p(200, 300)
	now = now.Add(10 * time.Millisecond)
	p(300, 300) // the end: drawn however soon
	m.finish()
	want := "\rverified 0 of 300 entries\x1b[K" +
		"\rverified 200 of 300 entries, 667 entries/s, ETA 0s\x1b[K" +
		"\rverified 300 of 300 entries, 968 entries/s\x1b[K" +
		"\r\x1b[K"
	if b.String() != want {
		t.Fatalf("%q\nwant %q", b.String(), want)
	}

	c, _, _, _ := runArgs([]string{"audit", "verify", "--help"}, nil)
	if m := c.progressMeter(); m != nil || m.progress() != nil {
		t.Fatal("a meter on a stderr that is not a terminal")
	}
	m.finish() // a nil meter does nothing
	f, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if (&call{stderr: f}).progressMeter() != nil {
		t.Fatal("a meter on a file")
	}
}

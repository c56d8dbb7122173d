package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/mediatorhq/mediator/audit"
	"github.com/mediatorhq/mediator/test/testdb"
)

// TestAuditVerifyState runs audit verify --state as the daily job does:
// the first run (no state file) is a full one that writes it; the next
// checks only the new entries and a consistency proof, and saves the new
// checkpoint (MEDIATOR_AUDIT_VERIFY_STATE works as --state); a state of
// another log is a configuration error; a history rewritten below the
// state fails, naming the consistency proof, and leaves the state as it
// was.
func TestAuditVerifyState(t *testing.T) {
	ctx := context.Background()
	pool := testdb.Pool(t, pgEnv)
	const origin = "mediator.test/audit"
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	key, err := audit.ParseCheckpointKey(skey, origin)
	if err != nil {
		t.Fatal(err)
	}
	log, closeLog, err := audit.Open(ctx, audit.Config{Pool: pool, Origin: origin, Key: key, CheckpointInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer closeLog(ctx)
	grow := func(from, n int) {
		t.Helper()
		var es []audit.Entry
		for i := from; i < from+n; i++ {
			id := "ev-" + strconv.Itoa(i)
			es = append(es, audit.Entry{Kind: "note", EventID: id, Record: map[string]any{"kind": "note", "n": i, "event_id": id}})
		}
		if _, err := log.Append(ctx, es); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if c, err := log.LatestCheckpoint(ctx); err == nil && c.Size == int64(from+n) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("no checkpoint of %d entries", from+n)
			}
		}
	}
	grow(0, 10)
	closeLog(ctx) // no more checkpoints behind the test's back
	state := filepath.Join(t.TempDir(), "state.json")
	env := map[string]string{"DATABASE_URL": pool.Config().ConnString()}
	verify := func(extra ...string) (string, error) {
		_, out, stderr, err := runArgs(append([]string{"audit", "verify", "--key", vkey}, extra...), env)
		return out + stderr, err
	}

	out, err := verify("--state", state)
	if err != nil || !strings.Contains(out, "state: "+state+" does not exist: a full verification (the first run)") ||
		!strings.Contains(out, "ok: 10 entries") || !strings.Contains(out, "state: saved checkpoint 10 to "+state) {
		t.Fatalf("first run: %v\n%s", err, out)
	}
	if st, err := audit.ReadVerifyState(state); err != nil || st.Size != 10 || st.Origin != origin {
		t.Fatalf("state after the first run: %+v %v", st, err)
	}

	log, closeLog, err = audit.Open(ctx, audit.Config{Pool: pool, Origin: origin, Key: key, CheckpointInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	grow(10, 7)
	closeLog(ctx)
	env["MEDIATOR_AUDIT_VERIFY_STATE"] = state
	out, err = verify("--output", "json")
	var r map[string]any
	if err != nil || json.Unmarshal([]byte(out), &r) != nil || r["ok"] != true || r["entries"] != 7.0 || r["from_size"] != 10.0 || r["to_size"] != 17.0 ||
		r["consistency_proof"] != "ok" || r["state_file"] != state || r["state_saved"] != true || r["event_ids"] != 7.0 || r["duplicate_event_ids"] != 0.0 {
		t.Fatalf("second run: %v\n%s", err, out)
	}
	// The state names its event-id index, a file beside it holding the
	// 17 entries' ids; the index of the state before was removed.
	indexes := func() []string {
		m, _ := filepath.Glob(state + ".ids*")
		return m
	}
	if st, err := audit.ReadVerifyState(state); err != nil || st.EventIDs == nil || st.EventIDs.Count != 17 || st.EventIDs.Size != 17 ||
		len(indexes()) != 1 || indexes()[0] != st.EventIDs.Path() {
		t.Fatalf("the event-id index after the second run: %+v %v; files %v", st, err, indexes())
	}
	out, err = verify()
	if err != nil || !strings.Contains(out, "incremental: no new entries; the 17 before them were verified by an earlier run") ||
		!strings.Contains(out, "consistency proof from tree size 17 to checkpoint 17: ok") || strings.Contains(out, "no checkpoint is stored") {
		t.Fatalf("third run: %v\n%s", err, out)
	}
	// A state written before the index existed: one full run, which
	// writes both.
	st, _ := audit.ReadVerifyState(state)
	os.Remove(st.EventIDs.Path())
	st.EventIDs = nil
	st.Write(state)
	out, err = verify()
	if err != nil || !strings.Contains(out, "has no event-id index (written by an older mediator): a full verification, once") ||
		!strings.Contains(out, "ok: 17 entries") || !strings.Contains(out, "event ids: 17 checked") {
		t.Fatalf("a state without an index: %v\n%s", err, out)
	}
	if st, err := audit.ReadVerifyState(state); err != nil || st.EventIDs == nil || len(indexes()) != 1 {
		t.Fatalf("the state after a full run for its index: %+v %v", st, err)
	}
	saved, _ := os.ReadFile(state)

	// Another log's state: a configuration error, the state untouched.
	other := filepath.Join(t.TempDir(), "other.json")
	st, _ = audit.ReadVerifyState(state)
	st.Origin = "mediator.example/audit"
	st.Write(other)
	out, err = verify("--state", other)
	if exitOf(err) != 3 || !strings.Contains(out, "origin mediator.test/audit expected, mediator.example/audit found (in the state file)") {
		t.Fatalf("another log's state: %v\n%s", err, out)
	}

	// The stored hash of entries 0–15 rewritten (seq 15 holds it, at
	// level 4): the consistency proof fails, and the state is not moved.
	for _, q := range []string{"ALTER TABLE audit_entries DISABLE TRIGGER ALL",
		"UPDATE audit_entries SET hashes = overlay(hashes placing sha256('x') from 129 for 32) WHERE seq = 15"} {
		if _, err := pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	out, err = verify()
	if exitOf(err) != 1 || !strings.Contains(out, "consistency proof from the tree verified before (size 17") || !strings.Contains(out, "verification FAILED") ||
		!strings.Contains(out, "state: not saved: verification did not pass") {
		t.Fatalf("rewritten below the state: %v\n%s", err, out)
	}
	if now, _ := os.ReadFile(state); string(now) != string(saved) {
		t.Fatal("a failed run changed the state")
	}
	if st, _ := audit.ReadVerifyState(state); len(indexes()) != 1 || indexes()[0] != st.EventIDs.Path() {
		t.Fatalf("a failed run left event-id indexes %v", indexes())
	}
}

// TestFailedVerifyKeepsTheStatesIndex: a run that wrote its event-id
// index and then failed (a witness check, say) removes the file it wrote,
// but not when that file is the state's own (no new ids: the same
// content, the same name), which the state still needs.
func TestFailedVerifyKeepsTheStatesIndex(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state.json")
	index := state + ".ids.0123456789abcdef"
	if err := os.WriteFile(index, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	st := &audit.VerifyState{Version: audit.VerifyStateVersion, Origin: "o", Size: 1, Root: "r", Checkpoint: "c", Witnesses: []string{},
		EventIDs: &audit.IDIndex{File: filepath.Base(index), Size: 1, SHA256: "e3b0"}}
	if err := st.Write(state); err != nil {
		t.Fatal(err)
	}
	read, err := audit.ReadVerifyState(state)
	if err != nil {
		t.Fatal(err)
	}
	failed := &audit.Report{FirstBadSeq: -1, Problems: []string{"a witness check failed"}, EventIDIndex: read.EventIDs}
	if err := saveVerifyState(context.Background(), state, nil, failed, audit.WitnessPolicy{}, logKeys{}, read.EventIDs); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(index); err != nil {
		t.Fatalf("the state's index was removed by a failed run: %v", err)
	}
	// Another file written by the failed run goes.
	other := state + ".ids.fedcba9876543210"
	os.WriteFile(other, nil, 0o600)
	st.EventIDs.File = filepath.Base(other)
	st.Write(filepath.Join(dir, "other.json"))
	written, _ := audit.ReadVerifyState(filepath.Join(dir, "other.json"))
	failed.EventIDIndex = written.EventIDs
	if err := saveVerifyState(context.Background(), state, nil, failed, audit.WitnessPolicy{}, logKeys{}, read.EventIDs); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(other); !os.IsNotExist(err) || func() bool { _, err := os.Stat(index); return err != nil }() {
		t.Fatalf("after a failed run: its own index %v, the state's kept", err)
	}
}

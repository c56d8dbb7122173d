package audit

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/mediatorhq/mediator/tlogpolicy"
)

// TestTlogProofOffline: the log's tlog-proof of an entry, under its
// published checkpoint, verifies offline against a tlog-policy naming the
// log and its witnesses' quorum, and gives back the entry's leaf; every
// change an attacker holding only the file could make fails: a cut or
// altered proof, another leaf, another index, a cosignature stripped
// below the quorum, and a policy for another log. An entry no published
// checkpoint covers yet is ErrNotPublished.
func TestTlogProofOffline(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	key, vkey := newLogKey(t)
	witnesses, down := startWitnesses(t, vkey, "w.test/a", "w.test/b", "w.test/c")
	text := "log " + vkey + "\n" + witnesses + "group all-three 2 A B C\nquorum all-three\n"
	wp, err := ParseWitnessPolicy([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	policy := wp.Rule
	l, closeLog, err := Open(ctx, Config{Pool: f.pool, Origin: testOrigin, Key: key, CheckpointInterval: 50 * time.Millisecond, Witnesses: wp})
	if err != nil {
		t.Fatal(err)
	}
	defer closeLog(ctx)
	if _, err := l.Append(ctx, entries(0, 300, "p")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		// All three cosign in time; the file then carries three.
		if cp, err := l.LatestCheckpoint(ctx); err == nil && cp.Size == 300 && strings.Count(cp.Note, "\n— w.test/") == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no published checkpoint of 300 entries cosigned by all three witnesses")
		}
		time.Sleep(20 * time.Millisecond)
	}
	b, err := l.TlogProof(ctx, 257)
	if err != nil {
		t.Fatal(err)
	}
	v, err := VerifyTlogProof(b, policy)
	stored, _ := l.Entry(ctx, 257)
	if err != nil || v.Index != 257 || v.Size != 300 || v.Origin != testOrigin || len(v.Witnesses) != 3 || !bytes.Equal(v.Leaf, stored.Leaf) {
		t.Fatalf("VerifyTlogProof: %v %+v", err, v)
	}
	if !bytes.HasPrefix(b, []byte("c2sp.org/tlog-proof@v1\nextra ")) || !bytes.Contains(b, []byte("\nindex 257\n")) {
		t.Fatalf("not a tlog-proof:\n%s", b)
	}

	lines := strings.Split(string(b), "\n")
	at := func(prefix string) int {
		for i, l := range lines {
			if strings.HasPrefix(l, prefix) {
				return i
			}
		}
		t.Fatalf("no line %q", prefix)
		return 0
	}
	with := func(i int, line string) []byte {
		c := append([]string{}, lines...)
		if line == "" {
			c = append(c[:i], c[i+1:]...)
		} else {
			c[i] = line
		}
		return []byte(strings.Join(c, "\n"))
	}
	other, _ := l.Entry(ctx, 258)
	otherProof, _ := l.TlogProof(ctx, 258)
	idx := at("index ")
	cosig := len(lines) - 2 // the last cosignature line
	for _, c := range []struct {
		name string
		file []byte
	}{
		{"a cut proof", with(idx+1, "")},
		{"a proof hash changed", with(idx+1, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")},
		{"another leaf", with(at("extra "), "extra "+base64.StdEncoding.EncodeToString(other.Leaf))},
		{"another index", with(idx, "index 256")},
		{"another entry's proof under this leaf", append([]byte(lines[0]+"\n"+lines[1]+"\n"), otherProof[bytes.Index(otherProof, []byte("index ")):]...)},
		{"two cosignatures stripped", []byte(strings.Join(lines[:cosig-1], "\n") + "\n")},
	} {
		if _, err := VerifyTlogProof(c.file, policy); err == nil || !errors.Is(err, ErrTlogProof) {
			t.Errorf("%s: %v, want a failure", c.name, err)
		}
	}
	if _, err := VerifyTlogProof([]byte(strings.Join(lines[:cosig-1], "\n")+"\n"), policy); !errors.Is(err, tlogpolicy.ErrQuorum) {
		t.Errorf("one cosignature of a quorum of 2: %v, want ErrQuorum", err)
	}
	if _, err := VerifyTlogProof([]byte(strings.Join(lines[:cosig], "\n")+"\n"), policy); err != nil {
		t.Errorf("two cosignatures of a quorum of 2: %v", err)
	}
	_, otherLog, _ := note.GenerateKey(rand.Reader, testOrigin)
	elsewhere, err := tlogpolicy.Parse([]byte(strings.Replace(text, vkey, otherLog, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyTlogProof(b, elsewhere); !errors.Is(err, tlogpolicy.ErrNoLog) {
		t.Errorf("a policy for another log: %v", err)
	}

	// Appended, not yet published: the witnesses are down.
	for _, d := range down {
		d.Store(true)
	}
	if _, err := l.Append(ctx, entries(300, 1, "p")); err != nil {
		t.Fatal(err)
	}
	if _, err := l.TlogProof(ctx, 300); !errors.Is(err, ErrNotPublished) || !errors.Is(err, ErrNotFound) {
		t.Errorf("an unpublished entry: %v", err)
	}
	if _, err := l.TlogProof(ctx, 301); !errors.Is(err, ErrNotFound) || errors.Is(err, ErrNotPublished) {
		t.Errorf("no such entry: %v", err)
	}
}

// TestParseTlogProofFormat: the format's rules, line by line.
func TestParseTlogProofFormat(t *testing.T) {
	cp := "example.com/log\n2\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— example.com/log AAAA\n"
	h := "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
	p, err := ParseTlogProof([]byte("c2sp.org/tlog-proof@v1\nindex 0\n" + h + "\n" + cp))
	if err != nil || p.Index != 0 || len(p.Proof) != 1 || p.Extra != nil || string(p.Checkpoint) != cp {
		t.Fatalf("%v %+v", err, p)
	}
	if string(p.Marshal()) != "c2sp.org/tlog-proof@v1\nindex 0\n"+h+"\n"+cp {
		t.Fatalf("Marshal:\n%s", p.Marshal())
	}
	for _, bad := range []string{
		"c2sp.org/tlog-proof@v2\nindex 0\n\n" + cp,
		"c2sp.org/tlog-proof@v1\nindex 01\n\n" + cp,
		"c2sp.org/tlog-proof@v1\nindex -1\n\n" + cp,
		"c2sp.org/tlog-proof@v1\nextra !!\nindex 0\n\n" + cp,
		"c2sp.org/tlog-proof@v1\n" + h + "\n" + cp,
		"c2sp.org/tlog-proof@v1\nindex 0\nAAAA\n\n" + cp,
		"c2sp.org/tlog-proof@v1\nindex 0\n" + h,
	} {
		if _, err := ParseTlogProof([]byte(bad)); !errors.Is(err, ErrTlogProof) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

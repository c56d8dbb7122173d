// Package torchwood_test checks the mediator's C2SP tlog-proof and
// tlog-policy files with filippo.io/torchwood v0.10.0: proofs the
// mediator's audit log serves from a real PostgreSQL, under checkpoints
// its witnesses cosigned over HTTP, verified by a verifier we did not
// write against the very policy file the mediator publishes by.
package torchwood_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/mediatorhq/mediator/audit"
	"github.com/mediatorhq/mediator/test/harness"
	"github.com/mediatorhq/mediator/test/testdb"
	"github.com/mediatorhq/mediator/tlogpolicy"
	"github.com/mediatorhq/mediator/witness"
)

var env *harness.Env

func TestMain(m *testing.M) { harness.MainPostgres(m, &env) }

const origin = "mediator.test/torchwood"

// memStore is a witness.Store in memory.
type memStore struct {
	mu sync.Mutex
	m  map[string]witness.Checkpoint
}

func (s *memStore) Latest(_ context.Context, origin string) (witness.Checkpoint, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.m[origin]
	return c, ok, nil
}

func (s *memStore) Put(_ context.Context, origin string, prev *witness.Checkpoint, next witness.Checkpoint) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.m[origin]
	if ok != (prev != nil) || (ok && c != *prev) {
		return witness.ErrChanged
	}
	s.m[origin] = next
	return nil
}

// TestTorchwoodChecksOurProofsAndPolicy: the mediator's log, with three
// witnesses and the quorum "2 of the custodians and any external", serves
// tlog-proof files that torchwood verifies against the mediator's own
// policy file, byte for byte what torchwood would format from the same
// parts; a cut proof, a swapped leaf and a checkpoint below the policy
// fail in torchwood as in the mediator's own verifier.
func TestTorchwoodChecksOurProofsAndPolicy(t *testing.T) {
	ctx := context.Background()
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	key, err := audit.ParseCheckpointKey(skey, origin)
	if err != nil {
		t.Fatal(err)
	}
	logVerifier, _ := note.NewVerifier(vkey)
	policyText := "# the mediator's witnesses file\nlog " + vkey + " https://mediator.example/v1/audit/tlog/\n\n"
	for i, name := range []string{"custodian.example/a", "custodian.example/b", "external.example/c"} {
		seed := make([]byte, 32)
		rand.Read(seed)
		signer, wvkey, err := witness.NewSigner(name, seed)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(witness.New(signer, &memStore{m: map[string]witness.Checkpoint{}}, witness.Log{Origin: origin, Verifiers: []note.Verifier{logVerifier}}).Handler())
		t.Cleanup(srv.Close)
		policyText += fmt.Sprintf("witness %c %s %s\n", 'A'+i, wvkey, srv.URL)
	}
	policyText += "group custodians 2 A B\ngroup external any C\ngroup both all custodians external\nquorum both\n"

	policy, err := audit.ParseWitnessPolicy([]byte(policyText))
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := torchwood.ParsePolicy([]byte(policyText))
	if err != nil {
		t.Fatalf("torchwood does not parse the mediator's policy: %v\n%s", err, policyText)
	}
	l, closeLog, err := audit.Open(ctx, audit.Config{Pool: testdb.Pool(t, env), Origin: origin, Key: key, Witnesses: policy, CheckpointInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer closeLog(ctx)
	const size = 1000
	batch := make([]audit.Entry, size)
	for i := range batch {
		id := fmt.Sprintf("ev-%d", i)
		batch[i] = audit.Entry{Kind: "message", EventID: id, Submitter: "torchwood", ConversationID: "c", OccurredAt: time.Now(),
			Record: map[string]any{"kind": "message", "event_id": id, "submitter": "torchwood", "conversation_id": "c"}}
	}
	if _, err := l.Append(ctx, batch); err != nil {
		t.Fatal(err)
	}
	var cp audit.Checkpoint
	deadline := time.Now().Add(10 * time.Second)
	for {
		cp, err = l.LatestCheckpoint(ctx)
		if err == nil && cp.Size == size && strings.Count(cp.Note, "\n— ") == 4 {
			break // the log's signature and all three cosignatures
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint of %d entries cosigned by all three: %v", size, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if c, _, err := torchwood.VerifyCheckpoint([]byte(cp.Note), theirs); err != nil || c.N != size || c.Origin != origin {
		t.Fatalf("torchwood.VerifyCheckpoint: %v %+v", err, c)
	}

	rng := mrand.New(mrand.NewPCG(25, 2))
	for range 100 {
		seq := rng.Int64N(size)
		b, err := l.TlogProof(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		extra, err := torchwood.ProofExtraData(b)
		stored, _ := l.Entry(ctx, seq)
		if err != nil || !bytes.Equal(extra, stored.Leaf) {
			t.Fatalf("entry %d: torchwood reads extra data %q, %v; the stored leaf is %q", seq, extra, err, stored.Leaf)
		}
		if err := torchwood.VerifyProof(theirs, tlog.RecordHash(extra), b); err != nil {
			t.Fatalf("entry %d: torchwood.VerifyProof: %v\n%s", seq, err, b)
		}
		ours, err := audit.ParseTlogProof(b)
		if err != nil {
			t.Fatal(err)
		}
		if f := torchwood.FormatProofWithExtraData(ours.Index, ours.Extra, ours.Proof, ours.Checkpoint); !bytes.Equal(f, b) {
			t.Fatalf("entry %d: torchwood formats the same parts otherwise:\n%s\nours:\n%s", seq, f, b)
		}
	}

	// What an attacker holding only the file might try.
	b, _ := l.TlogProof(ctx, 777)
	other, _ := l.Entry(ctx, 778)
	lines := strings.Split(string(b), "\n")
	var cut, belowPolicy []string
	for i, line := range lines {
		if i != 3 { // lines 0–2: header, extra, index; 3 is the proof's first hash
			cut = append(cut, line)
		}
		if !strings.HasPrefix(line, "— external.example/c ") {
			belowPolicy = append(belowPolicy, line)
		}
	}
	for _, c := range []struct {
		name string
		file []byte
		leaf []byte
	}{
		{"a cut proof", []byte(strings.Join(cut, "\n")), []byte(lines[1])},
		{"another entry's leaf", b, other.Leaf},
		{"no external cosignature", []byte(strings.Join(belowPolicy, "\n")), nil},
	} {
		extra, _ := torchwood.ProofExtraData(c.file)
		rh := tlog.RecordHash(extra)
		if c.name == "another entry's leaf" {
			rh = tlog.RecordHash(c.leaf)
		}
		if err := torchwood.VerifyProof(theirs, rh, c.file); err == nil {
			t.Errorf("%s: torchwood accepts it", c.name)
		}
		if c.name != "another entry's leaf" {
			if _, err := audit.VerifyTlogProof(c.file, policy.Rule); err == nil {
				t.Errorf("%s: the mediator's verifier accepts it", c.name)
			}
		}
	}
	if _, err := audit.VerifyTlogProof([]byte(strings.Join(belowPolicy, "\n")), policy.Rule); !errors.Is(err, tlogpolicy.ErrQuorum) {
		t.Errorf("no external cosignature: %v, want the quorum refused", err)
	}
}

// TestTorchwoodParsesWhatWeWrite: a policy tlogpolicy writes (as roster
// witnesses-file --format tlog-policy does) parses in torchwood, and
// both read the same quorum: 2 of 3 accepts two cosignatures, not one.
func TestTorchwoodParsesWhatWeWrite(t *testing.T) {
	skey, vkey, _ := note.GenerateKey(rand.Reader, origin)
	logSigner, _ := note.NewSigner(skey)
	logVerifier, _ := note.NewVerifier(vkey)
	var ws []tlogpolicy.Witness
	var signers []note.Signer
	for _, name := range []string{"custodian.a", "custodian.b", "custodian.c"} {
		seed := make([]byte, 32)
		rand.Read(seed)
		s, wvkey, _ := witness.NewSigner(name, seed)
		v, _ := witness.NewVerifier(wvkey)
		ws = append(ws, tlogpolicy.Witness{Name: name, Key: wvkey, Verifier: v, URL: "https://" + name + ".example/witness"})
		signers = append(signers, s)
	}
	p, err := tlogpolicy.Threshold("custodians", 2, []tlogpolicy.Log{{Key: vkey, Verifier: logVerifier}}, ws)
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := torchwood.ParsePolicy(p.Marshal())
	if err != nil {
		t.Fatalf("torchwood: %v\n%s", err, p.Marshal())
	}
	text := origin + "\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
	signed, err := note.Sign(&note.Note{Text: text}, append([]note.Signer{logSigner}, signers[:2]...)...)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := torchwood.VerifyCheckpoint(signed, theirs); err != nil {
		t.Fatalf("two of three, torchwood: %v", err)
	}
	if _, _, err := p.Check(signed); err != nil {
		t.Fatalf("two of three, ours: %v", err)
	}
	one, _ := note.Sign(&note.Note{Text: text}, logSigner, signers[2])
	if _, _, err := torchwood.VerifyCheckpoint(one, theirs); err == nil {
		t.Fatal("one of three, torchwood accepts it")
	}
	if _, _, err := p.Check(one); !errors.Is(err, tlogpolicy.ErrQuorum) {
		t.Fatalf("one of three, ours: %v", err)
	}
}

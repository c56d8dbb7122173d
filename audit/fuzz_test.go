package audit

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"testing"
	"time"

	"github.com/gowebpki/jcs"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// FuzzOpenCheckpoint feeds arbitrary bytes to the checkpoint parser: it must
// never panic, and must accept only notes signed by the log's key whose body
// is a well-formed checkpoint for the log's origin.
func FuzzOpenCheckpoint(f *testing.F) {
	skey, vkey, err := note.GenerateKey(rand.Reader, testOrigin)
	if err != nil {
		f.Fatal(err)
	}
	signer, _ := note.NewSigner(skey)
	verifier, _ := note.NewVerifier(vkey)
	good, err := SignCheckpoint(testOrigin, 42, tlog.RecordHash([]byte("x")), signer)
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(good))
	f.Add([]byte(testOrigin + "\n42\nAAAA\n\n— " + testOrigin + " AAAA\n"))
	f.Add([]byte(""))
	f.Add([]byte("\n\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		size, _, err := OpenCheckpoint(b, testOrigin, verifier)
		if err != nil {
			return
		}
		if size < 0 {
			t.Fatalf("accepted a negative size")
		}
		// Anything accepted must carry a valid signature by our key.
		if _, err := note.Open(b, note.VerifierList(verifier)); err != nil {
			t.Fatalf("accepted a note that does not verify: %v", err)
		}
	})
}

// FuzzVerifyBundle: arbitrary bundles never panic the offline verifier.
func FuzzVerifyBundle(f *testing.F) {
	_, vkey, _ := note.GenerateKey(rand.Reader, testOrigin)
	verifier, _ := note.NewVerifier(vkey)
	f.Add([]byte(`{"type":"checkpoint","checkpoint":"x"}` + "\n" + `{"type":"entry","seq":0,"leaf":"e30=","inclusion":[]}`))
	f.Add([]byte(`{"type":"header","query":{"after_seq":-1},"checkpoint":"x","count":1,"seqs_sha256":"sha256:00"}` + "\n" + `{"type":"entry","seq":0,"leaf":"e30=","inclusion":[]}` + "\n" + `{"type":"trailer","count":1,"seqs_sha256":"sha256:00"}`))
	f.Add([]byte(`{"type":"entry"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = VerifyBundle(bytes.NewReader(b), verifier)
	})
}

// FuzzLeafCanonical: for any JSON object record, the spliced leaf is exactly
// what an independent RFC 8785 implementation makes of it.
func FuzzLeafCanonical(f *testing.F) {
	f.Add(`{"kind":"message","z":1,"a":"x"}`)
	f.Add(`{}`)
	f.Add(`{"sep":1,"seq0":2,"ingested":3,"ingested_b":4,"é":5,"\u2028":"\ud83d\ude00"}`)
	f.Fuzz(func(t *testing.T, raw string) {
		var rec map[string]any
		if json.Unmarshal([]byte(raw), &rec) != nil || rec == nil {
			return
		}
		leaf, err := EncodeLeaf(rec, 123, time.Unix(1700000000, 123456000))
		if err != nil {
			if _, ok := rec["seq"]; ok {
				return
			}
			if _, ok := rec["ingested_at"]; ok {
				return
			}
			return // e.g. numbers JCS cannot represent
		}
		want, err := jcs.Transform(leaf)
		if err != nil {
			t.Fatalf("leaf is not JSON: %s", leaf)
		}
		if !bytes.Equal(want, leaf) {
			t.Fatalf("not canonical:\nours %s\njcs  %s", leaf, want)
		}
	})
}

// FuzzBundleProofs starts from a genuine evidence bundle (a signed
// checkpoint and entries with inclusion proofs, built in memory with tlog)
// and flips one bit anywhere in it. The offline verifier may accept the
// result only if every entry it accepts carries exactly the original leaf
// for its seq: a proof never vouches for an altered or moved entry.
func FuzzBundleProofs(f *testing.F) {
	skey, vkey, _ := note.GenerateKey(rand.Reader, testOrigin)
	signer, _ := note.NewSigner(skey)
	verifier, _ := note.NewVerifier(vkey)
	const n = 7
	hashes := map[int64]tlog.Hash{}
	reader := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = hashes[x]
		}
		return out, nil
	})
	leaves := make([][]byte, n)
	for i := range int64(n) {
		leaf, err := EncodeLeaf(map[string]any{"kind": "message", "n": i}, i, time.Unix(1700000000, 0))
		if err != nil {
			f.Fatal(err)
		}
		leaves[i] = leaf
		stored, err := tlog.StoredHashes(i, leaf, reader)
		if err != nil {
			f.Fatal(err)
		}
		for j, h := range stored {
			hashes[tlog.StoredHashIndex(0, i)+int64(j)] = h
		}
	}
	root, _ := tlog.TreeHash(n, reader)
	cp, _ := SignCheckpoint(testOrigin, n, root, signer)
	var bundle bytes.Buffer
	enc := json.NewEncoder(&bundle)
	seqs := NewSeqsDigest()
	for i := range int64(n) {
		seqs.Add(i)
	}
	count := seqs.Count()
	enc.Encode(BundleLine{Type: "header", Query: &BundleQuery{AfterSeq: -1}, Checkpoint: cp, Count: &count, SeqsSHA256: seqs.Sum()})
	for i := range int64(n) {
		proof, err := tlog.ProveRecord(n, i, reader)
		if err != nil {
			f.Fatal(err)
		}
		_, rec, _ := ParseLeaf(leaves[i])
		enc.Encode(BundleLine{Type: "entry", Seq: i, Leaf: leaves[i], Record: rec, Inclusion: proof})
	}
	enc.Encode(BundleLine{Type: "trailer", Count: &count, SeqsSHA256: seqs.Sum()})
	good := bundle.Bytes()
	if rep, err := VerifyBundle(bytes.NewReader(good), verifier); err != nil || !rep.OK() || rep.Entries != n {
		f.Fatalf("the genuine bundle does not verify: %v %+v", err, rep)
	}
	f.Add(uint32(0), uint8(0))
	f.Add(uint32(len(good)/2), uint8(3))
	f.Add(uint32(len(good)-10), uint8(7))
	f.Fuzz(func(t *testing.T, pos uint32, bit uint8) {
		b := bytes.Clone(good)
		b[int(pos)%len(b)] ^= 1 << (bit % 8)
		rep, err := VerifyBundle(bytes.NewReader(b), verifier)
		if err != nil || !rep.OK() {
			return
		}
		// Accepted: every entry line must hold its original leaf, and all
		// of them must be there.
		entries := 0
		for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
			var l BundleLine
			if json.Unmarshal(line, &l) != nil || l.Type != "entry" {
				continue
			}
			entries++
			if l.Seq < 0 || l.Seq >= n || !bytes.Equal(l.Leaf, leaves[l.Seq]) {
				t.Fatalf("an altered entry was accepted: seq %d leaf %q", l.Seq, l.Leaf)
			}
		}
		if entries != int(n) {
			t.Fatalf("a bundle of %d entries, not %d, was accepted", entries, n)
		}
	})
}

// FuzzParseTlogProof: ParseTlogProof never panics, and what it accepts,
// written back with Marshal, parses to the same proof.
func FuzzParseTlogProof(f *testing.F) {
	f.Add([]byte("c2sp.org/tlog-proof@v1\nextra AAEC\nindex 3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\nexample.com/log\n4\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— example.com/log AAAA\n"))
	f.Add([]byte("c2sp.org/tlog-proof@v1\nindex 0\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParseTlogProof(b)
		if err != nil {
			return
		}
		q, err := ParseTlogProof(p.Marshal())
		if err != nil || q.Index != p.Index || !bytes.Equal(q.Extra, p.Extra) || len(q.Proof) != len(p.Proof) || !bytes.Equal(q.Checkpoint, p.Checkpoint) {
			t.Fatalf("Marshal of %+v reads back as %+v, %v", p, q, err)
		}
	})
}

package audit

import (
	"bytes"
	"encoding/json"
	"time"

	"crypto/rand"
	"github.com/gowebpki/jcs"
	"testing"

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

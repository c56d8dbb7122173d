package approval

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/mediatorhq/mediator/seal"
)

// FuzzApprovalSignature: only a genuine signature over exactly the four
// fields verifies; malformed keys and signatures never panic; and for ids
// the service accepts (no control characters), distinct fields give
// distinct signed messages, so a signature cannot be reread as another
// approval.
func FuzzApprovalSignature(f *testing.F) {
	f.Add("7c3f8a9e-0000-4000-8000-000000000001", "sha256:"+strings.Repeat("ab", 32), "approve", "lena",
		"7c3f8a9e-0000-4000-8000-000000000001", "sha256:"+strings.Repeat("ab", 32), "deny", "lena", []byte{1, 2, 3})
	f.Add("r1", "d", "approve", "lena", "r1", "d", "approve", "lena\nsam", []byte{})
	f.Add("a\nb", "c", "approve", "x", "a", "b\nc", "approve", "x", make([]byte, 64))
	seed := bytes.Repeat([]byte{7}, ed25519.SeedSize)
	priv := ed25519.NewKeyFromSeed(seed)
	pub := priv.Public().(ed25519.PublicKey)
	f.Fuzz(func(t *testing.T, id1, dg1, dec1, ap1, id2, dg2, dec2, ap2 string, junk []byte) {
		sig := ed25519.Sign(priv, Message(id1, dg1, dec1, ap1))
		if !Verify(pub, id1, dg1, dec1, ap1, sig) {
			t.Fatal("a genuine signature does not verify")
		}
		// Junk as a signature or a key never verifies and never panics.
		if Verify(pub, id1, dg1, dec1, ap1, junk) && !bytes.Equal(junk, sig) {
			t.Fatal("junk verified as a signature")
		}
		_ = Verify(ed25519.PublicKey(junk), id1, dg1, dec1, ap1, sig)
		same := id1 == id2 && dg1 == dg2 && dec1 == dec2 && ap1 == ap2
		valid := func(ss ...string) bool {
			for _, s := range ss {
				if s == "" || strings.ContainsAny(s, "\n\x00") {
					return false
				}
			}
			return true
		}
		if !same && valid(id1, dg1, dec1, ap1, id2, dg2, dec2, ap2) {
			if bytes.Equal(Message(id1, dg1, dec1, ap1), Message(id2, dg2, dec2, ap2)) {
				t.Fatalf("two approvals sign the same message: %q", Message(id1, dg1, dec1, ap1))
			}
			if Verify(pub, id2, dg2, dec2, ap2, sig) {
				t.Fatal("a signature over one approval verified for another")
			}
		}
	})
}

// FuzzCanonicalRequest: whatever a request holds, its canonical form is
// deterministic RFC 8785 JSON (canonicalizing it again changes nothing)
// that reads back to the same fields, and the digest is SHA-256 of it.
func FuzzCanonicalRequest(f *testing.F) {
	f.Add("case-1", "court_order", "W 1", "US", "See the file.", "conv-a", "conv-b", int64(1764000000), int64(3600), uint16(0x647a), []byte{1, 2, 3})
	f.Add("c\u2028", "x", "\"quoted\"", "GB", "line\nbreak \\ and é", "😀", "", int64(-62135596800), int64(0), uint16(0x20), []byte{})
	f.Fuzz(func(t *testing.T, caseID, basis, warrant, juris, why, c1, c2 string, unix, span int64, kem uint16, pub []byte) {
		at := time.Unix(unix%(1<<35), 0).UTC()
		r := Request{ID: "7c3f8a9e-0000-4000-8000-000000000001", Requester: "olga", CreatedAt: at,
			CaseID: caseID, LegalBasis: basis, WarrantRef: warrant, Jurisdiction: juris, Justification: why,
			Scope:     Scope{ConversationIDs: []string{c1, c2}, From: at, To: at.Add(time.Duration(span%(1<<40)) * time.Second)},
			Recipient: seal.PublicKey{KEMID: kem, PublicKey: pub}, ExpiresAt: at.Add(time.Hour)}
		c, err := r.Canonical()
		if err != nil {
			return // strings that are not valid UTF-8 cannot be canonical JSON
		}
		again, err := r.Canonical()
		if err != nil || !bytes.Equal(c, again) {
			t.Fatal("the canonical form is not deterministic")
		}
		v := jsontext.Value(bytes.Clone(c))
		if err := v.Canonicalize(); err != nil || !bytes.Equal(v, c) {
			t.Fatalf("not canonical: %s", c)
		}
		var back canonicalRequest
		if err := json.Unmarshal(c, &back); err != nil {
			t.Fatal(err)
		}
		if back.CaseID != caseID || back.Justification != why || back.Scope.ConversationIDs[1] != c2 || back.Recipient.KEMID != kem {
			t.Fatalf("the canonical form does not read back: %s", c)
		}
		if Digest(c) != Digest(again) || !strings.HasPrefix(Digest(c), "sha256:") {
			t.Fatal("digest")
		}
		// Parse reads back exactly the request, and refuses any other
		// spelling of it.
		parsed, err := Parse(c)
		if err != nil {
			t.Fatalf("Parse of a canonical request: %v\n%s", err, c)
		}
		if re, err := parsed.Canonical(); err != nil || !bytes.Equal(re, c) {
			t.Fatalf("Parse did not read back the same request: %s", re)
		}
		if _, err := Parse(append([]byte(" "), c...)); err == nil {
			t.Fatal("Parse accepted a non-canonical spelling")
		}
	})
}

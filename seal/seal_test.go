package seal

import (
	"bytes"
	"errors"
	"testing"
)

// TestKeysSealAndOpen: for both KEMs a fresh key file reads back, a sealed
// message opens only under its own info and key, and the ciphertext does
// not hold the plaintext.
func TestKeysSealAndOpen(t *testing.T) {
	msg := bytes.Repeat([]byte{0x42}, 32)
	for _, kem := range []uint16{KEMMLKEM768X25519, KEMX25519} {
		file, pub, err := NewKey(kem)
		if err != nil {
			t.Fatal(err)
		}
		priv, err := ParseKey(file)
		if err != nil {
			t.Fatal(err)
		}
		if got := PublicKeyOf(priv); got.Fingerprint() != pub.Fingerprint() || got.KEMID != kem {
			t.Fatalf("kem %#x: the key file does not hold the key pair made", kem)
		}
		ct, err := Seal(pub, []byte("info-a"), msg)
		if err != nil || bytes.Contains(ct, msg) {
			t.Fatalf("kem %#x: seal: %v", kem, err)
		}
		if got, err := Open(priv, []byte("info-a"), ct); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("kem %#x: open: %v", kem, err)
		}
		if _, err := Open(priv, []byte("info-b"), ct); err == nil {
			t.Fatalf("kem %#x: opened under another info", kem)
		}
		otherFile, _, _ := NewKey(kem)
		other, _ := ParseKey(otherFile)
		if _, err := Open(other, []byte("info-a"), ct); err == nil {
			t.Fatalf("kem %#x: opened with another key", kem)
		}
	}
}

func TestPublicKeyValidation(t *testing.T) {
	_, good, _ := NewKey(KEMX25519)
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, k := range map[string]PublicKey{
		"P-256 KEM":     {KEMID: 0x0010, PublicKey: good.PublicKey},
		"unknown KEM":   {KEMID: 0x9999, PublicKey: good.PublicKey},
		"short key":     {KEMID: KEMX25519, PublicKey: good.PublicKey[:10]},
		"wrong-size pq": {KEMID: KEMMLKEM768X25519, PublicKey: good.PublicKey},
	} {
		err := k.Validate()
		if err == nil {
			t.Errorf("%s: accepted", name)
		} else if name == "P-256 KEM" && !errors.Is(err, ErrUnsupportedKEM) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := ParseKey([]byte(`{"type":"mediator-approver-key-v1"}`)); err == nil {
		t.Fatal("an approver key file was read as a recipient key")
	}
	a, b := PublicKey{KEMID: 1, PublicKey: []byte{2}}, PublicKey{KEMID: 2, PublicKey: []byte{2}}
	if a.Fingerprint() == b.Fingerprint() {
		t.Fatal("the fingerprint does not cover the KEM")
	}
}

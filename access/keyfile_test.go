package access

import (
	"bytes"
	"crypto/ed25519"
	"testing"
)

func TestKeyFilesRoundTripAndRefuseEachOther(t *testing.T) {
	af, pub, err := NewApproverKey()
	if err != nil {
		t.Fatal(err)
	}
	priv, err := ParseApproverKey(af)
	if err != nil || !bytes.Equal(priv.Public().(ed25519.PublicKey), pub) {
		t.Fatalf("approver key round trip: %v", err)
	}
	for _, kem := range []uint16{KEMMLKEM768X25519, KEMX25519} {
		rf, rpub, err := NewRecipientKey(kem)
		if err != nil {
			t.Fatal(err)
		}
		rpriv, err := ParseRecipientKey(rf)
		if err != nil || rpriv.KEM().ID() != kem || !bytes.Equal(rpriv.PublicKey().Bytes(), rpub.PublicKey) {
			t.Fatalf("recipient key %#x round trip: %v", kem, err)
		}
		s, err := Seal(rpub, "r", "c", "k", []byte("0123456789abcdef"))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := Open(rpriv, "r", s); err != nil || string(got) != "0123456789abcdef" {
			t.Fatalf("open with the parsed key: %v", err)
		}
		if _, err := ParseApproverKey(rf); err == nil {
			t.Fatal("a recipient key file parsed as an approver key")
		}
	}
	if _, err := ParseRecipientKey(af); err == nil {
		t.Fatal("an approver key file parsed as a recipient key")
	}
	if _, _, err := NewRecipientKey(0x0010); err == nil {
		t.Fatal("a P-256 recipient key was made")
	}
}

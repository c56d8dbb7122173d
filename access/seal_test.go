package access

import (
	"bytes"
	"crypto/hpke"
	"errors"
	"testing"

	"github.com/mediatorhq/mediator/seal"
)

func newRecipient(t *testing.T, kemID uint16) (hpke.PrivateKey, seal.PublicKey) {
	t.Helper()
	kem, err := hpke.NewKEM(kemID)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := kem.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	pub := priv.PublicKey().Bytes()
	return priv, seal.PublicKey{KEMID: kemID, PublicKey: pub}
}

func TestSealOpenBothKEMs(t *testing.T) {
	key := bytes.Repeat([]byte{0x42}, 32)
	for _, kemID := range []uint16{seal.KEMMLKEM768X25519, seal.KEMX25519} {
		priv, pub := newRecipient(t, kemID)
		s, err := Seal(pub, "req-1", "conv-1", "epoch-7", key)
		if err != nil {
			t.Fatalf("kem %#x: %v", kemID, err)
		}
		if s.KEMID != kemID || s.KDFID != 1 || s.AEADID != 2 || bytes.Contains(s.Sealed, key) {
			t.Fatalf("kem %#x: sealed key %+v", kemID, s)
		}
		got, err := Open(priv, "req-1", s)
		if err != nil || !bytes.Equal(got, key) {
			t.Fatalf("kem %#x: open: %v", kemID, err)
		}
		// Bound to request, conversation and key id.
		if _, err := Open(priv, "req-2", s); err == nil {
			t.Fatalf("kem %#x: opened under another request id", kemID)
		}
		moved := s
		moved.ConversationID = "conv-2"
		if _, err := Open(priv, "req-1", moved); err == nil {
			t.Fatalf("kem %#x: opened as another conversation's key", kemID)
		}
	}
}

// TestSealMatchesRFC9180Info: the sealed bytes open with plain crypto/hpke
// and the architecture's exact info string, so any RFC 9180 implementation
// can open them.
func TestSealMatchesRFC9180Info(t *testing.T) {
	priv, pub := newRecipient(t, seal.KEMMLKEM768X25519)
	s, err := Seal(pub, "r", "c", "k", []byte("0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := hpke.Open(priv, hpke.HKDFSHA256(), hpke.AES256GCM(), []byte("mediator-release-v1\nr\nc\nk"), s.Sealed)
	if err != nil || string(got) != "0123456789abcdef" {
		t.Fatalf("open with the documented info: %v", err)
	}
}

func TestRecipientKeyValidation(t *testing.T) {
	_, good := newRecipient(t, seal.KEMX25519)
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, k := range map[string]seal.PublicKey{
		"P-256 KEM":     {KEMID: 0x0010, PublicKey: good.PublicKey},
		"unknown KEM":   {KEMID: 0x9999, PublicKey: good.PublicKey},
		"short key":     {KEMID: seal.KEMX25519, PublicKey: good.PublicKey[:10]},
		"wrong-size pq": {KEMID: seal.KEMMLKEM768X25519, PublicKey: good.PublicKey},
	} {
		if err := k.Validate(); err == nil {
			t.Errorf("%s accepted", name)
		} else if name == "P-256 KEM" && !errors.Is(err, seal.ErrUnsupportedKEM) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := seal.ReleaseInfo("a\nb", "c", "k"); err == nil {
		t.Error("a newline in an id was accepted")
	}
}

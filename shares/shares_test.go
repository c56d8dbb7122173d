package shares

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/shamir"

	"github.com/mediatorhq/mediator/seal"
)

// testSet is a set of n custodians, threshold k, with their private keys.
func testSet(t testing.TB, n, k int) (Set, []hpke.PrivateKey, []ed25519.PrivateKey) {
	t.Helper()
	set := Set{Threshold: k}
	var hpkeKeys []hpke.PrivateKey
	var signKeys []ed25519.PrivateKey
	for i := range n {
		file, pub, err := seal.NewKey(seal.KEMMLKEM768X25519)
		if err != nil {
			t.Fatal(err)
		}
		priv, _ := seal.ParseKey(file)
		spub, spriv, _ := ed25519.GenerateKey(rand.Reader)
		set.Custodians = append(set.Custodians, Custodian{Name: fmt.Sprintf("custodian-%d", i+1), HPKEKey: pub, SigningKey: spub})
		hpkeKeys = append(hpkeKeys, priv)
		signKeys = append(signKeys, spriv)
	}
	return set, hpkeKeys, signKeys
}

// TestDepositAndReleaseRoundTrip: a key split and sealed to five
// custodians opens only as each custodian's own share, re-seals to a
// recipient, and any three recover it; two do not.
func TestDepositAndReleaseRoundTrip(t *testing.T) {
	set, privs, _ := testSet(t, 5, 3)
	key := bytes.Repeat([]byte{0xA7}, 32)
	commitment, sealed, err := Split(set, "conv-a", "epoch-1", key)
	if err != nil {
		t.Fatal(err)
	}
	if commitment != Commitment("conv-a", "epoch-1", key) || len(sealed) != 5 {
		t.Fatalf("split: %s %d", commitment, len(sealed))
	}
	recipientFile, recipient, _ := seal.NewKey(seal.KEMX25519)
	officer, _ := seal.ParseKey(recipientFile)
	var parts []Part
	for i, s := range sealed {
		if bytes.Contains(s.Sealed, key) || s.Index != i+1 || s.Custodian != set.Custodians[i].Name {
			t.Fatalf("share %d: %+v", i, s)
		}
		share, err := OpenDeposited(privs[i], "conv-a", "epoch-1", s.Custodian, s.Index, commitment, Binding{}, s.Sealed)
		if err != nil {
			t.Fatalf("custodian %d cannot open its share: %v", i+1, err)
		}
		// The binding: another custodian's key, place, conversation or
		// commitment does not open it.
		other := (i + 1) % 5
		for name, open := range map[string]func() ([]byte, error){
			"other custodian's key": func() ([]byte, error) {
				return OpenDeposited(privs[other], "conv-a", "epoch-1", s.Custodian, s.Index, commitment, Binding{}, s.Sealed)
			},
			"other place": func() ([]byte, error) {
				return OpenDeposited(privs[i], "conv-a", "epoch-1", s.Custodian, other+1, commitment, Binding{}, s.Sealed)
			},
			"other conversation": func() ([]byte, error) {
				return OpenDeposited(privs[i], "conv-b", "epoch-1", s.Custodian, s.Index, commitment, Binding{}, s.Sealed)
			},
			"other commitment": func() ([]byte, error) {
				return OpenDeposited(privs[i], "conv-a", "epoch-1", s.Custodian, s.Index, Commitment("conv-a", "epoch-1", []byte("x")), Binding{}, s.Sealed)
			},
		} {
			if _, err := open(); err == nil {
				t.Fatalf("share %d opened with %s", i+1, name)
			}
		}
		to, err := seal.NewSealer(recipient)
		if err != nil {
			t.Fatal(err)
		}
		released, err := SealReleased(to, "req-1", "conv-a", "epoch-1", s.Custodian, s.Index, share)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := OpenReleased(officer, "req-2", "conv-a", "epoch-1", s.Custodian, s.Index, released); err == nil {
			t.Fatal("a released share opened under another request")
		}
		opened, err := OpenReleased(officer, "req-1", "conv-a", "epoch-1", s.Custodian, s.Index, released)
		if err != nil || !bytes.Equal(opened, share) {
			t.Fatalf("released share %d: %v", i+1, err)
		}
		parts = append(parts, Part{Custodian: s.Custodian, Share: opened})
	}
	got, bad, err := Recover("conv-a", "epoch-1", commitment, 3, parts[2:])
	if err != nil || !bytes.Equal(got, key) || bad != nil {
		t.Fatalf("three shares: %v %v", bad, err)
	}
	if _, _, err := Recover("conv-a", "epoch-1", commitment, 3, parts[:2]); err == nil {
		t.Fatal("two shares recovered a threshold-3 key")
	}
}

// TestRecoverNamesTheBadShare: with one corrupt share among five, the key
// is recovered from the others and the corrupt share's custodian named,
// whichever place it holds; with too few good shares nothing is recovered.
func TestRecoverNamesTheBadShare(t *testing.T) {
	set, privs, _ := testSet(t, 5, 3)
	key := bytes.Repeat([]byte{0x11}, 32)
	commitment, sealed, _ := Split(set, "c", "k", key)
	parts := make([]Part, 5)
	for i, s := range sealed {
		share, _ := OpenDeposited(privs[i], "c", "k", s.Custodian, s.Index, commitment, Binding{}, s.Sealed)
		parts[i] = Part{Custodian: s.Custodian, Share: share}
	}
	for corrupt := range 5 {
		ps := slices.Clone(parts)
		ps[corrupt] = Part{Custodian: parts[corrupt].Custodian, Share: bytes.Clone(parts[corrupt].Share)}
		ps[corrupt].Share[0] ^= 0xFF
		got, bad, err := Recover("c", "k", commitment, 3, ps)
		if err != nil || !bytes.Equal(got, key) || !slices.Equal(bad, []string{parts[corrupt].Custodian}) {
			t.Fatalf("corrupt share %d: bad=%v err=%v", corrupt, bad, err)
		}
	}
	ps := slices.Clone(parts[:3])
	ps[0] = Part{Custodian: "custodian-1", Share: bytes.Repeat([]byte{1}, 33)}
	if _, _, err := Recover("c", "k", commitment, 3, ps); !errors.Is(err, ErrNoValidSubset) {
		t.Fatalf("three shares, one bad: %v", err)
	}
}

// TestRecoverSearchIsBounded: with 26 bad shares among 30, threshold 4,
// the one good subset comes last of C(30, 4) = 27,405; Recover gives up
// after MaxSubsets tries rather than combine them all. With the good
// shares first it recovers the key at once and names every bad one.
func TestRecoverSearchIsBounded(t *testing.T) {
	key := bytes.Repeat([]byte{0x22}, 32)
	commitment := Commitment("c", "k", key)
	split, err := shamir.Split(key, 30, 4)
	if err != nil {
		t.Fatal(err)
	}
	parts := make([]Part, 30)
	for i, sh := range split {
		if i < 26 {
			rand.Read(sh[:len(sh)-1]) // off the polynomial, its x coordinate (the last byte) kept
		}
		parts[i] = Part{Custodian: fmt.Sprintf("custodian-%d", i+1), Share: sh}
	}
	start := time.Now()
	if _, _, err := Recover("c", "k", commitment, 4, parts); !errors.Is(err, ErrSearchBound) || !strings.Contains(err.Error(), "4096 subsets of 30 shares") {
		t.Fatalf("26 bad shares first: %v", err)
	}
	t.Logf("%d subsets tried in %v", MaxSubsets, time.Since(start))
	good := append(slices.Clone(parts[26:]), parts[:26]...)
	got, bad, err := Recover("c", "k", commitment, 4, good)
	if err != nil || !bytes.Equal(got, key) || len(bad) != 26 {
		t.Fatalf("good shares first: %d bad, %v", len(bad), err)
	}
}

// TestSetDigest: the digest pins every part of a set.
func TestSetDigest(t *testing.T) {
	set, _, _ := testSet(t, 3, 2)
	d, err := set.Digest()
	if err != nil || set.CheckPinned(d) != nil {
		t.Fatalf("digest %s: %v", d, err)
	}
	_, other, _ := seal.NewKey(seal.KEMMLKEM768X25519)
	changes := map[string]func(*Set){
		"threshold": func(s *Set) { s.Threshold = 3 },
		"order":     func(s *Set) { s.Custodians[0], s.Custodians[1] = s.Custodians[1], s.Custodians[0] },
		"hpke key":  func(s *Set) { s.Custodians[2].HPKEKey = other },
		"name":      func(s *Set) { s.Custodians[1].Name = "mallory" },
		"signing key": func(s *Set) {
			pub, _, _ := ed25519.GenerateKey(rand.Reader)
			s.Custodians[0].SigningKey = pub
		},
	}
	for name, change := range changes {
		s := set
		s.Custodians = slices.Clone(set.Custodians)
		change(&s)
		if err := s.CheckPinned(d); !errors.Is(err, ErrSetMismatch) {
			t.Errorf("%s changed: %v", name, err)
		}
	}
	bad := set
	bad.Threshold = 1
	if bad.Validate() == nil {
		t.Error("threshold 1 accepted")
	}
}

// TestReceipts: a receipt verifies with its custodian's key only, and any
// change to it breaks the signature.
func TestReceipts(t *testing.T) {
	_, _, keys := testSet(t, 2, 2)
	r := Receipt{Kind: ReceiptRelease, Custodian: "custodian-1", EscrowID: "e", ConversationID: "c", KeyID: "k", Index: 1,
		Commitment: "sha256:00", SealedSHA256: SealedHash([]byte("x")), At: "2026-11-30T10:00:00.000000Z",
		RequestID: "r", RequestDigest: "sha256:11", RecipientKey: "sha256:22", PolicyRevision: "sha256:33"}
	s, err := Sign(keys[0], r)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(keys[0].Public().(ed25519.PublicKey)); err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(keys[1].Public().(ed25519.PublicKey)); !errors.Is(err, ErrBadReceipt) {
		t.Fatalf("verified with another custodian's key: %v", err)
	}
	s.Receipt.RequestID = "r2"
	if err := s.Verify(keys[0].Public().(ed25519.PublicKey)); !errors.Is(err, ErrBadReceipt) {
		t.Fatalf("an edited receipt verified: %v", err)
	}
	if !ValidID("conv-a") || ValidID("a\nb") || ValidID("") || ValidID(string([]byte{0xff})) {
		t.Fatal("ValidID")
	}
}

// FuzzRecover: whatever shares are offered, Recover never panics, never
// returns a key that does not match the commitment, and never names a
// share it used to recover the key.
func FuzzRecover(f *testing.F) {
	key := bytes.Repeat([]byte{0x5A}, 32)
	commitment := Commitment("c", "k", key)
	f.Add([]byte{1, 2, 3}, []byte{4, 5, 6}, []byte{7, 8, 9}, uint8(3))
	f.Fuzz(func(t *testing.T, a, b, c []byte, k uint8) {
		parts := []Part{{"a", a}, {"b", b}, {"c", c}}
		got, bad, err := Recover("c", "k", commitment, int(k%4), parts)
		if err == nil && !CheckCommitment("c", "k", got, commitment) {
			t.Fatal("recovered a key that does not match the commitment")
		}
		if err != nil && (got != nil || bad != nil) {
			t.Fatal("an error with a key or a verdict")
		}
	})
}

// BenchmarkSplit is a depositor's cost per key: split, five HPKE seals
// (ML-KEM-768+X25519), with the set's keys parsed once (a Splitter), and
// with them parsed per key (Split).
func BenchmarkSplit(b *testing.B) {
	set, _, _ := testSet(b, 5, 3)
	key := bytes.Repeat([]byte{1}, 32)
	b.Run("splitter", func(b *testing.B) {
		sp, err := NewSplitter(set)
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, _, err := sp.Split("c", "k", key); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parse-each-time", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := Split(set, "c", "k", key); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkOpenDeposited is a custodian's cost per share: one HPKE open.
func BenchmarkOpenDeposited(b *testing.B) {
	set, privs, _ := testSet(b, 5, 3)
	commitment, sealed, _ := Split(set, "c", "k", bytes.Repeat([]byte{1}, 32))
	for b.Loop() {
		if _, err := OpenDeposited(privs[0], "c", "k", "custodian-1", 1, commitment, Binding{}, sealed[0].Sealed); err != nil {
			b.Fatal(err)
		}
	}
}

// TestBoundShareOpensOnlyUnderItsBinding: a v2 share opens only under the
// escrow id and deposit time it was sealed with, never as v1, and a v1
// share never as v2: replayed under a new escrow id, the sealed bytes
// open nowhere.
func TestBoundShareOpensOnlyUnderItsBinding(t *testing.T) {
	set, privs, _ := testSet(t, 3, 2)
	key := bytes.Repeat([]byte{0x5C}, 32)
	sp, err := NewSplitter(set)
	if err != nil {
		t.Fatal(err)
	}
	b := Binding{EscrowID: "6f1c1d0e-4a55-4d8e-9a44-2f4f3f0f9a10", DepositedAt: "2026-12-03T10:00:00.000000Z"}
	commitment, sealed, err := sp.SplitBound("conv-a", "k1", b, key)
	if err != nil {
		t.Fatal(err)
	}
	s := sealed[0]
	open := func(b Binding, sealed []byte) error {
		share, err := OpenDeposited(privs[0], "conv-a", "k1", s.Custodian, s.Index, commitment, b, sealed)
		clear(share)
		return err
	}
	if err := open(b, s.Sealed); err != nil {
		t.Fatalf("the bound share does not open under its binding: %v", err)
	}
	for name, other := range map[string]Binding{
		"another escrow id": {EscrowID: "0b8e4f57-7b8c-4f7e-8a43-1d51d3c5e2aa", DepositedAt: b.DepositedAt},
		"another time":      {EscrowID: b.EscrowID, DepositedAt: "2026-12-03T10:00:00.000001Z"},
		"v1":                {},
	} {
		if err := open(other, s.Sealed); err == nil {
			t.Errorf("the bound share opened under %s", name)
		}
	}
	_, v1, err := sp.Split("conv-a", "k1", key)
	if err != nil {
		t.Fatal(err)
	}
	if err := open(Binding{}, v1[0].Sealed); err != nil {
		t.Fatalf("a v1 share does not open: %v", err)
	}
	if err := open(b, v1[0].Sealed); err == nil {
		t.Error("a v1 share opened as v2")
	}
}

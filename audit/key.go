package audit

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// CheckpointKey signs checkpoints. VerifierKey is the note verifier key
// ("name+hash+keydata") that checks its signatures, which the log serves so
// that anyone can verify what it signed. The key's name is the log origin.
type CheckpointKey interface {
	note.Signer
	VerifierKey() string
}

// fileKey is a CheckpointKey held in memory, from a key file.
type fileKey struct {
	note.Signer
	vkey string
}

func (k fileKey) VerifierKey() string { return k.vkey }

// ParseCheckpointKey parses a note signer key ("PRIVATE+KEY+name+hash+data",
// as note.GenerateKey makes) whose name is origin, and derives its verifier
// key. Only Ed25519 keys are accepted.
func ParseCheckpointKey(skey, origin string) (CheckpointKey, error) {
	skey = strings.TrimSpace(skey)
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, errors.New("audit: checkpoint key: not a note signer key")
	}
	if signer.Name() != origin {
		return nil, fmt.Errorf("audit: checkpoint key: its name %q must equal the log origin %q", signer.Name(), origin)
	}
	// note offers no way back from a signer to its verifier, so read the
	// Ed25519 seed: the key data is base64 and may itself contain '+', so
	// cut the fields off the front (a name cannot contain '+').
	rest, _ := strings.CutPrefix(skey, "PRIVATE+KEY+")
	_, rest, _ = strings.Cut(rest, "+")  // name
	_, data, _ := strings.Cut(rest, "+") // hash
	raw, err := base64.StdEncoding.DecodeString(data)
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return nil, errors.New("audit: checkpoint key: only Ed25519 note keys are supported")
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	clear(raw)
	vkey, err := note.NewEd25519VerifierKey(origin, pub)
	if err != nil {
		return nil, fmt.Errorf("audit: checkpoint key: %w", err)
	}
	return fileKey{Signer: signer, vkey: vkey}, nil
}

package roster

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// MessageFormat describes Message for people.
const MessageFormat = `"mediator-roster-signature-v1\n" + roster digest + "\n" + approver id + "\n"`

// Message is exactly what an approver signs to adopt the version with this
// digest (MessageFormat). An approver who is re-keyed signs it twice: with
// the key of the version in force (it counts toward the quorum) and with
// the new key (proof that they hold it).
func Message(digest, approverID string) []byte {
	return []byte("mediator-roster-signature-v1\n" + digest + "\n" + approverID + "\n")
}

// Signature is one approver's signature over Message(digest, ApproverID)
// with the key named by KeyID.
type Signature struct {
	ApproverID string `json:"approver_id"`
	KeyID      string `json:"key_id"`
	Signature  []byte `json:"signature"`
}

// Sign signs the version with this digest as approverID.
func Sign(priv ed25519.PrivateKey, digest, approverID string) Signature {
	pub := priv.Public().(ed25519.PublicKey)
	return Signature{ApproverID: approverID, KeyID: Approver{PublicKey: pub}.KeyID(),
		Signature: ed25519.Sign(priv, Message(digest, approverID))}
}

// Signed is one version as it travels and is stored: its canonical bytes
// and its signatures.
type Signed struct {
	Roster     []byte      `json:"roster"`
	Signatures []Signature `json:"signatures"`
}

// Progress is how far the signatures on a proposed version are from
// adopting it.
type Progress struct {
	// Signers are the approvers of the version in force whose signatures
	// verified, sorted.
	Signers []string
	// Possession are the approvers the proposal adds or re-keys who signed
	// with their new key, sorted.
	Possession []string
	// Missing says, for people, what adoption still needs; empty when
	// the signatures adopt the version.
	Missing []string
}

// Complete reports whether the signatures adopt the version.
func (p Progress) Complete() bool { return len(p.Missing) == 0 }

// Check weighs sigs on next, proposed to follow prev (nil for a genesis):
// next must be valid and link to prev (version one more, previous =
// prev's digest); approvers of prev must have signed it in a number and mix
// of roles that meets prev's rule, each with their key in prev; and every
// approver next adds or re-keys must have signed it with their key in
// next. For a genesis every approver is added. A signature that verifies
// with neither key is an error: it is someone's mistake or an attack, and
// is never stored.
func Check(prev *Roster, next Roster, sigs []Signature) (Progress, error) {
	if err := next.Validate(); err != nil {
		return Progress{}, err
	}
	digest, err := next.Digest()
	if err != nil {
		return Progress{}, err
	}
	if prev == nil {
		if next.Version != 1 {
			return Progress{}, fmt.Errorf("%w: the first version must be version 1, not %d", ErrBroken, next.Version)
		}
	} else {
		prevDigest, err := prev.Digest()
		if err != nil {
			return Progress{}, err
		}
		if next.Version != prev.Version+1 || next.Previous != prevDigest {
			return Progress{}, fmt.Errorf("%w: version %d does not follow version %d (%s)", ErrBroken, next.Version, prev.Version, prevDigest)
		}
	}
	var signers []Approver
	possession := map[string]bool{}
	for _, s := range sigs {
		counted := false
		if prev != nil {
			if a, ok := prev.Member(s.ApproverID); ok && a.KeyID() == s.KeyID {
				if !ed25519.Verify(a.PublicKey, Message(digest, a.ID), s.Signature) {
					return Progress{}, fmt.Errorf("%w: %s's signature does not verify with their key in version %d", ErrBadSignature, a.ID, prev.Version)
				}
				// An officer's signature verifies but never counts.
				if !a.IsOfficer() && !slices.ContainsFunc(signers, func(x Approver) bool { return x.ID == a.ID }) {
					signers = append(signers, a)
				}
				counted = true
			}
		}
		if a, ok := next.Member(s.ApproverID); ok && a.KeyID() == s.KeyID {
			if !ed25519.Verify(a.PublicKey, Message(digest, a.ID), s.Signature) {
				return Progress{}, fmt.Errorf("%w: %s's signature does not verify with their key in version %d", ErrBadSignature, a.ID, next.Version)
			}
			possession[a.ID] = true
			counted = true
		}
		if !counted {
			return Progress{}, fmt.Errorf("%w: %s with key %s is in neither version", ErrBadSignature, s.ApproverID, s.KeyID)
		}
	}
	var p Progress
	for _, a := range signers {
		p.Signers = append(p.Signers, a.ID)
	}
	slices.Sort(p.Signers)
	if prev != nil {
		if ok, missing := prev.Rule.Satisfied(signers); !ok {
			for _, m := range missing {
				p.Missing = append(p.Missing, fmt.Sprintf("signatures of %s of version %d", m, prev.Version))
			}
		}
	}
	for _, a := range next.Approvers {
		if prev != nil {
			if old, ok := prev.Member(a.ID); ok && old.KeyID() == a.KeyID() {
				continue // neither added nor re-keyed
			}
		}
		if possession[a.ID] {
			p.Possession = append(p.Possession, a.ID)
		} else {
			p.Missing = append(p.Missing, fmt.Sprintf("%s's signature with their new key %s (proof of possession)", a.ID, a.KeyID()))
		}
	}
	slices.Sort(p.Possession)
	return p, nil
}

// Errors of a chain.
var (
	// ErrBroken: a version does not follow the one before it, or the
	// chain does not start at the pinned genesis.
	ErrBroken = errors.New("roster: the chain is broken")
	// ErrBadSignature: a signature does not verify, or is by no approver.
	ErrBadSignature = errors.New("roster: a signature does not verify")
	// ErrUnadopted: a version lacks the signatures that adopt it.
	ErrUnadopted = errors.New("roster: a version lacks the signatures that adopt it")
)

// VerifyChain checks chain from the pinned genesis digest: the first
// version's digest is genesis, each version follows the one before and is
// adopted by its signatures (Check). It returns every version, parsed; the
// last is the one in force.
func VerifyChain(genesis string, chain []Signed) ([]Roster, error) {
	if len(chain) == 0 {
		return nil, fmt.Errorf("%w: it is empty", ErrBroken)
	}
	out := make([]Roster, 0, len(chain))
	for i, s := range chain {
		r, err := Parse(s.Roster)
		if err != nil {
			return nil, fmt.Errorf("roster: version %d of the chain: %w", i+1, err)
		}
		if i == 0 && Digest(s.Roster) != genesis {
			return nil, fmt.Errorf("%w: its first version is %s, not the pinned genesis %s", ErrBroken, Digest(s.Roster), genesis)
		}
		var prev *Roster
		if i > 0 {
			prev = &out[i-1]
		}
		p, err := Check(prev, r, s.Signatures)
		if err != nil {
			return nil, err
		}
		if !p.Complete() {
			return nil, fmt.Errorf("%w: version %d lacks %s", ErrUnadopted, r.Version, strings.Join(p.Missing, "; "))
		}
		out = append(out, r)
	}
	return out, nil
}

// Latest verifies chain from genesis and returns the version in force and
// its digest.
func Latest(genesis string, chain []Signed) (Roster, string, error) {
	rs, err := VerifyChain(genesis, chain)
	if err != nil {
		return Roster{}, "", err
	}
	return rs[len(rs)-1], Digest(chain[len(chain)-1].Roster), nil
}

// Extends reports whether chain holds the version seen (its number and
// digest), so that a party that remembers the newest version it verified
// refuses an older chain offered as current.
func Extends(chain []Signed, version uint64, digest string) bool {
	if version == 0 {
		return true
	}
	return version <= uint64(len(chain)) && Digest(chain[version-1].Roster) == digest
}

// CheckinMessageFormat describes CheckinMessage for people.
const CheckinMessageFormat = `"mediator-checkin-v1\n" + approver id + "\n" + time (RFC 3339, UTC, seconds) + "\n"`

// CheckinMessage is exactly what an approver signs to check in: that they
// hold their key and can act, at this time.
func CheckinMessage(approverID string, at time.Time) []byte {
	return []byte("mediator-checkin-v1\n" + approverID + "\n" + at.UTC().Truncate(time.Second).Format(time.RFC3339) + "\n")
}

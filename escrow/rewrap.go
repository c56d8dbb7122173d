package escrow

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
)

// Rewrapper is a Wrapper that can re-encrypt a wrapped share under its
// newest key version without exposing it.
type Rewrapper interface {
	Rewrap(ctx context.Context, aad, wrapped []byte) ([]byte, error)
}

// Replacer is a ShareStore that can replace a share (operator rights).
type Replacer interface {
	Replace(ctx context.Context, path string, wrapped []byte) error
}

// RewrapReport says what a rewrap run did.
type RewrapReport struct {
	Rewrapped, Unchanged int
	Failed               map[string]string // "escrow_id/custodian" → why
}

// Rewrap re-wraps the shares of every live escrow held by the custodians
// named in only (all when empty) to their Transit key's newest version,
// after a rotation. The new share's hash is recorded before the share is
// replaced, so a crash between the two leaves a share reconstruction still
// accepts. No plaintext share leaves Vault.
func (s *Service) Rewrap(ctx context.Context, only map[string]bool) (RewrapReport, error) {
	rep := RewrapReport{Failed: map[string]string{}}
	live, err := s.rows.Live(ctx)
	if err != nil {
		return rep, err
	}
	byName := map[string]Custodian{}
	for _, c := range s.custodians {
		byName[c.Name] = c
	}
	for _, rec := range live {
		for i, name := range rec.Custodians {
			c, ok := byName[name]
			if !ok || (len(only) > 0 && !only[name]) {
				continue
			}
			changed, err := s.rewrapOne(ctx, c, rec, i)
			switch {
			case err != nil:
				rep.Failed[rec.EscrowID+"/"+name] = err.Error()
			case changed:
				rep.Rewrapped++
			default:
				rep.Unchanged++
			}
		}
	}
	return rep, nil
}

func (s *Service) rewrapOne(ctx context.Context, c Custodian, rec Receipt, i int) (bool, error) {
	rw, ok1 := c.Wrapper.(Rewrapper)
	rp, ok2 := c.Store.(Replacer)
	if !ok1 || !ok2 {
		return false, fmt.Errorf("custodian %s cannot rewrap", c.Name)
	}
	path := sharePath(rec.EscrowID, c.Name)
	old, err := c.Store.Get(ctx, path)
	if err != nil {
		return false, err
	}
	// Only a share reconstruction would accept is re-wrapped: rewrapping
	// a substituted share would launder it. The check is by hash; the share
	// is never unwrapped here.
	if err := s.shareKnown(ctx, rec, i, old); err != nil {
		return false, err
	}
	fresh, err := rw.Rewrap(ctx, aad(rec.ConversationID, rec.KeyID), old)
	if err != nil {
		return false, err
	}
	// Transit re-encrypts with a fresh nonce every time; the share moved
	// only if the key version ("vault:vN:") changed.
	if bytes.Equal(keyVersion(fresh), keyVersion(old)) {
		return false, nil
	}
	h := sha256.Sum256(fresh)
	if err := s.rows.RecordRewrap(ctx, rec.EscrowID, i, h[:]); err != nil {
		return false, err
	}
	if err := rp.Replace(ctx, path, fresh); err != nil {
		return false, err
	}
	return true, nil
}

// keyVersion returns the "vault:vN:" prefix of a Transit ciphertext.
func keyVersion(ct []byte) []byte {
	first := bytes.IndexByte(ct, ':')
	if first < 0 {
		return nil
	}
	second := bytes.IndexByte(ct[first+1:], ':')
	if second < 0 {
		return nil
	}
	return ct[:first+1+second+1]
}

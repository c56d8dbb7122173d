package escrow

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
)

// Rewrapper is a Wrapper that can move a wrapped share to its newest key
// (a Transit key version, an HSM key label) after a rotation.
type Rewrapper interface {
	// Rewrap returns wrapped re-encrypted under the current key, and false
	// (with no share) when it already is.
	Rewrap(ctx context.Context, aad, wrapped []byte) (fresh []byte, changed bool, err error)
}

// Replacer is a ShareStore that can replace shares in an escrow's entry
// (operator rights), keeping the other custodians' shares.
type Replacer interface {
	Replace(ctx context.Context, id string, shares map[string][]byte) error
}

// RewrapReport says what a rewrap run did.
type RewrapReport struct {
	Rewrapped, Unchanged int
	Failed               map[string]string // "escrow_id/custodian" → why
}

// Rewrap re-wraps the shares of every live escrow held by the custodians
// named in only (all when empty) to their wrapper's current key, after a
// rotation. The new share's hash is recorded before the share is replaced,
// so a crash between the two leaves a share reconstruction still accepts.
// Transit custodians re-wrap inside Vault; no plaintext share leaves it.
func (s *Service) Rewrap(ctx context.Context, only map[string]bool) (RewrapReport, error) {
	rep := RewrapReport{Failed: map[string]string{}}
	live, err := s.rows.Live(ctx)
	if err != nil {
		return rep, err
	}
	for _, rec := range live {
		for i, name := range rec.Custodians {
			c := slices.IndexFunc(s.custodians, func(c Custodian) bool { return c.Name == name })
			if c < 0 || (len(only) > 0 && !only[name]) {
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

// rewrapOne re-wraps share i of rec, held by custodian c.
func (s *Service) rewrapOne(ctx context.Context, c int, rec Receipt, i int) (bool, error) {
	cust := s.custodians[c]
	store := s.stores[s.storeOf[c]]
	rw, ok1 := cust.Wrapper.(Rewrapper)
	rp, ok2 := store.(Replacer)
	if !ok1 || !ok2 {
		return false, fmt.Errorf("custodian %s cannot rewrap", cust.Name)
	}
	entry, err := store.Get(ctx, rec.EscrowID)
	if err != nil {
		return false, err
	}
	old, ok := entry[cust.Name]
	if !ok {
		return false, errors.New("no share in its store")
	}
	// Only a share reconstruction would accept is re-wrapped: rewrapping
	// a substituted share would launder it. The check is by hash, before
	// any unwrapping.
	if err := s.shareKnown(ctx, rec, i, old); err != nil {
		return false, err
	}
	fresh, changed, err := rw.Rewrap(ctx, aad(rec.ConversationID, rec.KeyID), old)
	if err != nil || !changed {
		return false, err
	}
	h := sha256.Sum256(fresh)
	if err := s.rows.RecordRewrap(ctx, rec.EscrowID, i, h[:]); err != nil {
		return false, err
	}
	if err := rp.Replace(ctx, rec.EscrowID, map[string][]byte{cust.Name: fresh}); err != nil {
		return false, err
	}
	return true, nil
}

package escrow

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/shares"
	"github.com/mediatorhq/mediator/wire"
)

// ReleaseAsk is a release as the custodians are asked for it: the request
// exactly as approvers signed it (its canonical bytes) and the approvals
// recorded. Custodians trust neither; they check both.
type ReleaseAsk struct {
	Canonical []byte
	// OfficerSignature is the filing officer's signature over the
	// request's digest; each custodian checks it against the roster.
	OfficerSignature []byte
	Approvals        []wire.EvidenceApproval
	// Roster is the roster chain, from its genesis, that names the
	// approvers; each custodian verifies it from the genesis it pins.
	Roster []roster.Signed
	// Log is, per custodian name, the proof that the request and
	// approvals are in the audit log under a checkpoint that custodian
	// cosigned; a custodian without one gets none.
	Log           map[string]*wire.LogEvidence
	RequestID     string
	RequestDigest string
	RecipientKey  string // fingerprint of the request's recipient key
	// Until, if set, is when to stop asking: no custodian is asked for
	// another chunk after it, and the shares not asked for get the item
	// code deferred (ItemDeferred). A release of many keys then returns
	// in time and goes on in the next call, which asks only for the rest.
	Until time.Time
}

// CustodianAnswer is one custodian's answer to a release: the shares it
// sealed to the recipient, each with its signed receipt, or why it gave
// none.
type CustodianAnswer struct {
	Custodian string
	// Shares holds what it released, keyed by escrow id; a share whose
	// receipt does not match what was asked is dropped and logged.
	Shares map[string]wire.CustodianShare
	// Refusal is set when its own checks refused the release.
	Refusal *RefusedError
	// Err is set when it could not be reached or answered wrongly.
	Err error
	// Items lists what it said of shares it did not release.
	Items map[string]*wire.ItemError
}

// ItemDeferred is the item code of a share not asked for because the
// release's time (ReleaseAsk.Until) ran out first.
const ItemDeferred = "deferred"

// itemTooManyInCall is the item error of a share a custodian did not
// answer because its call asked for more than the custodian answers in
// one call; it is asked for again in the next.
const itemTooManyInCall = "too_many_in_call"

// Release asks every custodian that holds a share of escrows (and whose
// share the caller does not already have: have[escrow][custodian]) to
// check the release and seal its shares to the request's recipient, all
// custodians in parallel. It checks every receipt against the custodian's
// key in the set and against what was asked: the request, its digest, the
// recipient key, the escrow and the custodian's place.
//
// Each custodian is asked in calls of at most the service's release chunk
// (DefaultReleaseChunk) shares, one call after another, and its answers
// merged into one CustodianAnswer: however many keys are in scope, no
// call is larger than a chunk. A custodian that refuses the release, or
// cannot be reached, is asked no further; the shares it gave before are
// in its answer beside its Refusal or Err. Shares a custodian leaves
// unanswered as too many for one call are asked for again, in calls no
// larger than what it did answer. It makes ⌈n/chunk⌉ calls to a custodian
// holding n of the shares asked for, when each is answered in full.
func (s *Service) Release(ctx context.Context, ask ReleaseAsk, escrows []Escrow, have map[string]map[string]bool) []CustodianAnswer {
	out := make([]CustodianAnswer, len(s.remotes))
	var wg sync.WaitGroup
	for i, r := range s.remotes {
		out[i] = CustodianAnswer{Custodian: r.Name, Shares: map[string]wire.CustodianShare{}, Items: map[string]*wire.ItemError{}}
		var refs []wire.ShareRef
		byID := map[string]Escrow{}
		for _, e := range escrows {
			loc := locatorOf(e, r.Name)
			if loc == "" || have[e.EscrowID][r.Name] {
				continue
			}
			refs = append(refs, wire.ShareRef{EscrowID: e.EscrowID, Locator: loc})
			byID[e.EscrowID] = e
		}
		if len(refs) == 0 {
			continue
		}
		wg.Go(func() { s.releaseFrom(ctx, i, ask, refs, byID, &out[i]) })
	}
	wg.Wait()
	return out
}

// releaseFrom asks custodian i for the shares refs name, in chunks, one
// call after another, and merges each answer into out (see Release).
func (s *Service) releaseFrom(ctx context.Context, i int, ask ReleaseAsk, refs []wire.ShareRef, byID map[string]Escrow, out *CustodianAnswer) {
	r := s.remotes[i]
	size := s.chunk
	for asked := false; len(refs) > 0; asked = true {
		if asked && !ask.Until.IsZero() && !time.Now().Before(ask.Until) {
			for _, ref := range refs {
				out.Items[ref.EscrowID] = &wire.ItemError{Code: ItemDeferred, Message: "not asked for yet: the release's time ran out; ask again"}
			}
			return
		}
		chunk := refs[:min(size, len(refs))]
		t0 := time.Now()
		ans, err := r.Release(ctx, wire.ReleaseEvidence{Canonical: ask.Canonical, OfficerSignature: ask.OfficerSignature, Approvals: ask.Approvals,
			Roster: ask.Roster, Log: ask.Log[r.Name], Shares: chunk})
		s.metrics.custodian(r.Name, "release", err, time.Since(t0))
		var refused *RefusedError
		if errors.As(err, &refused) {
			out.Refusal = refused
			return
		}
		if err != nil {
			out.Err = err
			return
		}
		var again []wire.ShareRef
		for j, sh := range ans.Shares {
			e, asked := byID[sh.EscrowID]
			switch {
			case !asked || sh.EscrowID != chunk[j].EscrowID:
				// Remote.Release checked one answer per share; one out of
				// place is not counted.
			case sh.Error != nil && sh.Error.Code == itemTooManyInCall:
				again = append(again, chunk[j])
			case sh.Error != nil:
				out.Items[sh.EscrowID] = sh.Error
			case s.checkReleaseReceipt(sh, i, e, ask) != nil:
				s.log.Error("a custodian's release receipt does not match what was asked; its share is dropped",
					"custodian", r.Name, "escrow_id", sh.EscrowID, "request_id", ask.RequestID)
				out.Items[sh.EscrowID] = &wire.ItemError{Code: "bad_receipt", Message: "the receipt does not match what was asked"}
			default:
				out.Shares[sh.EscrowID] = sh
			}
		}
		answered := len(chunk) - len(again)
		if answered == 0 {
			// It answered none of them: asking again would not end.
			for _, ref := range again {
				out.Items[ref.EscrowID] = &wire.ItemError{Code: itemTooManyInCall, Message: "the custodian answered none of the shares of a call"}
			}
			return
		}
		if len(again) > 0 {
			size = answered
		}
		refs = append(again, refs[len(chunk):]...)
	}
}

// checkReleaseReceipt checks that custodian i signed a release receipt for
// exactly this share of this request, sealed to this recipient. It does
// not check when the receipt was signed, nor under which policy revision
// or roster: a custodian asked again for a share whose answer was lost
// answers with the receipt it signed then.
func (s *Service) checkReleaseReceipt(sh wire.CustodianShare, i int, e Escrow, ask ReleaseAsk) error {
	c := s.set.Custodians[i]
	if sh.Receipt == nil {
		return errors.New("no receipt")
	}
	if err := sh.Receipt.Verify(c.SigningKey); err != nil {
		return err
	}
	r := sh.Receipt.Receipt
	if r.Kind != shares.ReceiptRelease || r.Custodian != c.Name || r.EscrowID != e.EscrowID || r.Index != sh.Index ||
		r.ConversationID != e.ConversationID || r.KeyID != e.KeyID || r.Commitment != e.KeyCommitment ||
		r.RequestID != ask.RequestID || r.RequestDigest != ask.RequestDigest || r.RecipientKey != ask.RecipientKey ||
		r.SealedSHA256 != shares.SealedHash(sh.Sealed) {
		return errors.New("receipt mismatch")
	}
	return nil
}

package custodian

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"sync"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/seal"
	"github.com/mediatorhq/mediator/shares"
	"github.com/mediatorhq/mediator/wire"
)

// The item errors of a release, each written by more than one phase.
const (
	msgNoSuchShare     = "this custodian holds no such share (never stored, or destroyed)"
	msgStoreDown       = "the custodian's store is unavailable"
	msgAlreadyReleased = "this share was already released for this request"
	msgStoredLater     = "the share was stored after the request was approved, or after its first release"
	msgNotSealed       = "the share could not be sealed to the recipient"
)

// releaseParallelism bounds the Vault calls of one release in flight at
// once: enough to keep the custodian's Vault busy, few enough to leave it
// room.
const releaseParallelism = 16

// releaseRetries bounds how often one release call re-reads a request's
// release records after a concurrent call wrote the number it meant to.
const releaseRetries = 5

// shareAnswers is a release call's answer for each share asked for, in
// the order asked.
type shareAnswers struct {
	refs    []wire.ShareRef
	out     []wire.CustodianShare
	metrics *Metrics
}

func newShareAnswers(refs []wire.ShareRef, m *Metrics) shareAnswers {
	out := make([]wire.CustodianShare, len(refs))
	for i, ref := range refs {
		out[i].EscrowID = ref.EscrowID
	}
	return shareAnswers{refs: refs, out: out, metrics: m}
}

// fail answers share i with an item error, dropping whatever was sealed
// for it, and counts it. Calls for distinct shares may run at once.
func (a shareAnswers) fail(i int, code, msg string) {
	a.out[i] = wire.CustodianShare{EscrowID: a.refs[i].EscrowID, Error: &wire.ItemError{Code: code, Message: msg}}
	a.metrics.shareReleased(code)
}

// pendingShare is a share asked for that passed this custodian's checks
// of its own records, on its way out.
type pendingShare struct {
	i      int       // its place in the call's refs and answer
	rec    record    // this custodian's record of it
	stored time.Time // rec.StoredAt
	// ready: sealed to the recipient, with a signed receipt, in the
	// answer. A phase that fails it sets it false and answers an error.
	ready bool
}

// releaseShares gives out each share asked for that passes this
// custodian's own records, re-sealed to the request's recipient, at most
// once per request: a share an earlier call released for this request is
// answered again with that call's kept answer, the same sealed bytes and
// signed receipt, and never sealed anew. A share that fails gets an item
// error (counted) and the others go on. When it returns, each share
// answered without error is in a write-once release record of this
// request, with its answer kept beside it, and, if still within its abort
// window, in a fresh record; a share that could not be recorded is
// answered with an error instead.
func (c *Custodian) releaseShares(ctx context.Context, cr checkedRequest, refs []wire.ShareRef) []wire.CustodianShare {
	ans := newShareAnswers(refs, c.metrics)
	ids := make([]string, len(refs))
	for i, r := range refs {
		ids[i] = r.EscrowID
	}
	prior, err := c.store.released(ctx, cr.req.ID, ids)
	if err != nil {
		c.log.Error("release records unreadable", "custodian", c.cfg.Name, "request_id", cr.req.ID, "err", err)
		for i := range refs {
			ans.fail(i, codeUnavailable, msgStoreDown)
		}
		return ans.out
	}
	pending, again := checkShares(cr.req, refs, c.readEntries(ctx, refs), prior.shares, releaseCutoff(cr, prior), ans)
	c.answerAgain(ctx, c.store, cr, prior.shares, again, ans)
	if len(pending) == 0 {
		return ans.out
	}
	at := c.sealShares(ctx, cr, pending, ans)
	if c.recordFresh(ctx, cr.req.ID, pending, ans) {
		c.recordRelease(ctx, c.store, cr, at, prior.records, pending, ans)
	}
	for _, p := range pending {
		if p.ready {
			c.metrics.shareReleased("released")
		}
	}
	return ans.out
}

// releaseCutoff is the latest time a share not yet released for this
// request may have been stored: when its last counted approval was made,
// or, if earlier, when this custodian first recorded a release of it. A
// request approved for what existed then cannot release an escrow stored
// since, however long it stays open.
func releaseCutoff(cr checkedRequest, prior releases) time.Time {
	cutoff := cr.approvedBy
	if prior.records > 0 && prior.first.Before(cutoff) {
		cutoff = prior.first
	}
	return cutoff
}

// entryRead is one deposit entry read for a release.
type entryRead struct {
	sec *vaultapi.KVSecret
	err error
}

// readEntries reads each deposit entry the refs name once, at most
// releaseParallelism at a time. Every locator of refs has its read.
func (c *Custodian) readEntries(ctx context.Context, refs []wire.ShareRef) map[string]entryRead {
	out := make(map[string]entryRead)
	seen := make(map[string]bool)
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, releaseParallelism)
	for _, ref := range refs {
		if seen[ref.Locator] {
			continue
		}
		seen[ref.Locator] = true
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			sec, err := c.store.entry(ctx, ref.Locator)
			mu.Lock()
			out[ref.Locator] = entryRead{sec: sec, err: err}
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// checkShares checks each share asked for against this custodian's own
// record of it, in entries (each ref's deposit entry, read), and returns
// those that pass, in the order asked: pending, to be sealed, and again,
// those in already (released for this request before), to be answered
// with what was given then. A share passes only if it is in the
// custodian's records (not_found otherwise, or if its record is
// unreadable), of a conversation in the request's scope and stored within
// its window (not_in_scope), and not asked for earlier in this call
// (already_released); and a share not released before must have been
// stored no later than cutoff (not_in_scope), so that a request releases
// what existed when it was approved, never an escrow stored since. Each
// share that fails is answered in ans; nothing is written.
func checkShares(req approval.Request, refs []wire.ShareRef, entries map[string]entryRead, already map[string]releasedShare,
	cutoff time.Time, ans shareAnswers) (pending, again []pendingShare) {
	seen := map[string]bool{}
	for i, ref := range refs {
		e := entries[ref.Locator]
		if !validUUID(ref.EscrowID) || errors.Is(e.err, errNoRecord) {
			ans.fail(i, codeNotFound, msgNoSuchShare)
			continue
		}
		if e.err != nil {
			ans.fail(i, codeUnavailable, msgStoreDown)
			continue
		}
		rec, err := recordIn(e.sec, ref.EscrowID)
		if errors.Is(err, errNoRecord) {
			ans.fail(i, codeNotFound, msgNoSuchShare)
			continue
		}
		stored, perr := time.Parse(shares.TimeLayout, rec.StoredAt)
		switch {
		case err != nil || perr != nil:
			ans.fail(i, codeNotFound, "the share's record is unreadable")
			continue
		case !slices.Contains(req.Scope.ConversationIDs, rec.ConversationID):
			ans.fail(i, codeNotInScope, "the share's conversation is not in the request's scope")
			continue
		case stored.Before(req.Scope.From) || stored.After(req.Scope.To):
			ans.fail(i, codeNotInScope, "the share was stored outside the request's window")
			continue
		case seen[ref.EscrowID]:
			ans.fail(i, codeAlreadyReleased, msgAlreadyReleased)
			continue
		}
		seen[ref.EscrowID] = true
		p := pendingShare{i: i, rec: rec, stored: stored}
		if _, ok := already[ref.EscrowID]; ok {
			again = append(again, p)
			continue
		}
		if stored.After(cutoff) {
			ans.fail(i, codeNotInScope, msgStoredLater)
			continue
		}
		pending = append(pending, p)
	}
	return pending, again
}

// answerAgain answers each share of again, released for this request
// before (prior says by which record), with the answer given then, read
// from where its record keeps it: the same sealed bytes and signed
// receipt, nothing sealed or signed anew. The kept answer must be the one
// the record names (its receipt's hash) and name this custodian, the
// share and this request by its digest; a share whose record kept no
// answer (it was written before answers were kept) or was of another
// request under this id, or whose kept answer is missing or differs, is
// answered already_released, and one whose kept entry cannot be read
// unavailable. Each kept entry is read once, at most releaseParallelism
// at a time.
func (c *Custodian) answerAgain(ctx context.Context, ledger releaseLedger, cr checkedRequest, prior map[string]releasedShare,
	again []pendingShare, ans shareAnswers) {
	byEntry := map[string][]pendingShare{}
	for _, p := range again {
		rs := prior[p.rec.EscrowID]
		if rs.kept == "" || rs.digest != cr.digest {
			ans.fail(p.i, codeAlreadyReleased, msgAlreadyReleased)
			continue
		}
		byEntry[rs.kept] = append(byEntry[rs.kept], p)
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, releaseParallelism)
	for name, ps := range byEntry {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			kept, err := ledger.kept(ctx, cr.req.ID, name)
			if err != nil && !errors.Is(err, errNoRecord) {
				c.log.Error("kept release answers unreadable", "custodian", c.cfg.Name, "request_id", cr.req.ID, "err", err)
			}
			for _, p := range ps {
				a, ok := kept[p.rec.EscrowID]
				switch {
				case err != nil && !errors.Is(err, errNoRecord):
					ans.fail(p.i, codeUnavailable, msgStoreDown)
				case !ok || !c.keptFor(a, cr, p.rec, prior[p.rec.EscrowID]):
					c.log.Error("a kept release answer is missing or differs from its record", "custodian", c.cfg.Name,
						"request_id", cr.req.ID, "escrow_id", p.rec.EscrowID)
					ans.fail(p.i, codeAlreadyReleased, msgAlreadyReleased)
				default:
					ans.out[p.i] = a
					c.metrics.shareReleased("released_again")
				}
			}
		})
	}
	wg.Wait()
}

// keptFor reports whether a kept answer is the one rs records for share
// rec of request cr, sealed and signed by this custodian.
func (c *Custodian) keptFor(a wire.CustodianShare, cr checkedRequest, rec record, rs releasedShare) bool {
	if a.Error != nil || a.Receipt == nil || a.Receipt.Hash() != rs.receipt {
		return false
	}
	r := a.Receipt.Receipt
	return r.Kind == shares.ReceiptRelease && r.Custodian == c.cfg.Name && r.EscrowID == rec.EscrowID && a.EscrowID == rec.EscrowID &&
		r.Index == rec.Index && a.Index == rec.Index && r.RequestID == cr.req.ID && r.RequestDigest == cr.digest &&
		r.SealedSHA256 == shares.SealedHash(a.Sealed)
}

// sealShares unwraps the pending shares with this custodian's key (one
// call for all) and re-seals each to the request's recipient with a
// signed receipt, at most GOMAXPROCS at a time. When it returns, each
// share that was sealed is in the answer and ready; each that was not is
// answered unavailable; and every plaintext share has been zeroed. It
// returns the time its receipts state.
func (c *Custodian) sealShares(ctx context.Context, cr checkedRequest, pending []pendingShare, ans shareAnswers) string {
	to, err := seal.NewSealer(cr.req.Recipient)
	if err != nil {
		for _, p := range pending {
			ans.fail(p.i, codeUnavailable, msgNotSealed)
		}
		return ""
	}
	aads, wrapped := make([][]byte, len(pending)), make([][]byte, len(pending))
	for j, p := range pending {
		aads[j], wrapped[j] = aad(p.rec.ConversationID, p.rec.KeyID), []byte(p.rec.Wrapped)
	}
	plain, errs := c.wrapper.UnwrapAll(ctx, aads, wrapped)
	at := shares.FormatTime(c.now())
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for j := range pending {
		p := &pending[j]
		if errs[j] != nil {
			clear(plain[j])
			c.log.Error("unwrap failed", "custodian", c.cfg.Name, "escrow_id", p.rec.EscrowID, "err", errs[j])
			ans.fail(p.i, codeUnavailable, "the custodian's key is unavailable")
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			defer clear(plain[j])
			if code, msg := c.sealShare(to, cr, at, p.rec, plain[j], &ans.out[p.i]); code != "" {
				ans.fail(p.i, code, msg)
				return
			}
			p.ready = true
		})
	}
	wg.Wait()
	return at
}

// sealShare re-seals one checked share to the request's recipient and
// signs its receipt, filling in out; it returns an item error's code and
// message if it cannot.
func (c *Custodian) sealShare(to *seal.Sealer, cr checkedRequest, at string, rec record, share []byte, out *wire.CustodianShare) (string, string) {
	sealed, err := shares.SealReleased(to, cr.req.ID, rec.ConversationID, rec.KeyID, c.cfg.Name, rec.Index, share)
	if err != nil {
		return codeUnavailable, msgNotSealed
	}
	r := shares.Receipt{Kind: shares.ReceiptRelease, Custodian: c.cfg.Name, EscrowID: rec.EscrowID,
		ConversationID: rec.ConversationID, KeyID: rec.KeyID, Index: rec.Index, Commitment: rec.Commitment,
		SealedSHA256: shares.SealedHash(sealed), At: at, RequestID: cr.req.ID, RequestDigest: cr.digest,
		RecipientKey: cr.req.Recipient.Fingerprint(), PolicyRevision: cr.rev, RosterDigest: cr.rosterDigest}
	signed, err := shares.Sign(c.id.sign, r)
	if err != nil {
		return codeUnavailable, "the receipt could not be signed"
	}
	out.Index, out.Sealed, out.Receipt = rec.Index, sealed, &signed
	return "", ""
}

// recordFresh writes, once, the ready shares still within their abort
// window as released, so that the coordinator can no longer abort
// (destroy) them. It returns true when they are recorded, or there are
// none. If the record cannot be written it returns false and every ready
// share is answered unavailable instead: a share must not leave while an
// abort could still destroy it unseen.
func (c *Custodian) recordFresh(ctx context.Context, requestID string, pending []pendingShare, ans shareAnswers) bool {
	var fresh []string
	for _, p := range pending {
		if p.ready && c.now().Sub(p.stored) <= c.cfg.AbortWindow.Duration {
			fresh = append(fresh, p.rec.EscrowID)
		}
	}
	if len(fresh) == 0 {
		return true
	}
	if err := c.store.putFresh(ctx, c.now(), requestID, fresh); err != nil {
		c.log.Error("release not recorded", "custodian", c.cfg.Name, "request_id", requestID, "err", err)
		withhold(pending, ans)
		return false
	}
	return true
}

// releaseLedger is what recording a release needs of the store: which of
// some shares were already released for a request and how many release
// records it has; kept entries for a record's answers, written before it and
// dropped if it is not written; a write-once release record n; and the
// answers of a kept entry.
type releaseLedger interface {
	released(ctx context.Context, requestID string, ids []string) (releases, error)
	keep(ctx context.Context, requestID string, answers []wire.CustodianShare) (keptEntries, error)
	drop(ctx context.Context, requestID string, entries keptEntries)
	putRelease(ctx context.Context, requestID string, n int, r releaseRecord) error
	kept(ctx context.Context, requestID, name string) (map[string]wire.CustodianShare, error)
}

// recordRelease keeps the call's ready answers (kept entries, written
// once) and then writes their shares, each with its receipt's hash and
// its kept entry, as one write-once release record of the request,
// numbered after the records read before the shares were checked. The
// record number makes each share's release for the request the only one:
// if a concurrent call wrote that number first, this call's kept entries
// are dropped, the shares the other call gave out are answered with its
// kept answers instead of this call's sealing (answerAgain), and the rest
// retried under the next number, with at most releaseRetries re-reads.
// When it returns, each share still ready is in a record this call wrote,
// its answer kept; any other error answers every ready share unavailable.
func (c *Custodian) recordRelease(ctx context.Context, ledger releaseLedger, cr checkedRequest, at string, records int, pending []pendingShare, ans shareAnswers) {
	for attempt := 0; ; attempt++ {
		rr := releaseRecord{RequestDigest: cr.digest, RecipientKey: cr.req.Recipient.Fingerprint(), At: at, Receipts: map[string]string{}}
		var answers []wire.CustodianShare
		for _, p := range pending {
			if p.ready {
				rr.Receipts[p.rec.EscrowID] = ans.out[p.i].Receipt.Hash()
				answers = append(answers, ans.out[p.i])
			}
		}
		if len(answers) == 0 {
			return
		}
		kept, err := ledger.keep(ctx, cr.req.ID, answers)
		if err == nil {
			rr.Kept = kept
			if err = ledger.putRelease(ctx, cr.req.ID, records+1, rr); err == nil {
				return
			}
			ledger.drop(ctx, cr.req.ID, kept)
		}
		var prior releases
		if errors.Is(err, errExists) && attempt < releaseRetries {
			prior, err = ledger.released(ctx, cr.req.ID, escrowIDs(pending))
			records = prior.records
		}
		if err != nil {
			c.log.Error("release record not written", "custodian", c.cfg.Name, "request_id", cr.req.ID, "err", err)
			withhold(pending, ans)
			return
		}
		c.answerAgain(ctx, ledger, cr, prior.shares, taken(pending, prior.shares), ans)
	}
}

// escrowIDs returns the escrow ids of pending.
func escrowIDs(pending []pendingShare) []string {
	out := make([]string, len(pending))
	for i, p := range pending {
		out[i] = p.rec.EscrowID
	}
	return out
}

// withhold answers every ready share unavailable instead.
func withhold(pending []pendingShare, ans shareAnswers) {
	for j := range pending {
		if p := &pending[j]; p.ready {
			p.ready = false
			ans.fail(p.i, codeUnavailable, msgStoreDown)
		}
	}
}

// taken returns the ready shares that another call released, as prior
// says, and makes them not ready: this call's sealing of them must not
// leave.
func taken(pending []pendingShare, prior map[string]releasedShare) []pendingShare {
	var out []pendingShare
	for j := range pending {
		p := &pending[j]
		if _, ok := prior[p.rec.EscrowID]; ok && p.ready {
			p.ready = false
			out = append(out, *p)
		}
	}
	return out
}

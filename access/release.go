package access

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/escrow"
	"github.com/mediatorhq/mediator/policy"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/shares"
	"github.com/mediatorhq/mediator/wire"
)

// Release is what a release returns: every key in scope with the shares
// custodians sealed to the request's recipient (at least the threshold of
// each), and what custodians that gave nothing said.
type Release struct {
	RequestID  string
	DecisionID string
	AuditSeq   int64
	Keys       []ReleasedKey
	Refusals   []*escrow.RefusedError
	// NextAfter, when set, is the escrow id after which the answer's
	// next page starts: Keys holds at most one page (AnswerPage), in
	// escrow id order.
	NextAfter string
}

// AnswerPage is the most keys one answer carries: a key's sealed shares
// and receipts are about 15.5 KB of JSON, so a page is about 16 MB, and
// a release of 100,000 keys is answered in 100 pages, never one answer
// of 1.5 GB held in the mediator's memory.
const AnswerPage = 1000

// Answer is the release as its officer is answered it: each key with its
// custodians' deposit receipts (the commitment the officer's client
// trusts comes from them) and each share with its custodian's release
// receipt, which the officer's client checks before it counts the share.
func (rel Release) Answer() wire.Release {
	out := wire.Release{RequestID: rel.RequestID, DecisionID: rel.DecisionID, AuditSeq: rel.AuditSeq, NextAfter: rel.NextAfter,
		Keys: make([]wire.ReleasedKey, len(rel.Keys)), Refusals: make([]wire.CustodianRefusal, len(rel.Refusals))}
	for i, k := range rel.Keys {
		e := k.Escrow
		rk := wire.ReleasedKey{EscrowID: e.EscrowID, ConversationID: e.ConversationID, KeyID: e.KeyID,
			KeyCommitment: e.KeyCommitment, Threshold: e.Threshold, Shares: make([]wire.ReleasedShare, len(k.Shares)),
			DepositReceipts: e.Shares}
		if rk.DepositReceipts == nil {
			rk.DepositReceipts = []shares.SignedReceipt{}
		}
		for j, sh := range k.Shares {
			rk.Shares[j] = wire.ReleasedShare{Custodian: sh.Custodian, Index: sh.Index, Sealed: sh.Sealed, Receipt: sh.Receipt}
		}
		out.Keys[i] = rk
	}
	for i, r := range rel.Refusals {
		out.Refusals[i] = wire.CustodianRefusal{Custodian: r.Custodian, Reasons: r.Reasons, PolicyRevision: r.PolicyRevision}
	}
	return out
}

// ReleasedKey is one escrowed key of a release and its released shares.
type ReleasedKey struct {
	Escrow escrow.Escrow
	Shares []ReleasedShare
}

// ReleasedShare is one custodian's share of a key, sealed by that custodian
// to the request's recipient, with its signed release receipt. The mediator
// cannot open it.
type ReleasedShare struct {
	EscrowID  string
	Custodian string
	Index     int
	Sealed    []byte
	Receipt   shares.SignedReceipt
	AuditSeq  int64
	// ReceiptSHA256 is Receipt's hash, when read without the receipt.
	ReceiptSHA256 string
}

// receiptHash is the hash of the share's release receipt.
func (sh ReleasedShare) receiptHash() string {
	if sh.ReceiptSHA256 != "" {
		return sh.ReceiptSHA256
	}
	return sh.Receipt.Hash()
}

// CustodiansError: the custodians did not release enough shares of every
// key in scope. Refusals are the custodians whose own checks refused, with
// their reasons; Unavailable the custodians that could not be reached;
// Short the escrows still below their threshold. The shares that did come
// are kept: a later release call asks only for the rest.
type CustodiansError struct {
	DecisionID  string
	Refusals    []*escrow.RefusedError
	Unavailable []string
	Short       []string
}

func (e *CustodiansError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "access: %d keys lack shares:", len(e.Short))
	if len(e.Unavailable) > 0 {
		fmt.Fprintf(&b, " unavailable: %s;", strings.Join(e.Unavailable, ", "))
	}
	for _, r := range e.Refusals {
		fmt.Fprintf(&b, " %s;", r.Error())
	}
	return b.String()
}

// InProgressError: the release call's time (Config.ReleaseBudget) ran
// out before every custodian was asked for every share; nothing was
// refused or unavailable. What came back is kept: the next call asks only
// for the rest. KeysReady of KeysTotal keys have their threshold.
type InProgressError struct {
	DecisionID string
	KeysTotal  int
	KeysReady  int
}

func (e *InProgressError) Error() string {
	return fmt.Sprintf("access: release in progress: %d of %d keys have their shares; ask again", e.KeysReady, e.KeysTotal)
}

// releaseRecord is the audit record of a completed release: the request as
// signed, the recipient, and for each key which custodians released which
// share, by the hashes of their signed receipts.
type releaseRecord struct {
	Kind          string           `json:"kind"`
	RequestID     string           `json:"request_id"`
	RequestDigest string           `json:"request_digest"`
	DecisionID    string           `json:"decision_id"`
	ReleasedBy    string           `json:"released_by"`
	RecipientKey  string           `json:"recipient_key"`
	Keys          []releasedKeyLog `json:"keys,omitzero"`
	// A release of more than MaxLoggedKeys keys: the SHA-256 of the JSON
	// of the keys list it would have carried, its length, and the seqs
	// of the access.custodian_release entries naming every share.
	KeysSHA256           string  `json:"keys_sha256,omitempty"`
	KeysCount            int     `json:"keys_count,omitempty"`
	CustodianReleaseSeqs []int64 `json:"custodian_release_seqs,omitempty"`
}

type releasedKeyLog struct {
	EscrowID       string             `json:"escrow_id"`
	ConversationID string             `json:"conversation_id"`
	KeyID          string             `json:"key_id"`
	KeyCommitment  string             `json:"key_commitment"`
	Shares         []releasedShareLog `json:"shares"`
}

type releasedShareLog struct {
	Custodian     string `json:"custodian"`
	Index         int    `json:"index"`
	ReceiptSHA256 string `json:"receipt_sha256"`
}

// Release asks the policy whether request requestID's keys may leave, with
// every approval verified again now, and records the decision. Allowed:
// every custodian holding a share in scope is handed the request as signed
// and the approvals, checks them for itself, and seals its shares to the
// request's recipient; the shares that come back are kept (each custodian's
// answer logged), and once every key has its threshold the request becomes
// released. Denied by the policy: a *DeniedError; the fifth denial locks
// the request as denied. Not enough shares: a *CustodiansError. Only the
// requester may ask.
//
// It runs in phases, each of which either completes or stops the release:
// load the request as signed (loadForRelease), decide (decide), find the
// keys in scope and ask their custodians (askCustodians), and record the
// outcome (finishRelease).
func (s *Service) Release(ctx context.Context, caller, requestID string) (Release, error) {
	t0 := s.now()
	rel, err := s.release(ctx, caller, requestID)
	s.metrics.release(err, s.now().Sub(t0))
	return rel, err
}

func (s *Service) release(ctx context.Context, caller, requestID string) (Release, error) {
	// The call's time counts from its start, on the wall clock (not the
	// service's clock, which tests may set): the whole call must answer
	// within the API's write timeout.
	var until time.Time
	if s.budget > 0 {
		until = time.Now().Add(s.budget)
	}
	r, signed, err := s.loadForRelease(ctx, caller, requestID)
	if err != nil {
		return Release{}, err
	}
	d, approvals, err := s.decide(ctx, r)
	if err != nil {
		return Release{}, err
	}
	// What existed when the request was approved: custodians refuse a
	// share stored later, so it is not asked for. (A decision that counted
	// no approval at all is the policy's fault: the custodians judge it.)
	to := signed.Scope.To
	if !d.approvedBy.IsZero() && d.approvedBy.Before(to) {
		to = d.approvedBy
	}
	keys, err := s.escrow.KeysInScope(ctx, signed.Scope.ConversationIDs, signed.Scope.From, to)
	if err != nil {
		return Release{}, fmt.Errorf("%w: keys in scope: %v", ErrUnavailable, err)
	}
	got, err := s.askCustodians(ctx, r, signed, approvals, keys, until)
	if err != nil {
		return Release{}, err
	}
	return s.finishRelease(ctx, caller, r, d.ID, signed.Recipient.Fingerprint(), keys, got)
}

// loadForRelease reads request requestID for a release by caller and
// parses it from its canonical bytes. When it returns, the caller is the
// requester, the request is pending (an expiry found on the way is
// recorded), and signed is exactly what approvers signed: its digest is the
// stored digest and its id the row's. A row whose bytes do not match is
// never released from (ErrUnavailable, logged).
func (s *Service) loadForRelease(ctx context.Context, caller, requestID string) (Request, approval.Request, error) {
	if _, err := uuid.Parse(requestID); err != nil {
		return Request{}, approval.Request{}, ErrNotFound
	}
	r, err := s.requests.Request(ctx, requestID)
	if err != nil {
		return Request{}, approval.Request{}, err
	}
	if caller != r.Requester {
		return Request{}, approval.Request{}, ErrNotRequester
	}
	if err := s.requirePending(ctx, &r); err != nil {
		return Request{}, approval.Request{}, err
	}
	// Work from the request as approvers signed it, never from its columns.
	signed, err := approval.Parse(r.Canonical)
	if r.Corrupt || err != nil || approval.Digest(r.Canonical) != r.Digest || signed.ID != r.ID {
		s.log.Error("a stored request does not match its canonical form; nothing is released", "access_request_id", r.ID)
		return Request{}, approval.Request{}, fmt.Errorf("%w: the stored request does not match what was signed", ErrUnavailable)
	}
	if err := s.checkOfficer(ctx, r); err != nil {
		return Request{}, approval.Request{}, err
	}
	return r, signed, nil
}

// allowed is an allowing release decision, and when the last approval
// that counted was made: the request releases only escrows deposited by
// then, as every custodian checks for itself.
type allowed struct {
	policy.Decision
	approvedBy time.Time
}

// decide asks the Decider about r with every approval verified again now
// (policyInput) and records the decision with its audit entry. It returns
// an allowing decision and the approvals as custodians are handed them;
// otherwise no decision and: ErrUnavailable when the policy could not
// decide (fail closed, nothing recorded), or a *DeniedError, recorded,
// whose Locked says this denial made the request final.
func (s *Service) decide(ctx context.Context, r Request) (allowed, []wire.EvidenceApproval, error) {
	in, approvals, err := s.policyInput(ctx, r)
	if err != nil {
		return allowed{}, nil, err
	}
	t0 := s.now()
	d, err := s.decider.DecideRelease(ctx, in)
	s.metrics.decision(d, err, s.now().Sub(t0))
	if err != nil {
		// Fail closed: no decision, no release.
		s.log.Error("release decision failed", "access_request_id", r.ID, "err", err)
		return allowed{}, nil, fmt.Errorf("%w: policy: %v", ErrUnavailable, err)
	}
	locked, err := s.releases.RecordDecision(ctx, r.ID, d, maxDeniedReleases)
	if err != nil {
		return allowed{}, nil, err
	}
	s.log.Info("release decided", "access_request_id", r.ID, "decision_id", d.ID, "allow", d.Allow,
		"reasons", d.Reasons, "policy_revision", d.PolicyRevision)
	if d.Allow {
		return allowed{Decision: d, approvedBy: in.LastApproval()}, approvals, nil
	}
	status := "denied_by_policy"
	if locked {
		status = string(StatusDenied)
		s.metrics.transition(StatusDenied)
		s.log.Warn("access request locked as denied", "access_request_id", r.ID, "denied_releases", maxDeniedReleases)
	}
	s.notify(ctx, wire.Event{Type: wire.EventDenied, RequestID: r.ID, Status: status})
	return allowed{}, nil, &DeniedError{DecisionID: d.ID, Reasons: d.Reasons, Locked: locked}
}

// custodianShares is what a release holds of each key: whose shares are
// kept from this call and earlier ones, by escrow id, and what the
// custodians that gave nothing said.
type custodianShares struct {
	have        map[string]map[string]bool // escrow id to the custodians whose shares are kept
	refusals    []*escrow.RefusedError
	unavailable []string
	deferred    int  // shares not asked for yet: the call's time ran out
	keptNow     int  // shares this call kept
	late        bool // this call kept shares and ran past its time
}

// AskPage is how many keys a release call reads in full (with their
// deposit receipts) and asks custodians for at a time: five of a
// custodian's release chunks (escrow.DefaultReleaseChunk). A call reads
// only the keys it asks for, never every key in scope.
const AskPage = 5 * escrow.DefaultReleaseChunk

// lacking returns the keys some of whose custodians' shares are not kept,
// and how many shares they lack in all.
func lacking(keys []escrow.ScopeKey, have map[string]map[string]bool) ([]escrow.ScopeKey, int) {
	var out []escrow.ScopeKey
	n := 0
	for _, k := range keys {
		if missing := len(k.Custodians) - len(have[k.EscrowID]); missing > 0 {
			out = append(out, k)
			n += missing
		}
	}
	return out, n
}

// escrowIDs returns the escrow ids of keys.
func escrowIDs(keys []escrow.ScopeKey) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.EscrowID
	}
	return out
}

// askCustodians hands every custodian of the roster in force the request
// as signed, the approvals, the roster chain and, to those that witness
// the log, the log evidence (logEvidence), asking only for shares not
// kept before. Every share that comes back is in the log, with its
// custodian's answer, before anything else happens (keepAnswer). An error
// means a dependency failed; custodians that refuse or cannot be reached
// are reported in the result, not as an error.
//
// It asks a page of keys (AskPage) at a time, reading each page's escrows
// in full only then; once until has passed it asks no further page, and
// the shares of the rest are counted deferred. What a call reads of
// earlier calls is only which custodians' shares are kept.
func (s *Service) askCustodians(ctx context.Context, r Request, signed approval.Request, approvals []wire.EvidenceApproval,
	keys []escrow.ScopeKey, until time.Time) (custodianShares, error) {
	have, err := s.releases.KeptCustodians(ctx, r.ID)
	if err != nil {
		return custodianShares{}, err
	}
	cur, chain, err := s.roster.Roster(ctx)
	if err != nil {
		return custodianShares{}, err
	}
	var names []string
	for _, c := range cur.Custodians {
		names = append(names, c.Name)
	}
	logged, err := s.logEvidence(ctx, r, names)
	if err != nil {
		return custodianShares{}, err
	}
	ask := escrow.ReleaseAsk{Canonical: r.Canonical, OfficerSignature: r.OfficerSignature, Approvals: approvals, Roster: chain, Log: logged, RequestID: r.ID,
		RequestDigest: r.Digest, RecipientKey: signed.Recipient.Fingerprint()}
	ask.Until = until
	got := custodianShares{have: have}
	todo, _ := lacking(keys, have)
	for start := 0; start < len(todo); start += s.askPage {
		if start > 0 && !until.IsZero() && !time.Now().Before(until) {
			_, rest := lacking(todo[start:], have)
			got.deferred += rest
			break
		}
		escrows, err := s.escrow.ByIDs(ctx, escrowIDs(todo[start:min(start+s.askPage, len(todo))]))
		if err != nil {
			return custodianShares{}, fmt.Errorf("%w: keys in scope: %v", ErrUnavailable, err)
		}
		for _, a := range s.escrow.Release(ctx, ask, escrows, have) {
			if err := s.keepAnswer(ctx, r, ask.RecipientKey, a, &got); err != nil {
				return custodianShares{}, err
			}
		}
	}
	// A call that made progress past its time leaves the recording to
	// the next; one that made none (a custodian that refuses or is down)
	// records now, or never would.
	got.late = got.keptNow > 0 && !until.IsZero() && !time.Now().Before(until)
	return got, nil
}

// keepAnswer adds one custodian's answer to got: its refusal, or that it
// was unavailable, or which of its items it refused, and the shares it
// released, which are kept with their access.custodian_release audit
// entry first.
func (s *Service) keepAnswer(ctx context.Context, r Request, recipientKey string, a escrow.CustodianAnswer, got *custodianShares) error {
	switch {
	case a.Refusal != nil:
		got.refusals = append(got.refusals, a.Refusal)
	case a.Err != nil:
		got.unavailable = append(got.unavailable, a.Custodian)
		s.log.Warn("a custodian is unavailable for a release", "access_request_id", r.ID, "custodian", a.Custodian, "err", a.Err)
	case len(a.Items) > 0:
		// Its checks passed, but some shares did not come: its store or
		// key was unavailable, or its own records refused them.
		refused := &escrow.RefusedError{Custodian: a.Custodian}
		down := false
		for _, id := range slices.Sorted(maps.Keys(a.Items)) {
			item := a.Items[id]
			// Unavailable, or left for another call: asked for again by
			// the next release call, not refused.
			if item.Code == "unavailable" || item.Code == "too_many_in_call" {
				down = true
				continue
			}
			// Not asked for yet: the next call asks.
			if item.Code == escrow.ItemDeferred {
				got.deferred++
				continue
			}
			refused.Reasons = append(refused.Reasons, "escrow "+id+": "+item.Message)
		}
		if down {
			got.unavailable = append(got.unavailable, a.Custodian)
		}
		if len(refused.Reasons) > 0 {
			got.refusals = append(got.refusals, refused)
		}
	}
	if len(a.Shares) == 0 {
		return nil
	}
	released := make([]ReleasedShare, 0, len(a.Shares))
	for _, sh := range a.Shares {
		released = append(released, ReleasedShare{EscrowID: sh.EscrowID, Custodian: a.Custodian, Index: sh.Index, Sealed: sh.Sealed, Receipt: *sh.Receipt})
	}
	// What left a custodian is in the log before anything else happens.
	released, err := s.releases.InsertReleaseShares(ctx, r.ID, r.Digest, recipientKey, a.Custodian, released)
	if err != nil {
		return err
	}
	got.keptNow += len(released)
	for _, sh := range released {
		if got.have[sh.EscrowID] == nil {
			got.have[sh.EscrowID] = map[string]bool{}
		}
		got.have[sh.EscrowID][sh.Custodian] = true
	}
	return nil
}

// finishRelease makes r released, with the access.release audit entry
// naming every share by its receipt's hash, once every key in scope has
// its threshold of shares. Otherwise it returns a *CustodiansError and r
// stays pending, its shares kept for the next call; a release that another
// call finished meanwhile is a *FinalError.
func (s *Service) finishRelease(ctx context.Context, caller string, r Request, decisionID, recipientKey string,
	keys []escrow.ScopeKey, got custodianShares) (Release, error) {
	var short []string
	for _, k := range keys {
		if len(got.have[k.EscrowID]) < k.Threshold {
			short = append(short, k.EscrowID)
		}
	}
	if len(short) > 0 && got.deferred > 0 && len(got.refusals) == 0 && len(got.unavailable) == 0 {
		s.log.Info("release in progress", "access_request_id", r.ID, "keys", len(keys), "keys_short", len(short), "shares_deferred", got.deferred)
		return Release{}, &InProgressError{DecisionID: decisionID, KeysTotal: len(keys), KeysReady: len(keys) - len(short)}
	}
	if len(short) > 0 {
		s.log.Warn("release incomplete: keys below their threshold", "access_request_id", r.ID, "keys_short", len(short),
			"custodians_refused", len(got.refusals), "custodians_unavailable", got.unavailable)
		return Release{}, &CustodiansError{DecisionID: decisionID, Refusals: got.refusals, Unavailable: got.unavailable, Short: short}
	}
	if got.late {
		// This call asked custodians until its time ran out: recording
		// the release, which reads a receipt hash per share, is left to
		// the next call, so that this one answers within the API's write
		// timeout.
		s.log.Info("release in progress: every key has its shares; the next call records it", "access_request_id", r.ID, "keys", len(keys))
		return Release{}, &InProgressError{DecisionID: decisionID, KeysTotal: len(keys), KeysReady: len(keys)}
	}
	// Complete: the log names every key as counted (KeysInScope, in
	// escrow id order) and every share by its receipt's hash, read back
	// now (a call that is not the last reads neither).
	hashes, err := s.releases.ReleaseReceiptHashes(ctx, r.ID)
	if err != nil {
		return Release{}, err
	}
	byKey := groupShares(hashes)
	logged := make([]ReleasedKey, 0, len(keys))
	for _, k := range keys {
		e := escrow.Escrow{EscrowID: k.EscrowID, ConversationID: k.ConversationID, KeyID: k.KeyID, KeyCommitment: k.KeyCommitment}
		logged = append(logged, ReleasedKey{Escrow: e, Shares: byKey[k.EscrowID]})
	}
	f, err := s.requests.Finish(ctx, r.ID, Final{Status: StatusReleased, By: caller, DecisionID: decisionID}, KindRelease,
		releaseLog(r, decisionID, caller, recipientKey, logged))
	if err != nil {
		// Another release finished it meanwhile.
		return Release{}, s.finalOr(ctx, r.ID, err)
	}
	s.metrics.transition(StatusReleased)
	s.notify(ctx, wire.Event{Type: wire.EventReleased, RequestID: r.ID, Status: string(StatusReleased)})
	s.log.Info("keys released", "access_request_id", r.ID, "decision_id", decisionID, "keys", len(logged), "audit_seq", f.AuditSeq)
	out := Release{RequestID: r.ID, DecisionID: decisionID, Refusals: got.refusals, AuditSeq: f.AuditSeq}
	if out.Keys, out.NextAfter, err = s.page(ctx, r.ID, escrowIDs(keys), "", s.pageSize); err != nil {
		return Release{}, err
	}
	return out, nil
}

// page returns the keys of ids (escrow ids, each with kept shares) after
// the escrow id after, in escrow id order, at most limit, each read in
// full with its kept shares' sealed bytes, and the escrow id the next page
// starts after ("" when none is left).
func (s *Service) page(ctx context.Context, requestID string, ids []string, after string, limit int) ([]ReleasedKey, string, error) {
	slices.Sort(ids)
	from, found := slices.BinarySearch(ids, after)
	if found {
		from++
	}
	to := min(from+limit, len(ids))
	escrows, err := s.escrow.ByIDs(ctx, ids[from:to])
	if err != nil {
		return nil, "", fmt.Errorf("%w: keys in scope: %v", ErrUnavailable, err)
	}
	kept, err := s.releases.ReleaseSharesOf(ctx, requestID, ids[from:to])
	if err != nil {
		return nil, "", err
	}
	byKey := groupShares(kept)
	slices.SortFunc(escrows, func(a, b escrow.Escrow) int { return strings.Compare(a.EscrowID, b.EscrowID) })
	out := make([]ReleasedKey, 0, len(escrows))
	for _, e := range escrows {
		out = append(out, ReleasedKey{Escrow: e, Shares: byKey[e.EscrowID]})
	}
	next := ""
	if to < len(ids) {
		next = ids[to-1]
	}
	return out, next, nil
}

// MaxLoggedKeys is the most keys an access.release entry lists one by
// one. A release of more names them by KeysSHA256 over the list it would
// have carried, and by the access.custodian_release entries that hold
// every share's receipt hash: one entry of 100,000 keys would be about
// 85 MB, far past what an evidence bundle carries on a line (16 MiB, with
// the leaf and the record both on it).
const MaxLoggedKeys = 2000

// releaseLog is the audit record of a completed release.
func releaseLog(r Request, decisionID, by, recipientKey string, keys []ReleasedKey) releaseRecord {
	rec := releaseRecord{Kind: KindRelease, RequestID: r.ID, RequestDigest: r.Digest, DecisionID: decisionID, ReleasedBy: by,
		RecipientKey: recipientKey, Keys: make([]releasedKeyLog, 0, len(keys))}
	seqs := map[int64]bool{}
	for _, k := range keys {
		kl := releasedKeyLog{EscrowID: k.Escrow.EscrowID, ConversationID: k.Escrow.ConversationID, KeyID: k.Escrow.KeyID,
			KeyCommitment: k.Escrow.KeyCommitment}
		for _, sh := range k.Shares {
			kl.Shares = append(kl.Shares, releasedShareLog{Custodian: sh.Custodian, Index: sh.Index, ReceiptSHA256: sh.receiptHash()})
			seqs[sh.AuditSeq] = true
		}
		rec.Keys = append(rec.Keys, kl)
	}
	if len(rec.Keys) <= MaxLoggedKeys {
		return rec
	}
	list, err := json.Marshal(rec.Keys)
	if err != nil { // plain structs of strings and ints: cannot fail
		panic(err)
	}
	sum := sha256.Sum256(list)
	rec.KeysSHA256, rec.KeysCount, rec.Keys = "sha256:"+hex.EncodeToString(sum[:]), len(rec.Keys), nil
	rec.CustodianReleaseSeqs = slices.Sorted(maps.Keys(seqs))
	return rec
}

// groupShares groups released shares by escrow.
func groupShares(kept []ReleasedShare) map[string][]ReleasedShare {
	out := map[string][]ReleasedShare{}
	for _, sh := range kept {
		out[sh.EscrowID] = append(out[sh.EscrowID], sh)
	}
	return out
}

// Released returns a released request's keys again (its requester only):
// the shares kept from the custodians, for an officer whose answer was
// lost, one page (at most limit keys, up to AnswerPage) of the keys after
// escrow id after ("" for the first page).
func (s *Service) Released(ctx context.Context, caller, requestID, after string, limit int) (Release, error) {
	if limit < 1 || limit > s.pageSize {
		limit = s.pageSize
	}
	if _, err := uuid.Parse(requestID); err != nil {
		return Release{}, ErrNotFound
	}
	r, err := s.requests.Request(ctx, requestID)
	if err != nil {
		return Release{}, err
	}
	if caller != r.Requester {
		return Release{}, ErrNotRequester
	}
	s.settle(&r)
	if r.Status != StatusReleased {
		return Release{}, &FinalError{Status: r.Status}
	}
	signed, err := approval.Parse(r.Canonical)
	if err != nil {
		return Release{}, fmt.Errorf("%w: the stored request does not parse", ErrUnavailable)
	}
	have, err := s.releases.KeptCustodians(ctx, r.ID)
	if err != nil {
		return Release{}, err
	}
	keys, err := s.escrow.KeysInScope(ctx, signed.Scope.ConversationIDs, signed.Scope.From, signed.Scope.To)
	if err != nil {
		return Release{}, fmt.Errorf("%w: keys in scope: %v", ErrUnavailable, err)
	}
	out := Release{RequestID: r.ID, DecisionID: r.Final.DecisionID, AuditSeq: r.Final.AuditSeq}
	var ids []string
	for _, k := range keys {
		if len(have[k.EscrowID]) > 0 {
			ids = append(ids, k.EscrowID)
		}
	}
	if out.Keys, out.NextAfter, err = s.page(ctx, r.ID, ids, after, limit); err != nil {
		return Release{}, err
	}
	return out, nil
}

// policyInput builds the policy's input: the request and every approval,
// each signature verified again now with the key it was made with, and
// whether its approver is still active. It also returns the approvals as
// custodians are handed them, to verify for themselves.
func (s *Service) policyInput(ctx context.Context, r Request) (policy.ReleaseInput, []wire.EvidenceApproval, error) {
	approvals, err := s.approvals.Approvals(ctx, r.ID)
	if err != nil {
		return policy.ReleaseInput{}, nil, err
	}
	in := policy.ReleaseInput{Now: s.now().UTC(), Request: policy.ReleaseRequest{
		ID: r.ID, Requester: r.Requester, CaseID: r.CaseID, LegalBasis: r.LegalBasis, Jurisdiction: r.Jurisdiction,
		Scope:     policy.ReleaseScope{ConversationIDs: r.Scope.ConversationIDs, From: r.Scope.From, To: r.Scope.To},
		CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt,
	}}
	evidence := make([]wire.EvidenceApproval, 0, len(approvals))
	cur, err := s.roster.Current(ctx)
	if err != nil {
		return policy.ReleaseInput{}, nil, err
	}
	for _, a := range approvals {
		// An approval counts only for an approver of the roster in force,
		// with the key it lists now and the roles it gives now: a removed
		// approver's or a rotated key's approvals no longer count.
		var ap roster.Approver
		active := false
		if cur != nil {
			ap, active = cur.Approver(a.ApproverID)
		}
		verified := active && ap.KeyID() == a.KeyID && approval.Verify(ap.PublicKey, r.ID, r.Digest, a.Decision, a.ApproverID, a.Signature)
		if active && !verified {
			s.log.Warn("a recorded approval does not verify with the approver's key in the roster in force; the policy will not count it",
				"access_request_id", r.ID, "approver_id", a.ApproverID)
		}
		roles := ap.Roles
		if roles == nil {
			roles = []string{}
		}
		in.Approvals = append(in.Approvals, policy.ReleaseApproval{ApproverID: a.ApproverID, Roles: roles, Decision: a.Decision,
			ApprovedAt: a.ApprovedAt.UTC(), SignatureVerified: verified, ApproverActive: active})
		evidence = append(evidence, wire.EvidenceApproval{ApproverID: a.ApproverID, Decision: a.Decision, Signature: a.Signature,
			ApprovedAt: a.ApprovedAt.UTC()})
	}
	return in, evidence, nil
}

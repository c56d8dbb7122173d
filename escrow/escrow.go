// Package escrow is the mediator's side of key escrow, and it holds no key
// and no power to open one. A depositor splits a key itself (package
// shares) and seals share i to custodian i; the mediator forwards each
// sealed share to its custodian service, all or nothing, records which
// custodian holds which share (with the custodian's signed receipt), and
// logs the deposit. At release it hands the custodians the evidence they
// check for themselves (package custodian), and collects what they seal to
// the requester. It also coordinates destruction at retention end and
// legal holds, which each custodian enforces on its own records.
package escrow

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/mediatorhq/mediator/invalid"
	"github.com/mediatorhq/mediator/pseudonym"
	"github.com/mediatorhq/mediator/redact"
	"github.com/mediatorhq/mediator/shares"
	"github.com/mediatorhq/mediator/wire"
)

// Errors a caller maps to answers. Input that breaks a rule is an
// *invalid.Error (422).
var (
	// ErrConflict: the key id is escrowed with another key (409).
	ErrConflict = errors.New("escrow: key id already escrowed with a different key")
	// ErrDestroyed: the key id was escrowed and destroyed at retention
	// end; it cannot be deposited again (409 destroyed).
	ErrDestroyed = errors.New("escrow: key id escrowed before and destroyed")
	// ErrSetMismatch: the deposit was sealed for another custodian set
	// (409).
	ErrSetMismatch = errors.New("escrow: the shares were sealed for another custodian set")
	// ErrUnavailable wraps a custodian or database failure; nothing was
	// left behind (503).
	ErrUnavailable = errors.New("escrow: a custodian or the database is unavailable")
	// ErrNotConfigured: this mediator has no custodians (503).
	ErrNotConfigured = errors.New("escrow: no custodians are configured (--custodians)")
	// ErrNotFound: no such escrow.
	ErrNotFound = errors.New("escrow: not found")
)

// Codes of a deposit refused for its shares (422).
const (
	// CodeShareInvalid: a custodian found that its share does not open
	// as its share of the key named; the depositor sealed it wrong (or
	// for another custodian set).
	CodeShareInvalid = "share_invalid"
	// CodeReplayed: a custodian stored the escrow id or the sealed bytes
	// before, or keeps the same deposit under another escrow id: the
	// body was replayed.
	CodeReplayed = "replayed"
	// CodeDestroyedShare: a custodian destroyed this deposit; it never
	// stores it again.
	CodeDestroyedShare = "destroyed"
	// CodeStaleDeposit: a v2 deposit's time is too far from the clock of
	// the mediator or of a custodian.
	CodeStaleDeposit = "stale"
	// CodeRetiredKey: a custodian's share is sealed to an HPKE key of
	// its that the roster replaced more than its grace period ago: the
	// depositor sealed to an old custodian set.
	CodeRetiredKey = "retired_key"
)

// Escrow describes an escrowed key. It holds no key material.
type Escrow struct {
	EscrowID       string
	ConversationID string
	KeyID          string
	Threshold      int
	Custodians     []string
	KeyCommitment  string
	Depositor      string
	CustodianSet   string
	AuditSeq       int64
	CreatedAt      time.Time
	// Shares are the custodians' deposit receipts, in custodian order.
	Shares    []shares.SignedReceipt
	destroyed bool
}

// Service coordinates deposits, releases and destruction with the
// custodians. It is safe for concurrent use.
type Service struct {
	set       shares.Set
	digest    string
	remotes   []*Remote // in set order
	deposits  DepositRows
	lifecycle LifecycleRows
	log       *slog.Logger
	metrics   *Metrics
	chunk     int // share refs per release call to one custodian
	keys      keyLocks
}

// keyLocks serializes the deposits of one (depositor, conversation, key
// id) in this process: a custodian keeps one deposit of a key once, so a
// second deposit of it must find the first's row, not race it to the
// custodians.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	sync.Mutex
	waiters int
}

// lock locks key and returns its unlock.
func (k *keyLocks) lock(key string) func() {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyLock{}
	}
	l := k.m[key]
	if l == nil {
		l = &keyLock{}
		k.m[key] = l
	}
	l.waiters++
	k.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		k.mu.Lock()
		if l.waiters--; l.waiters == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}

// DefaultReleaseChunk is how many shares a release asks one custodian for
// in one call: a tenth of the most a custodian answers in one call (10,000),
// so that an answer (with ML-KEM about 2.5 KB a share, some 2.5 MB) and
// the release record the custodian writes for it (about 115 KB) stay
// small, whatever the number of keys in scope.
const DefaultReleaseChunk = 1000

// Config configures a Service.
type Config struct {
	// Set and Remotes are the custodians, in the same order; empty when
	// escrow is not configured.
	Set     shares.Set
	Remotes []*Remote
	// Deposits keeps the escrows; Lifecycle their destruction and legal
	// holds. Both are usually one *PGRows.
	Deposits  DepositRows
	Lifecycle LifecycleRows
	Log       *slog.Logger
	Metrics   *Metrics // may be nil
	// ReleaseChunk is how many shares a release asks one custodian for
	// in one call; 0 means DefaultReleaseChunk.
	ReleaseChunk int
}

// New returns a Service.
func New(cfg Config) (*Service, error) {
	s := &Service{set: cfg.Set, remotes: cfg.Remotes, deposits: cfg.Deposits, lifecycle: cfg.Lifecycle, log: cfg.Log, metrics: cfg.Metrics,
		chunk: cfg.ReleaseChunk}
	if s.chunk < 0 {
		return nil, errors.New("escrow: ReleaseChunk must not be negative")
	}
	if s.chunk == 0 {
		s.chunk = DefaultReleaseChunk
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if len(cfg.Remotes) == 0 {
		return s, nil
	}
	if err := cfg.Set.Validate(); err != nil {
		return nil, err
	}
	if len(cfg.Remotes) != len(cfg.Set.Custodians) {
		return nil, errors.New("escrow: one remote per custodian of the set")
	}
	for i, r := range cfg.Remotes {
		if r.Name != cfg.Set.Custodians[i].Name {
			return nil, errors.New("escrow: remotes must follow the set's order")
		}
	}
	var err error
	if s.digest, err = cfg.Set.Digest(); err != nil {
		return nil, err
	}
	return s, nil
}

// Set returns the custodian set new deposits are sealed for, and its
// digest (what depositors pin).
func (s *Service) Set() (shares.Set, string, error) {
	if len(s.remotes) == 0 {
		return shares.Set{}, "", ErrNotConfigured
	}
	return s.set, s.digest, nil
}

// DepositRequest is a deposit as a depositor sends it: the key's
// commitment and one sealed share per custodian of the set, never the key.
type DepositRequest struct {
	ConversationID string
	KeyID          string
	Commitment     string
	CustodianSet   string
	Threshold      int
	Shares         []shares.SealedShare
	// Binding is the v2 escrow id and deposit time the shares were
	// sealed under; zero for a v1 deposit, whose escrow id the mediator
	// chooses.
	Binding shares.Binding
	// Depositor is the authenticated caller.
	Depositor string
}

// MaxDepositSkew is how far a v2 deposit's time may be from the
// mediator's clock. Custodians hold it to their own abort window
// (default 10 minutes).
const MaxDepositSkew = 5 * time.Minute

var commitmentPattern = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// maxSealedShare bounds one sealed share: an ML-KEM-768+X25519
// encapsulation (1,120 bytes), a share of a 64-byte key and the tag fit
// well within it.
const maxSealedShare = 4096

// Deposit forwards each sealed share to its custodian and records the
// escrow. It returns the escrow and whether this call created it (false:
// the same commitment was already escrowed under that id). All or nothing:
// if any custodian does not store its share, the shares stored are aborted
// at their custodians, no row remains, and the error wraps ErrUnavailable
// (or is an *invalid.Error when a custodian found its share invalid).
func (s *Service) Deposit(ctx context.Context, req DepositRequest) (Escrow, bool, error) {
	start := time.Now()
	rec, created, err := s.deposit(ctx, req)
	s.metrics.deposit(err, created, time.Since(start))
	return rec, created, err
}

func (s *Service) deposit(ctx context.Context, req DepositRequest) (Escrow, bool, error) {
	if len(s.remotes) == 0 {
		return Escrow{}, false, ErrNotConfigured
	}
	if err := s.validate(req); err != nil {
		return Escrow{}, false, err
	}
	defer s.keys.lock(req.Depositor + "\x00" + req.ConversationID + "\x00" + req.KeyID)()
	if existing, err := s.deposits.ByKeyID(ctx, req.Depositor, req.ConversationID, req.KeyID); err == nil {
		return sameOrConflict(existing, req.Commitment)
	} else if !errors.Is(err, ErrNotFound) {
		return Escrow{}, false, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	id := req.Binding.EscrowID
	if id == "" {
		id = uuid.NewString()
	}
	locators, err := s.forward(ctx, id, req)
	if err != nil {
		return Escrow{}, false, err
	}
	receipts, err := s.commit(ctx, id, req, locators)
	if err != nil {
		return Escrow{}, false, err
	}
	rec := Escrow{EscrowID: id, ConversationID: req.ConversationID, KeyID: req.KeyID, Threshold: s.set.Threshold,
		Custodians: s.names(), KeyCommitment: req.Commitment, Depositor: req.Depositor, CustodianSet: s.digest, Shares: receipts}
	stored, err := s.deposits.Insert(ctx, rec)
	if err != nil && !errors.Is(err, errDuplicateKeyID) {
		// A commit whose answer was lost may still have committed: never
		// abort the shares of an escrow the database records.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		committed, lookErr := s.deposits.ByID(cctx, id)
		cancel()
		if lookErr == nil && committed.Depositor == req.Depositor && committed.ConversationID == req.ConversationID &&
			committed.KeyID == req.KeyID && committed.KeyCommitment == req.Commitment {
			return committed, true, nil
		}
		if lookErr == nil {
			lookErr = ErrNotFound // another escrow's id: this deposit was not committed
		}
		if !errors.Is(lookErr, ErrNotFound) {
			s.log.Error("escrow deposit outcome unknown; keeping the custodians' shares", "escrow_id", id, "err", err, "lookup_err", lookErr)
			return Escrow{}, false, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
	}
	if err != nil {
		s.abort(ctx, id, locators)
		if errors.Is(err, errDuplicateKeyID) {
			// A concurrent deposit of the same key id won the race.
			existing, err := s.deposits.ByKeyID(ctx, req.Depositor, req.ConversationID, req.KeyID)
			if err != nil {
				return Escrow{}, false, fmt.Errorf("%w: %v", ErrUnavailable, err)
			}
			return sameOrConflict(existing, req.Commitment)
		}
		return Escrow{}, false, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return stored, true, nil
}

func sameOrConflict(existing Escrow, commitment string) (Escrow, bool, error) {
	if existing.destroyed {
		return Escrow{}, false, ErrDestroyed
	}
	if subtle.ConstantTimeCompare([]byte(existing.KeyCommitment), []byte(commitment)) == 1 {
		return existing, false, nil
	}
	return Escrow{}, false, ErrConflict
}

// validate checks a deposit against the custodian set.
func (s *Service) validate(req DepositRequest) error {
	switch {
	case !pseudonym.Valid(req.ConversationID):
		return invalid.Coded(redact.CodeNotAPseudonym, "conversation_id", "must be the conversation's pseudonym (ps1_…), computed by the depositor through the pseudonym service")
	case !shares.ValidID(req.KeyID):
		return invalid.Input("key_id", "must be 1–128 printable bytes")
	case !commitmentPattern.MatchString(req.Commitment):
		return invalid.Input("commitment", `must be "sha256:" and 64 lowercase hex digits`)
	case req.CustodianSet != s.digest:
		return ErrSetMismatch
	case req.Threshold != s.set.Threshold:
		return invalid.Input("threshold", fmt.Sprintf("must be the custodian set's threshold, %d", s.set.Threshold))
	case len(req.Shares) != len(s.set.Custodians):
		return invalid.Input("shares", fmt.Sprintf("must hold one sealed share per custodian, %d", len(s.set.Custodians)))
	}
	if err := s.validateBinding(req.Binding); err != nil {
		return err
	}
	for i, sh := range req.Shares {
		if sh.Custodian != s.set.Custodians[i].Name || sh.Index != i+1 {
			return invalid.Input("shares", "must list the custodians in the set's order, share i to custodian i")
		}
		if len(sh.Sealed) == 0 || len(sh.Sealed) > maxSealedShare {
			return invalid.Input("shares", fmt.Sprintf("each sealed share is 1–%d bytes", maxSealedShare))
		}
	}
	return nil
}

// validateBinding checks a v2 deposit's escrow id and time: both or
// neither, a canonical UUID, and a time in the receipts' layout within
// MaxDepositSkew of the mediator's clock.
func (s *Service) validateBinding(b shares.Binding) error {
	switch {
	case b.IsZero():
		return nil
	case b.EscrowID == "" || b.DepositedAt == "":
		return invalid.Input("escrow_id", "escrow_id and deposited_at go together")
	}
	if u, err := uuid.Parse(b.EscrowID); err != nil || u.String() != b.EscrowID {
		return invalid.Input("escrow_id", "must be a UUID in canonical form")
	}
	at, err := time.Parse(shares.TimeLayout, b.DepositedAt)
	if err != nil || shares.FormatTime(at) != b.DepositedAt {
		return invalid.Input("deposited_at", "must be RFC 3339 UTC with microseconds, as 2026-12-03T10:00:00.000000Z")
	}
	if d := time.Since(at); d > MaxDepositSkew || -d > MaxDepositSkew {
		return invalid.Coded(CodeStaleDeposit, "deposited_at", fmt.Sprintf("is more than %s from the mediator's clock", MaxDepositSkew))
	}
	return nil
}

// forward has every custodian store its share, in parallel, and checks
// that each stored the share it was given; it returns where each keeps
// it. On any failure it aborts the shares stored and returns the error.
func (s *Service) forward(ctx context.Context, id string, req DepositRequest) ([]string, error) {
	locators := make([]string, len(s.remotes))
	errs := make([]error, len(s.remotes))
	var wg sync.WaitGroup
	for i, r := range s.remotes {
		wg.Go(func() {
			t0 := time.Now()
			sh := req.Shares[i]
			res, err := r.Store(ctx, wire.ShareToStore{EscrowID: id, ConversationID: req.ConversationID, KeyID: req.KeyID,
				Index: sh.Index, Commitment: req.Commitment, Sealed: sh.Sealed, Depositor: req.Depositor,
				DepositedAt: req.Binding.DepositedAt})
			switch {
			case err != nil:
			case res.Error != nil && refusedShare[res.Error.Code]:
				err = invalid.Coded(res.Error.Code, "shares", "custodian "+r.Name+" refused its share: "+res.Error.Message)
			case res.Error != nil:
				err = itemFailure(r.Name, "store", res.Error)
			case res.Stored == nil || res.Stored.Locator == "" || res.Stored.SealedSHA256 != shares.SealedHash(sh.Sealed):
				err = &UnavailableError{Custodian: r.Name, Err: errors.New("the custodian did not say it stored the share it was given"),
					Reason: "did not say it stored the share it was given"}
			default:
				locators[i] = res.Stored.Locator
			}
			s.metrics.custodian(r.Name, "store", err, time.Since(t0))
			errs[i] = err
		})
	}
	wg.Wait()
	var refused *invalid.Error
	for _, err := range errs {
		if e, ok := invalid.As(err); ok {
			refused = e
			break
		}
	}
	if err := errors.Join(errs...); err != nil {
		s.log.Error("escrow deposit failed; aborting the shares stored", append([]any{"escrow_id", id}, failureAttrs(err)...)...)
		s.abort(ctx, id, locators)
		if refused != nil {
			return nil, refused
		}
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return locators, nil
}

// itemUnavailable is the item code with which a custodian says it could
// not do what it was asked for one share (its key or store is down),
// rather than refusing it.
const itemUnavailable = "unavailable"

// itemFailure is custodian's error for one share it did not store or
// commit (what): it failed to, or refused to, as its code says.
func itemFailure(custodian, what string, e *wire.ItemError) *UnavailableError {
	said := e.Code + ": " + e.Message
	if e.Code == itemUnavailable {
		return &UnavailableError{Custodian: custodian, Err: errors.New(said), Reason: answered("failed to "+what+" its share", said)}
	}
	return &UnavailableError{Custodian: custodian, Err: errors.New(said), Reason: answered("refused to "+what+" its share", said), Refused: true}
}

// failureAttrs are the log attributes of err: the custodians that failed,
// the first by name with its reason, and the error itself.
func failureAttrs(err error) []any {
	failed := FailedCustodians(err)
	if len(failed) == 0 {
		return []any{"err", err}
	}
	names := make([]string, len(failed))
	for i, f := range failed {
		names[i] = f.Custodian
	}
	return []any{"custodian", failed[0].Custodian, "reason", failed[0].Reason, "custodians", names, "err", err}
}

// refusedShare are the item codes with which a custodian refuses a share
// for what the depositor (or whoever replays its bytes) sent: the deposit
// answers 422 with the code, not 503.
var refusedShare = map[string]bool{CodeShareInvalid: true, CodeReplayed: true, CodeDestroyedShare: true, CodeStaleDeposit: true,
	CodeRetiredKey: true}

// commit has every custodian commit its stored share, in parallel, once
// all stored theirs, and checks each signed deposit receipt against the
// custodian's key in the set. A committed share is never aborted, so a
// depositor holding all the receipts knows no one party can undo the
// deposit. On any failure it asks for aborts, which the custodians that
// committed refuse (the shares they keep are orphans, which
// reconciliation reports), and returns the error.
func (s *Service) commit(ctx context.Context, id string, req DepositRequest, locators []string) ([]shares.SignedReceipt, error) {
	receipts := make([]shares.SignedReceipt, len(s.remotes))
	errs := make([]error, len(s.remotes))
	var wg sync.WaitGroup
	for i, r := range s.remotes {
		wg.Go(func() {
			t0 := time.Now()
			res, err := r.Commit(ctx, wire.ShareRef{EscrowID: id, Locator: locators[i]})
			switch {
			case err != nil:
			case res.Error != nil:
				err = itemFailure(r.Name, "commit", res.Error)
			case res.Receipt == nil:
				err = &UnavailableError{Custodian: r.Name, Err: errors.New("no receipt"), Reason: "committed its share without a receipt"}
			default:
				err = s.checkDepositReceipt(*res.Receipt, i, id, req, locators[i])
				receipts[i] = *res.Receipt
			}
			s.metrics.custodian(r.Name, "commit", err, time.Since(t0))
			errs[i] = err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		s.log.Error("escrow deposit failed at commit; aborting the shares not committed", append([]any{"escrow_id", id}, failureAttrs(err)...)...)
		s.abort(ctx, id, locators)
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return receipts, nil
}

// checkDepositReceipt checks that custodian i signed a receipt for exactly
// the share it was given, kept at locator.
func (s *Service) checkDepositReceipt(sr shares.SignedReceipt, i int, id string, req DepositRequest, locator string) error {
	c := s.set.Custodians[i]
	r := sr.Receipt
	if err := sr.Verify(c.SigningKey); err != nil {
		return &UnavailableError{Custodian: c.Name, Err: err, Reason: "signed a deposit receipt that does not verify with its key in the set"}
	}
	if r.Kind != shares.ReceiptDeposit || r.Custodian != c.Name || r.EscrowID != id || r.Index != i+1 ||
		r.ConversationID != req.ConversationID || r.KeyID != req.KeyID || r.Commitment != req.Commitment ||
		r.SealedSHA256 != shares.SealedHash(req.Shares[i].Sealed) || r.Locator != locator {
		return &UnavailableError{Custodian: c.Name, Err: errors.New("the receipt is not for the share it was given"),
			Reason: "signed a deposit receipt that is not for the share it was given"}
	}
	return nil
}

// abort asks the custodians that stored a share of escrow id to drop it,
// best effort and with a context of its own: cleanup must run even if the
// request's context has ended.
func (s *Service) abort(ctx context.Context, id string, locators []string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i, r := range s.remotes {
		loc := locators[i]
		if loc == "" {
			continue
		}
		wg.Go(func() {
			res, err := r.Abort(ctx, []wire.ShareRef{{EscrowID: id, Locator: loc}})
			if err == nil && res[0].Outcome != "aborted" && res[0].Outcome != "not_found" {
				err = errors.New(res[0].Outcome)
			}
			if err != nil {
				s.log.Error("escrow: a custodian kept a share of a failed deposit", "escrow_id", id, "custodian", r.Name, "err", err)
			}
		})
	}
	wg.Wait()
}

// InScope returns the live escrows of conversationIDs deposited within
// [from, to]: the keys a lawful-access request with that scope covers.
func (s *Service) InScope(ctx context.Context, conversationIDs []string, from, to time.Time) ([]Escrow, error) {
	return s.deposits.InScope(ctx, conversationIDs, from, to)
}

// ScopeKey is an escrow as a release call counts it: its id, how many
// shares open it, and the custodians that hold one.
type ScopeKey struct {
	EscrowID       string
	ConversationID string
	KeyID          string
	KeyCommitment  string
	Threshold      int
	Custodians     []string
}

// KeysInScope returns the live escrows of the given conversations
// deposited within [from, to], as InScope does, but only as a release
// counts them, in escrow id order: cheap for a scope of many keys.
func (s *Service) KeysInScope(ctx context.Context, conversationIDs []string, from, to time.Time) ([]ScopeKey, error) {
	return s.deposits.KeysInScope(ctx, conversationIDs, from, to)
}

// ByIDs returns the escrows of ids that exist, in any order, each with its
// custodians' deposit receipts.
func (s *Service) ByIDs(ctx context.Context, ids []string) ([]Escrow, error) {
	return s.deposits.ByIDs(ctx, ids)
}

func (s *Service) names() []string {
	out := make([]string, len(s.set.Custodians))
	for i, c := range s.set.Custodians {
		out[i] = c.Name
	}
	return out
}

// Package escrow keeps conversation keys so that no single party, the
// mediator included, can read one: a key is split with Shamir's scheme
// (github.com/hashicorp/vault/shamir) into N shares, threshold K; share i is
// wrapped by custodian i's Wrapper (a Vault Transit key, an HSM) and kept
// write-once in custodian i's ShareStore. PostgreSQL holds only metadata:
// ids, N, K, custodian names, a commitment to the key, and a hash of each
// wrapped share. The plaintext key is never stored, logged or returned,
// except by Reconstruct to the release path, which decides who may call it.
package escrow

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/vault/shamir"
)

// Wrapper encrypts and decrypts one custodian's shares. aad binds a wrapped
// share to its conversation and key id: a share unwrapped under another
// conversation's context fails.
type Wrapper interface {
	Wrap(ctx context.Context, aad, share []byte) ([]byte, error)
	Unwrap(ctx context.Context, aad, wrapped []byte) ([]byte, error)
}

// ShareStore keeps wrapped shares, one write-once entry per escrow holding
// the shares of every custodian that uses the store. Custodians whose Store
// values are equal share entries; the Service writes each store once per
// deposit.
type ShareStore interface {
	// Put writes the wrapped shares of escrow id, keyed by custodian name.
	// It never overwrites: it returns ErrShareExists if id has an entry.
	Put(ctx context.Context, id string, shares map[string][]byte) error
	// Get returns the wrapped shares of escrow id, keyed by custodian name.
	Get(ctx context.Context, id string) (map[string][]byte, error)
	// Destroy removes every version of escrow id's entry irrecoverably.
	// Destroying an entry that does not exist is not an error.
	Destroy(ctx context.Context, id string) error
}

// ErrShareExists is returned by ShareStore.Put for an escrow that has an
// entry.
var ErrShareExists = errors.New("escrow: the store already holds shares of that escrow")

// Custodian is one share holder.
type Custodian struct {
	Name    string
	Wrapper Wrapper
	Store   ShareStore
}

// Key sizes the architecture accepts.
const (
	MinKeyLen = 16
	MaxKeyLen = 64
	maxIDLen  = 128
)

// commitmentDomain separates key commitments from every other SHA-256 use.
const commitmentDomain = "mediator-key-commitment-v1"

// Commitment returns "sha256:<hex>" over a domain-separated, length-prefixed
// encoding of conversation id, key id and key, so that a rebuilt key can be
// checked before release and no two (conversation, key id, key) triples
// encode alike.
func Commitment(conversationID, keyID string, key []byte) string {
	h := sha256.New()
	h.Write([]byte(commitmentDomain))
	for _, part := range [][]byte{[]byte(conversationID), []byte(keyID), key} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(part)))
		h.Write(n[:])
		h.Write(part)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// aad is the wrapping context of a share: conversation and key id.
func aad(conversationID, keyID string) []byte {
	return []byte(conversationID + "\x00" + keyID)
}

// Receipt describes an escrowed key. It holds no key material.
type Receipt struct {
	EscrowID       string    `json:"escrow_id"`
	ConversationID string    `json:"conversation_id"`
	KeyID          string    `json:"key_id"`
	Threshold      int       `json:"threshold"`
	Shares         int       `json:"shares"`
	Custodians     []string  `json:"custodians"`
	KeyCommitment  string    `json:"key_commitment"`
	AuditSeq       int64     `json:"audit_seq"`
	CreatedAt      time.Time `json:"created_at"`

	shareHashes [][]byte
	destroyed   bool
}

// Errors a caller maps to responses.
var (
	// ErrInvalid matches every *ValidationError (422).
	ErrInvalid = errors.New("escrow: invalid request")
	// ErrConflict: the key id is escrowed with another key (409).
	ErrConflict = errors.New("escrow: key id already escrowed with a different key")
	// ErrUnavailable wraps a custodian or database failure; nothing was
	// left behind (503).
	ErrUnavailable = errors.New("escrow: a custodian or the database is unavailable")
	// ErrNotFound: no such escrow (404).
	ErrNotFound = errors.New("escrow: not found")
	// ErrDestroyed: the escrow was destroyed; its key is unrecoverable.
	ErrDestroyed = errors.New("escrow: destroyed")
)

// ValidationError is a request that breaks a rule (422): the field at
// fault and why. It never quotes the offending value.
type ValidationError struct {
	Field  string
	Reason string
}

func (e *ValidationError) Error() string {
	return "escrow: invalid request: " + e.Field + " " + e.Reason
}

// Is makes a ValidationError match ErrInvalid.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

// Invalid returns the field at fault and why, for a client.
func (e *ValidationError) Invalid() (field, reason string) { return e.Field, e.Reason }

// Service deposits and reconstructs keys.
type Service struct {
	custodians []Custodian
	threshold  int
	rows       Rows
	log        *slog.Logger
	metrics    *Metrics
	// stores are the distinct share stores; storeOf[i] indexes custodian
	// i's store in it.
	stores  []ShareStore
	storeOf []int
}

// Config configures a Service.
type Config struct {
	Custodians []Custodian
	Threshold  int
	Rows       Rows
	Log        *slog.Logger
	Metrics    *Metrics // may be nil
}

// New returns a Service. It needs 2 ≤ K ≤ N ≤ 255 custodians with distinct
// names.
func New(cfg Config) (*Service, error) {
	n, k := len(cfg.Custodians), cfg.Threshold
	if k < 2 || k > n || n > 255 {
		return nil, fmt.Errorf("escrow: need 2 ≤ threshold (%d) ≤ custodians (%d) ≤ 255", k, n)
	}
	s := &Service{custodians: cfg.Custodians, threshold: k, rows: cfg.Rows, log: cfg.Log, metrics: cfg.Metrics}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	seen := map[string]bool{}
	for _, c := range cfg.Custodians {
		if c.Name == "" || seen[c.Name] || c.Wrapper == nil || c.Store == nil {
			return nil, fmt.Errorf("escrow: custodian %q: names must be distinct and non-empty, with a wrapper and a store", c.Name)
		}
		seen[c.Name] = true
		idx := slices.IndexFunc(s.stores, func(st ShareStore) bool { return sameStore(st, c.Store) })
		if idx < 0 {
			idx = len(s.stores)
			s.stores = append(s.stores, c.Store)
		}
		s.storeOf = append(s.storeOf, idx)
	}
	return s, nil
}

// sameStore reports whether a and b are the same store: equal values of one
// comparable type (for KVStore: one Vault client, mount and prefix).
func sameStore(a, b ShareStore) bool {
	t := reflect.TypeOf(a)
	return t == reflect.TypeOf(b) && t.Comparable() && a == b
}

// DepositRequest is a key to escrow. Key is zeroed by Deposit.
type DepositRequest struct {
	ConversationID string
	KeyID          string
	Key            []byte
}

// Deposit escrows req.Key. It returns the receipt and whether this call
// created it (false: the same key was already escrowed under that id). All
// or nothing: if any custodian fails, every share already written is
// destroyed, no row remains, and the error wraps ErrUnavailable.
func (s *Service) Deposit(ctx context.Context, req DepositRequest) (Receipt, bool, error) {
	start := time.Now()
	rec, created, err := s.deposit(ctx, req)
	clear(req.Key)
	s.metrics.deposit(err, created, time.Since(start))
	return rec, created, err
}

func (s *Service) deposit(ctx context.Context, req DepositRequest) (Receipt, bool, error) {
	if err := validate(req); err != nil {
		return Receipt{}, false, err
	}
	commitment := Commitment(req.ConversationID, req.KeyID, req.Key)
	if existing, err := s.rows.ByKeyID(ctx, req.ConversationID, req.KeyID); err == nil {
		return sameOrConflict(existing, commitment)
	} else if !errors.Is(err, ErrNotFound) {
		return Receipt{}, false, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}

	id, err := newEscrowID()
	if err != nil {
		return Receipt{}, false, err
	}
	shares, err := shamir.Split(req.Key, len(s.custodians), s.threshold)
	if err != nil {
		return Receipt{}, false, fmt.Errorf("escrow: split: %w", err)
	}
	defer func() {
		for _, sh := range shares {
			clear(sh)
		}
	}()

	hashes, err := s.wrapAndStore(ctx, id, aad(req.ConversationID, req.KeyID), shares)
	if err != nil {
		s.log.Error("escrow deposit failed; destroying the shares written", "escrow_id", id, "err", err)
		s.destroyShares(ctx, id)
		return Receipt{}, false, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}

	rec := Receipt{
		EscrowID: id, ConversationID: req.ConversationID, KeyID: req.KeyID,
		Threshold: s.threshold, Shares: len(s.custodians), Custodians: s.names(),
		KeyCommitment: commitment, shareHashes: hashes,
	}
	stored, err := s.rows.Insert(ctx, rec)
	if err != nil && !errors.Is(err, errDuplicateKeyID) {
		// A commit whose answer was lost may still have committed: never
		// destroy the shares of an escrow the database records.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		committed, lookErr := s.rows.ByID(cctx, id)
		cancel()
		if lookErr == nil {
			return committed, true, nil
		}
		if !errors.Is(lookErr, ErrNotFound) {
			// Unknown whether it committed. Orphaned wrapped shares are
			// harmless; destroying a recorded escrow's shares loses its key.
			s.log.Error("escrow deposit outcome unknown; keeping its wrapped shares", "escrow_id", id, "err", err, "lookup_err", lookErr)
			return Receipt{}, false, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
	}
	if err != nil {
		s.destroyShares(ctx, id)
		if errors.Is(err, errDuplicateKeyID) {
			// A concurrent deposit of the same key id won the race.
			existing, err := s.rows.ByKeyID(ctx, req.ConversationID, req.KeyID)
			if err != nil {
				return Receipt{}, false, fmt.Errorf("%w: %v", ErrUnavailable, err)
			}
			return sameOrConflict(existing, commitment)
		}
		return Receipt{}, false, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return stored, true, nil
}

func sameOrConflict(existing Receipt, commitment string) (Receipt, bool, error) {
	if subtle.ConstantTimeCompare([]byte(existing.KeyCommitment), []byte(commitment)) == 1 {
		return existing, false, nil
	}
	return Receipt{}, false, ErrConflict
}

func validate(req DepositRequest) error {
	for name, v := range map[string]string{"conversation_id": req.ConversationID, "key_id": req.KeyID} {
		if v == "" || len(v) > maxIDLen || strings.ContainsAny(v, "\x00\n\r") {
			return &ValidationError{Field: name, Reason: fmt.Sprintf("must be 1–%d bytes without control characters", maxIDLen)}
		}
	}
	if len(req.Key) < MinKeyLen || len(req.Key) > MaxKeyLen {
		return &ValidationError{Field: "key", Reason: fmt.Sprintf("must be %d–%d bytes", MinKeyLen, MaxKeyLen)}
	}
	return nil
}

// wrapAndStore wraps share i with custodian i, all in parallel, then writes
// each store's entry, all in parallel. It returns the SHA-256 of each wrapped
// share, or the joined errors of every custodian that failed.
func (s *Service) wrapAndStore(ctx context.Context, id string, aad []byte, shares [][]byte) ([][]byte, error) {
	wrapped := make([][]byte, len(s.custodians))
	errs := make([]error, len(s.custodians))
	var wg sync.WaitGroup
	for i, c := range s.custodians {
		wg.Go(func() {
			t0 := time.Now()
			w, err := c.Wrapper.Wrap(ctx, aad, shares[i])
			s.metrics.custodian(c.Name, "wrap", err, time.Since(t0))
			if err != nil {
				errs[i] = fmt.Errorf("custodian %s: wrap: %w", c.Name, err)
				return
			}
			wrapped[i] = w
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	storeErrs := make([]error, len(s.stores))
	for j, st := range s.stores {
		entry := map[string][]byte{}
		for _, i := range s.storeMembers(j) {
			entry[s.custodians[i].Name] = wrapped[i]
		}
		wg.Go(func() {
			t0 := time.Now()
			err := st.Put(ctx, id, entry)
			for name := range entry {
				s.metrics.custodian(name, "store", err, time.Since(t0))
			}
			if err != nil {
				storeErrs[j] = fmt.Errorf("custodians %s: store: %w", strings.Join(slices.Sorted(maps.Keys(entry)), ", "), err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(storeErrs...); err != nil {
		return nil, err
	}
	hashes := make([][]byte, len(wrapped))
	for i, w := range wrapped {
		h := sha256.Sum256(w)
		hashes[i] = h[:]
	}
	return hashes, nil
}

// destroyShares removes escrow id's entry from every store, best effort and
// with a context of its own: cleanup must run even if the request's context
// has ended.
func (s *Service) destroyShares(ctx context.Context, id string) []error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	errs := make([]error, len(s.stores))
	var wg sync.WaitGroup
	for j, st := range s.stores {
		wg.Go(func() {
			if err := st.Destroy(ctx, id); err != nil {
				var names []string
				for _, i := range s.storeMembers(j) {
					names = append(names, s.custodians[i].Name)
				}
				s.log.Error("escrow: could not destroy shares; they remain in the custodians' store", "escrow_id", id, "custodians", names, "err", err)
				errs[j] = fmt.Errorf("custodians %s: %w", strings.Join(names, ", "), err)
			}
		})
	}
	wg.Wait()
	return slices.DeleteFunc(errs, func(err error) bool { return err == nil })
}

// storeMembers returns the indexes of the custodians that use store j.
func (s *Service) storeMembers(j int) []int {
	var out []int
	for i, st := range s.storeOf {
		if st == j {
			out = append(out, i)
		}
	}
	return out
}

// Reconstruct rebuilds the key of escrow id from any K custodians whose
// share is present, untampered (its hash matches the deposit's) and
// unwraps; it checks the commitment in constant time. decisionRef names the
// release decision that authorized it and is logged. The caller must zero
// the key after use. Fewer than K good shares: an error naming each
// custodian that failed and why.
func (s *Service) Reconstruct(ctx context.Context, id, decisionRef string) ([]byte, Receipt, error) {
	rec, err := s.rows.ByID(ctx, id)
	if err != nil {
		return nil, Receipt{}, err
	}
	if rec.destroyed {
		return nil, rec, ErrDestroyed
	}
	entries := s.entryReaders(ctx, rec.EscrowID)
	var (
		parts    [][]byte
		failures []string
	)
	defer func() {
		for _, p := range parts {
			clear(p)
		}
	}()
	// Read shares in rounds: as many custodians in parallel as shares are
	// still missing, so the usual case costs one round (one read per store
	// and K unwraps) and a failed custodian costs one more round, not a
	// full serial retry.
	next := 0
	for len(parts) < rec.Threshold && next < len(rec.Custodians) {
		want := rec.Threshold - len(parts)
		var round []int
		for ; next < len(rec.Custodians) && len(round) < want; next++ {
			round = append(round, next)
		}
		shares := make([][]byte, len(round))
		errs := make([]error, len(round))
		var wg sync.WaitGroup
		for j, i := range round {
			wg.Go(func() {
				t0 := time.Now()
				shares[j], errs[j] = s.readShare(ctx, rec, i, entries)
				s.metrics.custodian(rec.Custodians[i], "reconstruct", errs[j], time.Since(t0))
			})
		}
		wg.Wait()
		for j, i := range round {
			if errs[j] != nil {
				failures = append(failures, rec.Custodians[i]+": "+errs[j].Error())
				continue
			}
			parts = append(parts, shares[j])
		}
	}
	if len(parts) < rec.Threshold {
		return nil, rec, fmt.Errorf("%w: only %d of the %d shares needed could be read (%s)",
			ErrUnavailable, len(parts), rec.Threshold, strings.Join(failures, "; "))
	}
	key, err := shamir.Combine(parts)
	if err != nil {
		return nil, rec, fmt.Errorf("escrow: combine: %w", err)
	}
	if subtle.ConstantTimeCompare([]byte(Commitment(rec.ConversationID, rec.KeyID, key)), []byte(rec.KeyCommitment)) != 1 {
		clear(key)
		return nil, rec, errors.New("escrow: the rebuilt key does not match its commitment")
	}
	s.log.Info("escrow key reconstructed", "escrow_id", id, "decision_id", decisionRef, "custodians_failed", len(failures))
	return key, rec, nil
}

// entryReaders returns, per store, a function that reads escrow id's entry
// once, however many custodians ask for it.
func (s *Service) entryReaders(ctx context.Context, id string) []func() (map[string][]byte, error) {
	out := make([]func() (map[string][]byte, error), len(s.stores))
	for j, st := range s.stores {
		out[j] = sync.OnceValues(func() (map[string][]byte, error) { return st.Get(ctx, id) })
	}
	return out
}

// readShare reads, checks and unwraps share i of rec.
func (s *Service) readShare(ctx context.Context, rec Receipt, i int, entries []func() (map[string][]byte, error)) ([]byte, error) {
	name := rec.Custodians[i]
	c := slices.IndexFunc(s.custodians, func(c Custodian) bool { return c.Name == name })
	if c < 0 {
		return nil, errors.New("not configured")
	}
	entry, err := entries[s.storeOf[c]]()
	if err != nil {
		return nil, err
	}
	wrapped, ok := entry[name]
	if !ok {
		return nil, errors.New("no share in its store")
	}
	if err := s.shareKnown(ctx, rec, i, wrapped); err != nil {
		return nil, err
	}
	share, err := s.custodians[c].Wrapper.Unwrap(ctx, aad(rec.ConversationID, rec.KeyID), wrapped)
	if err != nil {
		return nil, fmt.Errorf("unwrap: %w", err)
	}
	return share, nil
}

// shareKnown checks that wrapped is the share deposited as share i of rec,
// or a recorded rewrap of it, by hash: a substituted share is refused.
func (s *Service) shareKnown(ctx context.Context, rec Receipt, i int, wrapped []byte) error {
	h := sha256.Sum256(wrapped)
	if i < len(rec.shareHashes) && subtle.ConstantTimeCompare(h[:], rec.shareHashes[i]) == 1 {
		return nil
	}
	rewraps, err := s.rows.RewrapHashes(ctx, rec.EscrowID, i)
	if err != nil {
		return err
	}
	for _, rh := range rewraps {
		if subtle.ConstantTimeCompare(h[:], rh) == 1 {
			return nil
		}
	}
	return errors.New("wrapped share matches neither its deposit hash nor a recorded rewrap (tampered)")
}

// InScope returns the live escrowed keys of conversationIDs deposited
// within [from, to]: the keys a lawful-access request with that scope
// covers. It returns metadata only.
func (s *Service) InScope(ctx context.Context, conversationIDs []string, from, to time.Time) ([]Receipt, error) {
	return s.rows.InScope(ctx, conversationIDs, from, to)
}

func (s *Service) names() []string {
	out := make([]string, len(s.custodians))
	for i, c := range s.custodians {
		out[i] = c.Name
	}
	return out
}

// newEscrowID returns a random UUID (version 4).
func newEscrowID() (string, error) {
	id, err := uuid.NewRandom()
	if err != nil {
		return "", fmt.Errorf("escrow: id: %w", err)
	}
	return id.String(), nil
}

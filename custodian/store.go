package custodian

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	vaultapi "github.com/hashicorp/vault/api"
)

// store is the custodian's record in its own Vault KV v2 mount, under its
// own prefix, which its AppRole alone may touch:
//
//	<prefix>/identity                      its private keys, wrapped
//	<prefix>/hpke-keys/<unix-nanos>        an HPKE private key made since (rotate-hpke), wrapped, written once
//	<prefix>/hpke-retired/<fingerprint>    when it first saw a roster version replace one of its HPKE
//	                                       keys (the hex of the sha256: fingerprint), written once
//	<prefix>/deposits/<entry>              shares stored by one call, a field per escrow id
//	<prefix>/released/<request>/<n>        the shares one release call gave out for a request: records
//	                                       1, 2, … written once each, so a share appears in one at most
//	<prefix>/released/<request>/kept/<k>   the answers (sealed shares, signed receipts) a record names,
//	                                       in entries of at most keptEntryBytes, written once before it
//	<prefix>/fresh/<unix-nanos>-<uuid>     shares released within their abort window by one call, written once
//	<prefix>/committed/<unix-nanos>-<uuid> shares one commit call committed (never aborted since), written once
//	<prefix>/destroyed/<escrow>            a share destroyed or aborted, written once, with what the
//	                                       deposit index knows it by
//	<prefix>/holds/<hold>                  a legal hold; <prefix>/hold-releases/<hold> its release
//	<prefix>/vetoes/<request>/<approver>   an approver's deny vote delivered directly, written once
//	                                       (the approver's id in unpadded base64url)
//	<prefix>/revoked/<request>             the officer's revocation of a request delivered directly,
//	                                       written once
//	<prefix>/denied/<request>/<n>          the refusals of a request's release by this custodian's
//	                                       policy: records 1, 2, … written once each; 5 lock it
//
// Every record is written with check-and-set 0, so Vault itself refuses to
// overwrite one. The roster record is rewritten for each newer version;
// the identity and HPKE keys only to move them to a new key version
// (rewrap); a deposit entry only to remove a share (destruction) or to
// move shares to a new key version (rewrap); each with check-and-set on
// the version read, and its old versions destroyed.
type store struct {
	kv     *vaultapi.KVv2
	client *vaultapi.Client
	mount  string
	prefix string
	// releases remembers the release records read, per request.
	releases *releaseCache
}

func newStore(client *vaultapi.Client, mount, prefix string) *store {
	return &store{kv: client.KVv2(mount), client: client, mount: mount, prefix: strings.Trim(prefix, "/"), releases: newReleaseCache()}
}

func (s *store) path(parts ...string) string {
	return path.Join(append([]string{s.prefix}, parts...)...)
}

// errExists: a write-once record is already there.
var errExists = errors.New("custodian: the record exists")

// errChanged: a record was rewritten since the version read.
var errChanged = errors.New("custodian: the record changed since it was read")

// errNoRecord: no such record.
var errNoRecord = errors.New("custodian: no such record")

// putOnce writes data at p unless something is there: errExists if it is.
func (s *store) putOnce(ctx context.Context, p string, data map[string]any) error {
	_, err := s.kv.Put(ctx, p, data, vaultapi.WithCheckAndSet(0))
	if err == nil {
		return nil
	}
	if s.casRefused(ctx, p, 0, err) {
		return errExists
	}
	return fmt.Errorf("kv put: %w", err)
}

// casRefused reports whether err, from a write to p with check-and-set
// cas, is Vault refusing the check-and-set. Vault allows such a write only
// while p's current version is cas (0: p has none), and refuses it with
// HTTP 400, as it does any request it finds invalid; only its message tells
// them apart. So p's state decides: the 400 is the refusal if p's current
// version, read again, is not cas. If the state cannot be read, err stays a
// failure, never a refusal, since a caller takes a refusal to mean that
// another call wrote p.
func (s *store) casRefused(ctx context.Context, p string, cas int, err error) bool {
	var re *vaultapi.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusBadRequest {
		return false
	}
	current := 0
	md, err := s.kv.GetMetadata(ctx, p)
	switch {
	case errors.Is(err, vaultapi.ErrSecretNotFound):
	case err != nil:
		return false
	default:
		current = md.CurrentVersion
	}
	return current != cas
}

// get reads the latest version at p.
func (s *store) get(ctx context.Context, p string) (*vaultapi.KVSecret, error) {
	sec, err := s.kv.Get(ctx, p)
	if err != nil {
		var re *vaultapi.ResponseError
		if errors.Is(err, vaultapi.ErrSecretNotFound) || (errors.As(err, &re) && re.StatusCode == http.StatusNotFound) {
			return nil, errNoRecord
		}
		return nil, fmt.Errorf("kv get: %w", err)
	}
	if sec == nil || sec.Data == nil {
		return nil, errNoRecord
	}
	return sec, nil
}

// list returns the keys under dir ("" when there are none).
func (s *store) list(ctx context.Context, dir string) ([]string, error) {
	sec, err := s.client.Logical().ListWithContext(ctx, s.mount+"/metadata/"+s.path(dir))
	if err != nil {
		return nil, fmt.Errorf("kv list: %w", err)
	}
	if sec == nil {
		return nil, nil
	}
	raw, _ := sec.Data["keys"].([]any)
	out := make([]string, 0, len(raw))
	for _, k := range raw {
		if s, ok := k.(string); ok && !strings.HasSuffix(s, "/") {
			out = append(out, s)
		}
	}
	return out, nil
}

// record is what the custodian keeps of one stored share. The share itself
// is only in Wrapped, under the custodian's own key.
type record struct {
	EscrowID       string `json:"escrow_id"`
	ConversationID string `json:"conversation_id"`
	KeyID          string `json:"key_id"`
	Index          int    `json:"index"`
	Commitment     string `json:"commitment"`
	Wrapped        string `json:"wrapped"`
	SealedSHA256   string `json:"sealed_sha256"`
	StoredAt       string `json:"stored_at"`
	Depositor      string `json:"depositor"`
	// DepositedAt is a v2 share's deposit time, bound by its HPKE info.
	DepositedAt string `json:"deposited_at,omitempty"`
}

// putDeposits writes records as one new entry and returns its locator.
func (s *store) putDeposits(ctx context.Context, recs []record) (string, error) {
	data := make(map[string]any, len(recs))
	for _, r := range recs {
		b, err := json.Marshal(r)
		if err != nil {
			return "", err
		}
		data[r.EscrowID] = string(b)
	}
	locator := "deposits/" + uuid.NewString()
	if err := s.putOnce(ctx, s.path(locator), data); err != nil {
		return "", err
	}
	return locator, nil
}

// validUUID reports whether s is a UUID in canonical form: the only escrow,
// request and hold ids a custodian accepts, since they name paths in its
// store.
func validUUID(s string) bool {
	u, err := uuid.Parse(s)
	return err == nil && u.String() == s
}

// releaseRecord is what one release call gave out for a request: for each
// escrow id, the hash of the receipt signed for it, and where the answer
// given for it is kept.
type releaseRecord struct {
	RequestDigest string            `json:"request_digest"`
	RecipientKey  string            `json:"recipient_key"`
	At            string            `json:"at"`
	Receipts      map[string]string `json:"receipts"`
	// Kept lists the kept entries holding the answer given for each
	// escrow id of Receipts, by the first escrow id each holds, in order
	// (keptEntries). A record written before answers were kept has none.
	Kept keptEntries `json:"kept,omitempty"`
}

// releases is what a request's release records say.
type releases struct {
	records int                      // how many there are
	first   time.Time                // the earliest record's time, when there is one
	shares  map[string]releasedShare // each escrow id released for the request
}

// releasedShare is what a release record says of one share it gave out.
type releasedShare struct {
	digest  string // the digest of the request it was released for
	receipt string // the hash of the receipt it was released with
	kept    string // the kept entry holding the answer given; "" if none was kept
}

// putRelease writes release record n for request; errExists if another
// call wrote record n first.
func (s *store) putRelease(ctx context.Context, requestID string, n int, r releaseRecord) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return s.putOnce(ctx, s.path("released", requestID, strconv.Itoa(n)), map[string]any{"record": string(b)})
}

// putFresh records, once, that a release call at gave out ids, shares
// still within their abort window: the record's name starts with its time,
// so an abort reads only the records newer than the share it would destroy.
func (s *store) putFresh(ctx context.Context, at time.Time, requestID string, ids []string) error {
	name := fmt.Sprintf("%020d-%s", at.UnixNano(), uuid.NewString())
	return s.putOnce(ctx, s.path("fresh", name), map[string]any{"request_id": requestID, "escrow_ids": strings.Join(ids, ",")})
}

// freshReleased returns the escrow ids that release calls since then gave
// out while they were within their abort window.
func (s *store) freshReleased(ctx context.Context, since time.Time) (map[string]bool, error) {
	return s.idsSince(ctx, "fresh", since)
}

// idsSince returns the escrow ids of the time-named records under dir
// written since then.
func (s *store) idsSince(ctx context.Context, dir string, since time.Time) (map[string]bool, error) {
	names, err := s.list(ctx, dir)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, n := range names {
		nanos, _, ok := strings.Cut(n, "-")
		t, err := strconv.ParseInt(nanos, 10, 64)
		if !ok || err != nil || t < since.UnixNano() {
			continue
		}
		sec, err := s.get(ctx, s.path(dir, n))
		if err != nil {
			return nil, err
		}
		ids, _ := sec.Data["escrow_ids"].(string)
		for id := range strings.SplitSeq(ids, ",") {
			out[id] = true
		}
	}
	return out, nil
}

// putCommitted records, once, that a commit call at committed ids: the
// name starts with its time, as putFresh's does, so an abort reads only
// the records within its window.
func (s *store) putCommitted(ctx context.Context, at time.Time, ids []string) error {
	name := fmt.Sprintf("%020d-%s", at.UnixNano(), uuid.NewString())
	return s.putOnce(ctx, s.path("committed", name), map[string]any{"escrow_ids": strings.Join(ids, ",")})
}

// committedSince returns the escrow ids committed since then.
func (s *store) committedSince(ctx context.Context, since time.Time) (map[string]bool, error) {
	return s.idsSince(ctx, "committed", since)
}

// validLocator keeps a locator from naming anything but a deposit entry.
func validLocator(locator string) bool {
	id, ok := strings.CutPrefix(locator, "deposits/")
	if !ok {
		return false
	}
	_, err := uuid.Parse(id)
	return err == nil
}

// deposit reads escrow id's record from the entry at locator, and the
// entry's version.
func (s *store) deposit(ctx context.Context, locator, escrowID string) (record, *vaultapi.KVSecret, error) {
	sec, err := s.entry(ctx, locator)
	if err != nil {
		return record{}, nil, err
	}
	r, err := recordIn(sec, escrowID)
	if err != nil {
		return record{}, nil, err
	}
	return r, sec, nil
}

// entry reads the deposit entry at locator.
func (s *store) entry(ctx context.Context, locator string) (*vaultapi.KVSecret, error) {
	if !validLocator(locator) {
		return nil, errNoRecord
	}
	return s.get(ctx, s.path(locator))
}

// recordIn returns escrow id's record in a deposit entry.
func recordIn(sec *vaultapi.KVSecret, escrowID string) (record, error) {
	raw, ok := sec.Data[escrowID].(string)
	if !ok {
		return record{}, errNoRecord
	}
	var r record
	if err := json.Unmarshal([]byte(raw), &r); err != nil || r.EscrowID != escrowID {
		return record{}, fmt.Errorf("custodian: the record of %s is unreadable", escrowID)
	}
	return r, nil
}

// removeDeposit removes escrow id's share from the entry at locator for
// good: the entry is rewritten without it and every older version holding
// it destroyed; an entry left empty has all its versions deleted.
func (s *store) removeDeposit(ctx context.Context, locator, escrowID string, sec *vaultapi.KVSecret) error {
	p := s.path(locator)
	if len(sec.Data) == 1 {
		if err := s.kv.DeleteMetadata(ctx, p); err != nil {
			return fmt.Errorf("kv destroy: %w", err)
		}
		return nil
	}
	rest := make(map[string]any, len(sec.Data)-1)
	for k, v := range sec.Data {
		if k != escrowID {
			rest[k] = v
		}
	}
	return s.replace(ctx, p, sec, rest)
}

// replace writes data as the next version of p (check-and-set on the
// version read) and destroys every older version Vault still keeps, as
// p's metadata lists them; errChanged if p moved past the version read.
// Each replace destroys the version before it, so the list holds one
// version, or a few after a destroy that failed: a replace costs the same
// however often p was written. (Naming every version from 1 on made each
// write of a witness's record, rewritten at every cosignature, cost Vault
// a delete per version ever written: 2.9 ms a write rising to 10.6 ms
// within 400 versions, docs/performance.md.)
func (s *store) replace(ctx context.Context, p string, sec *vaultapi.KVSecret, data map[string]any) error {
	if sec.VersionMetadata == nil {
		return errors.New("kv replace: no version metadata")
	}
	v := sec.VersionMetadata.Version
	if _, err := s.kv.Put(ctx, p, data, vaultapi.WithCheckAndSet(v)); err != nil {
		if s.casRefused(ctx, p, v, err) {
			return errChanged
		}
		return fmt.Errorf("kv replace: %w", err)
	}
	meta, err := s.kv.GetMetadata(ctx, p)
	if err != nil {
		return fmt.Errorf("kv destroy old versions: %w", err)
	}
	var old []int
	for _, kept := range meta.Versions {
		if kept.Version <= v && !kept.Destroyed {
			old = append(old, kept.Version)
		}
	}
	if len(old) == 0 {
		return nil
	}
	slices.Sort(old)
	if err := s.kv.Destroy(ctx, p, old); err != nil {
		return fmt.Errorf("kv destroy old versions: %w", err)
	}
	return nil
}

// holdsOf returns the ids of the active legal holds on conversationID,
// sorted.
func (s *store) holdsOf(ctx context.Context, conversationID string) ([]string, error) {
	active, err := s.activeHolds(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for id, conv := range active {
		if conv == conversationID {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out, nil
}

// holds returns the conversations under an active legal hold.
func (s *store) holds(ctx context.Context) (map[string]bool, error) {
	active, err := s.activeHolds(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, conv := range active {
		out[conv] = true
	}
	return out, nil
}

// activeHolds returns each legal hold on record and not lifted: hold id →
// conversation.
func (s *store) activeHolds(ctx context.Context) (map[string]string, error) {
	ids, err := s.list(ctx, "holds")
	if err != nil {
		return nil, err
	}
	released, err := s.list(ctx, "hold-releases")
	if err != nil {
		return nil, err
	}
	gone := make(map[string]bool, len(released))
	for _, id := range released {
		gone[id] = true
	}
	out := map[string]string{}
	for _, id := range ids {
		if gone[id] {
			continue
		}
		sec, err := s.get(ctx, s.path("holds", id))
		if err != nil {
			return nil, err
		}
		if c, ok := sec.Data["conversation_id"].(string); ok {
			out[id] = c
		}
	}
	return out, nil
}

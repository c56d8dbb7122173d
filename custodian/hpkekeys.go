package custodian

import (
	"cmp"
	"context"
	"crypto/hpke"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/seal"
	"github.com/mediatorhq/mediator/shares"
	"github.com/mediatorhq/mediator/wire"
)

// A custodian's HPKE keys rotate through the roster (issue 21). It may
// hold several: its first in identity, and each one `mediator custodian
// rotate-hpke` made since, written once to hpke-keys/<unix-nanos> and
// wrapped as the first is. Which one depositors seal to is not the
// custodian's to say: the key in force is the one the newest roster
// version it verified lists for its name. A key made but not yet listed
// opens nothing. A key a version replaced (no longer listed) still opens
// deposits for hpke_grace from when this custodian first saw that
// version, a moment it writes once to hpke-retired/<fingerprint> so that a
// restart keeps the clock; after that a share sealed to it is refused as
// retired_key. Shares already kept are wrapped by the custodian's own
// Transit key or HSM, never by HPKE, so a rotation re-seals nothing.

// Store paths of the HPKE keys and their retirement.
const (
	hpkeKeysDir    = "hpke-keys"
	hpkeRetiredDir = "hpke-retired"
)

// codeRetiredKey: the share opens with an HPKE key of this custodian's
// that a roster version replaced more than hpke_grace ago.
const codeRetiredKey = "retired_key"

// maxKeysTried bounds the keys a share is tried with: the key in force and
// every key within grace always; keys past grace (tried only to answer
// retired_key rather than share_invalid) up to this many keys in all. The
// HPKE encapsulation does not name its key, so each try is a decapsulation.
const maxKeysTried = 4

// notListed is the roster record's hpke_key when the version recorded
// lists no key for this custodian (a record without the field predates
// rotation: its key in force is the first).
const notListed = "none"

// hpkeKey is one HPKE key pair this custodian holds.
type hpkeKey struct {
	priv hpke.PrivateKey
	pub  seal.PublicKey
	fp   string // pub.Fingerprint()
	path string // where it is stored: identity or hpke-keys/<unix-nanos>
}

// keyring is the HPKE keys a custodian holds and what the roster made of
// them. It is safe for concurrent use; acceptRoster alone changes it.
type keyring struct {
	mu      sync.RWMutex
	held    []*hpkeKey           // identity's first, then in the order they were made
	inForce string               // fingerprint; "" when the roster in force lists no key for this custodian
	retired map[string]time.Time // fingerprint: when this custodian first saw a version replacing it
}

// find is the key held with fingerprint fp, nil if none. The caller
// holds mu.
func (k *keyring) find(fp string) *hpkeKey {
	for _, key := range k.held {
		if key.fp == fp {
			return key
		}
	}
	return nil
}

// inForceKey is the public key in force, and whether this custodian holds
// its private key.
func (k *keyring) inForceKey() (seal.PublicKey, bool) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if key := k.find(k.inForce); key != nil {
		return key.pub, true
	}
	return seal.PublicKey{}, false
}

// opening returns the keys a deposit is tried with, in order, and how many
// of the first open deposits (live): the key in force, then the keys
// within grace, then keys past grace, each group most recently replaced
// first. A key never listed, or listed only in versions this custodian has
// not seen, is not among them.
func (k *keyring) opening(now time.Time, grace time.Duration) (keys []*hpkeKey, live int) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if key := k.find(k.inForce); key != nil {
		keys = append(keys, key)
	}
	var within, past []*hpkeKey
	for _, key := range k.held {
		at, ok := k.retired[key.fp]
		switch {
		case key.fp == k.inForce || !ok:
		case now.Sub(at) <= grace:
			within = append(within, key)
		default:
			past = append(past, key)
		}
	}
	newest := func(a, b *hpkeKey) int { return k.retired[b.fp].Compare(k.retired[a.fp]) }
	slices.SortStableFunc(within, newest)
	slices.SortStableFunc(past, newest)
	keys = append(keys, within...)
	live = len(keys)
	return append(keys, past[:max(0, min(len(past), maxKeysTried-live))]...), live
}

// withinGrace lists the keys held, not in force, that still open deposits
// at now, each as "fingerprint until time", for the log.
func (k *keyring) withinGrace(now time.Time, grace time.Duration) []string {
	keys, live := k.opening(now, grace)
	k.mu.RLock()
	defer k.mu.RUnlock()
	var out []string
	for _, key := range keys[:live] {
		if key.fp != k.inForce {
			out = append(out, key.fp+" until "+shares.FormatTime(k.retired[key.fp].Add(grace)))
		}
	}
	return out
}

// loadKeyring reads the custodian's HPKE keys from its store (identity's
// is id's), the key in force from its roster record, and when each key
// replaced was first seen replaced.
func (c *Custodian) loadKeyring(ctx context.Context) (*keyring, error) {
	k := &keyring{retired: map[string]time.Time{}}
	first := &hpkeKey{priv: c.id.hpke, pub: c.id.hpkePub, fp: c.id.hpkePub.Fingerprint(), path: "identity"}
	held, err := loadHPKEKeys(ctx, c.cfg.Name, c.store, c.wrapper, []*hpkeKey{first})
	if err != nil {
		return nil, err
	}
	k.held = held
	seen, _, err := c.seenRoster(ctx)
	if err != nil {
		return nil, fmt.Errorf("custodian: %w", err)
	}
	switch seen.HPKEKey {
	case "":
		k.inForce = first.fp
	case notListed:
	default:
		k.inForce = seen.HPKEKey
	}
	names, err := c.store.list(ctx, hpkeRetiredDir)
	if err != nil {
		return nil, fmt.Errorf("custodian: list retired hpke keys: %w", err)
	}
	for _, n := range names {
		fp, at, err := c.readRetired(ctx, n)
		if err != nil {
			return nil, err
		}
		k.retired[fp] = at
	}
	return k, nil
}

// loadHPKEKeys returns held and, after them, every key under hpke-keys/
// it lacks, unwrapped, in the order they were made.
func loadHPKEKeys(ctx context.Context, name string, st *store, w Wrapper, held []*hpkeKey) ([]*hpkeKey, error) {
	names, err := st.list(ctx, hpkeKeysDir)
	if err != nil {
		return nil, fmt.Errorf("custodian: list hpke keys: %w", err)
	}
	slices.Sort(names) // zero-padded times: the order they were made
	out := slices.Clone(held)
	for _, n := range names {
		p := hpkeKeysDir + "/" + n
		if slices.ContainsFunc(out, func(k *hpkeKey) bool { return k.path == p }) {
			continue
		}
		sec, err := st.get(ctx, st.path(p))
		if err != nil {
			return nil, fmt.Errorf("custodian: read hpke key %s: %w", n, err)
		}
		wrapped, _ := sec.Data["hpke_wrapped"].(string)
		if wrapped == "" {
			return nil, fmt.Errorf("custodian: the stored hpke key %s is incomplete", n)
		}
		priv, err := unwrapHPKE(ctx, name, w, wrapped)
		if err != nil {
			return nil, fmt.Errorf("custodian: hpke key %s: %w", n, err)
		}
		pub := seal.PublicKeyOf(priv)
		out = append(out, &hpkeKey{priv: priv, pub: pub, fp: pub.Fingerprint(), path: p})
	}
	return out, nil
}

// readRetired reads the retirement record n: the key's fingerprint and
// when this custodian first saw it replaced.
func (c *Custodian) readRetired(ctx context.Context, n string) (string, time.Time, error) {
	sec, err := c.store.get(ctx, c.store.path(hpkeRetiredDir, n))
	if err != nil {
		return "", time.Time{}, fmt.Errorf("custodian: read retired hpke key %s: %w", n, err)
	}
	fp, _ := sec.Data["fingerprint"].(string)
	raw, _ := sec.Data["replaced_at"].(string)
	at, err := time.Parse(shares.TimeLayout, raw)
	if fp != "sha256:"+n || err != nil {
		return "", time.Time{}, fmt.Errorf("custodian: the retired hpke key record %s is unreadable", n)
	}
	return fp, at, nil
}

// listedKeys is, for each version, the fingerprint of the HPKE key it
// lists for this custodian ("" when it lists none).
func (c *Custodian) listedKeys(versions []roster.Roster) []string {
	out := make([]string, len(versions))
	for i, r := range versions {
		if rc, ok := r.Custodian(c.cfg.Name); ok {
			out[i] = rc.HPKEKey.Fingerprint()
		}
	}
	return out
}

// keyChange is what a verified chain changes in the keyring: the key it
// makes in force, the keys it replaced and when, and the keys held when
// they had to be read again from the store (nil if not).
type keyChange struct {
	inForce  string
	replaced map[string]time.Time
	held     []*hpkeKey
}

// recordReplacedKeys prepares the change a verified chain makes: when the
// key its last version lists for this custodian (listed, one per version)
// is not the key in force, every other key the chain lists for it and the
// key in force until now are replaced, now unless replaced before. Each
// such moment is written once to the store before the chain's version is
// recorded, so no restart loses a grace period begun. It returns nil when
// the key in force stays. The caller holds rosterMu; adoptKeys applies
// the change.
func (c *Custodian) recordReplacedKeys(ctx context.Context, listed []string, version uint64, digest string) (*keyChange, error) {
	next := listed[len(listed)-1]
	c.keys.mu.RLock()
	prev := c.keys.inForce
	if next == prev {
		c.keys.mu.RUnlock()
		return nil, nil
	}
	var fps []string
	for _, fp := range append([]string{prev}, listed...) {
		if _, done := c.keys.retired[fp]; fp != "" && fp != next && !done && !slices.Contains(fps, fp) {
			fps = append(fps, fp)
		}
	}
	missing := next != "" && c.keys.find(next) == nil
	for _, fp := range fps {
		missing = missing || c.keys.find(fp) == nil
	}
	held := c.keys.held
	c.keys.mu.RUnlock()
	ch := &keyChange{inForce: next, replaced: map[string]time.Time{}}
	if missing {
		// A key made by rotate-hpke after this process started.
		var err error
		if ch.held, err = loadHPKEKeys(ctx, c.cfg.Name, c.store, c.wrapper, held); err != nil {
			return nil, fmt.Errorf("%w: %v", errUnavailable, err)
		}
	}
	at := c.now()
	for _, fp := range fps {
		n := strings.TrimPrefix(fp, "sha256:")
		err := c.store.putOnce(ctx, c.store.path(hpkeRetiredDir, n), map[string]any{"fingerprint": fp,
			"replaced_at": shares.FormatTime(at), "roster_version": version, "roster_digest": digest})
		switch {
		case err == nil:
			ch.replaced[fp] = at
		case errors.Is(err, errExists):
			// Replaced before (another process, or an attempt that failed
			// after writing): its first moment stands.
			_, first, err := c.readRetired(ctx, n)
			if err != nil {
				return nil, fmt.Errorf("%w: %v", errUnavailable, err)
			}
			ch.replaced[fp] = first
		default:
			return nil, fmt.Errorf("%w: retired hpke key record: %v", errUnavailable, err)
		}
	}
	return ch, nil
}

// adoptKeys applies a change recordReplacedKeys prepared, once the
// chain's version is recorded, and logs it.
func (c *Custodian) adoptKeys(ch *keyChange, version uint64) {
	if ch == nil {
		return
	}
	c.keys.mu.Lock()
	if ch.held != nil {
		c.keys.held = ch.held
	}
	c.keys.inForce = ch.inForce
	for fp, at := range ch.replaced {
		c.keys.retired[fp] = at
	}
	c.keys.mu.Unlock()
	for fp, at := range ch.replaced {
		c.log.Info("hpke key replaced", "custodian", c.cfg.Name, "hpke_key", fp, "roster_version", version,
			"replaced_at", shares.FormatTime(at), "opens_until", shares.FormatTime(at.Add(c.cfg.HPKEGrace.Duration)))
	}
	c.logKeyInForce("hpke key in force", version)
}

// logKeyInForce logs msg with the key in force and the keys within grace,
// as an error when this custodian does not hold the key in force: every
// deposit sealed to it is then refused.
func (c *Custodian) logKeyInForce(msg string, version uint64, attrs ...any) {
	_, held := c.keys.inForceKey()
	c.keys.mu.RLock()
	inForce := c.keys.inForce
	c.keys.mu.RUnlock()
	attrs = append([]any{"custodian", c.cfg.Name, "roster_version", version, "hpke_key", cmp.Or(inForce, notListed),
		"hpke_keys_in_grace", c.keys.withinGrace(c.now(), c.cfg.HPKEGrace.Duration)}, attrs...)
	switch {
	case inForce == "":
		c.log.Warn(msg+"; the roster lists no hpke key for this custodian: only keys within grace open deposits", attrs...)
	case !held:
		c.log.Error(msg+"; the roster lists an hpke key this custodian does not hold: deposits sealed to it are refused", attrs...)
	default:
		c.log.Info(msg, attrs...)
	}
}

// RotateHPKE makes a new HPKE key pair for the custodian cfg configures,
// stores it wrapped by the custodian's Transit key or HSM, write-once, at
// hpke-keys/<unix-nanos>, and returns the custodian's public keys with the
// new HPKE key: its roster entry for the admins' proposal. Nothing changes
// in service until a roster version listing the key is adopted and
// reaches the custodian (a push, or a release's chain); the custodian
// reads the key from its store then, without a restart.
func RotateHPKE(ctx context.Context, cfg Config, log *slog.Logger) (wire.CustodianInfo, error) {
	c, err := open(ctx, cfg, log, nil, false)
	if err != nil {
		return wire.CustodianInfo{}, err
	}
	defer c.Close()
	priv, wrapped, err := newWrappedHPKE(ctx, cfg.Name, c.wrapper)
	if err != nil {
		return wire.CustodianInfo{}, err
	}
	pub := seal.PublicKeyOf(priv)
	for range 3 {
		at := c.now()
		err = c.store.putOnce(ctx, c.store.path(hpkeKeysDir, fmt.Sprintf("%020d", at.UnixNano())), map[string]any{
			"hpke_kem_id": int(pub.KEMID), "hpke_wrapped": string(wrapped), "fingerprint": pub.Fingerprint(),
			"created_at": shares.FormatTime(at)})
		if !errors.Is(err, errExists) {
			break
		}
	}
	if err != nil {
		return wire.CustodianInfo{}, fmt.Errorf("custodian: store hpke key: %w", err)
	}
	c.log.Info("hpke key made; nothing changes until a roster version lists it", "custodian", cfg.Name, "hpke_key", pub.Fingerprint())
	return wire.CustodianInfo{Name: cfg.Name, HPKEKey: pub, SigningKey: c.id.publicSigningKey()}, nil
}

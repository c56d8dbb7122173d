package custodian

import (
	"context"
	"crypto/ed25519"
	"crypto/hpke"
	"errors"
	"fmt"

	"github.com/mediatorhq/mediator/seal"
)

// identity is a custodian's key pairs: HPKE (ML-KEM-768+X25519) to receive
// shares, Ed25519 to sign receipts. At rest they exist only wrapped by the
// custodian's Transit key or HSM, in its own store.
type identity struct {
	hpke    hpke.PrivateKey
	hpkePub seal.PublicKey
	sign    ed25519.PrivateKey
}

// identityContext binds a wrapped private key to its custodian and use.
func identityContext(name, use string) []byte {
	return []byte("mediator-custodian-identity-v1\n" + name + "\n" + use)
}

// loadIdentity unwraps the custodian's keys from its store, making and
// storing them (write-once) on first start. Two processes starting at once
// agree: the loser of the write reads the winner's keys.
func loadIdentity(ctx context.Context, name string, st *store, w Wrapper) (*identity, error) {
	for range 2 {
		sec, err := st.get(ctx, st.path("identity"))
		if err == nil {
			return openIdentity(ctx, name, sec.Data, w)
		}
		if !errors.Is(err, errNoRecord) {
			return nil, fmt.Errorf("custodian: read identity: %w", err)
		}
		data, err := newIdentity(ctx, name, w)
		if err != nil {
			return nil, err
		}
		if err := st.putOnce(ctx, st.path("identity"), data); err != nil && !errors.Is(err, errExists) {
			return nil, fmt.Errorf("custodian: store identity: %w", err)
		}
	}
	return nil, errors.New("custodian: identity could not be stored or read")
}

// newIdentity makes fresh key pairs and returns them wrapped.
func newIdentity(ctx context.Context, name string, w Wrapper) (map[string]any, error) {
	kem := hpke.MLKEM768X25519()
	_, wrappedHPKE, err := newWrappedHPKE(ctx, name, w)
	if err != nil {
		return nil, err
	}
	_, signKey, err := ed25519.GenerateKey(nil)
	if err != nil {
		return nil, fmt.Errorf("custodian: signing key: %w", err)
	}
	seed := signKey.Seed()
	defer clear(seed)
	defer clear(signKey)
	wrappedSign, err := w.Wrap(ctx, identityContext(name, "ed25519"), seed)
	if err != nil {
		return nil, fmt.Errorf("custodian: wrap signing key: %w", err)
	}
	return map[string]any{
		"hpke_kem_id":     int(kem.ID()),
		"hpke_wrapped":    string(wrappedHPKE),
		"ed25519_wrapped": string(wrappedSign),
	}, nil
}

// openIdentity unwraps stored key pairs.
func openIdentity(ctx context.Context, name string, data map[string]any, w Wrapper) (*identity, error) {
	wrappedHPKE, _ := data["hpke_wrapped"].(string)
	wrappedSign, _ := data["ed25519_wrapped"].(string)
	if wrappedHPKE == "" || wrappedSign == "" {
		return nil, errors.New("custodian: the stored identity is incomplete")
	}
	priv, err := unwrapHPKE(ctx, name, w, wrappedHPKE)
	if err != nil {
		return nil, err
	}
	seed, err := w.Unwrap(ctx, identityContext(name, "ed25519"), []byte(wrappedSign))
	if err != nil {
		return nil, fmt.Errorf("custodian: unwrap signing key: %w", err)
	}
	defer clear(seed)
	if len(seed) != ed25519.SeedSize {
		return nil, errors.New("custodian: the stored signing key is malformed")
	}
	return &identity{hpke: priv, hpkePub: seal.PublicKeyOf(priv), sign: ed25519.NewKeyFromSeed(seed)}, nil
}

// rewrapIdentity moves the wrapped private keys, those in identity and
// every HPKE key under hpke-keys/, to the wrapper's current key, and
// reports how many records moved and how many were already under it; on
// an error it reports nothing (records moved before it stay moved).
func rewrapIdentity(ctx context.Context, name string, st *store, w Wrapper) (moved, unchanged int, err error) {
	type wrappedKeys struct {
		path   string
		fields map[string]string // field to its use
	}
	records := []wrappedKeys{{"identity", map[string]string{"hpke_wrapped": "hpke", "ed25519_wrapped": "ed25519"}}}
	names, err := st.list(ctx, hpkeKeysDir)
	if err != nil {
		return 0, 0, err
	}
	for _, n := range names {
		records = append(records, wrappedKeys{hpkeKeysDir + "/" + n, map[string]string{"hpke_wrapped": "hpke"}})
	}
	for _, r := range records {
		ok, err := rewrapRecord(ctx, name, st, w, r.path, r.fields)
		if err != nil {
			return 0, 0, fmt.Errorf("custodian: rewrap %s: %w", r.path, err)
		}
		if ok {
			moved++
		} else {
			unchanged++
		}
	}
	return moved, unchanged, nil
}

// rewrapRecord moves the wrapped keys of the record at p (each field to
// its use) to the wrapper's current key, and reports whether they moved.
func rewrapRecord(ctx context.Context, name string, st *store, w Wrapper, p string, fields map[string]string) (bool, error) {
	sec, err := st.get(ctx, st.path(p))
	if err != nil {
		return false, err
	}
	data := make(map[string]any, len(sec.Data))
	changed := false
	for k, v := range sec.Data {
		data[k] = v
	}
	for field, use := range fields {
		old, _ := sec.Data[field].(string)
		fresh, moved, err := w.Rewrap(ctx, identityContext(name, use), []byte(old))
		if err != nil {
			return false, fmt.Errorf("%s: %w", field, err)
		}
		if moved {
			data[field] = string(fresh)
			changed = true
		}
	}
	if !changed {
		return false, nil
	}
	if err := st.replace(ctx, st.path(p), sec, data); err != nil {
		return false, err
	}
	return true, nil
}

// newWrappedHPKE makes a fresh HPKE key pair (ML-KEM-768+X25519) and
// returns it, and its private key wrapped under identityContext(name,
// "hpke"): every HPKE private key of a custodian, its first (in identity)
// and those rotate-hpke makes (hpke-keys/), is wrapped the same way.
func newWrappedHPKE(ctx context.Context, name string, w Wrapper) (hpke.PrivateKey, []byte, error) {
	priv, err := hpke.MLKEM768X25519().GenerateKey()
	if err != nil {
		return nil, nil, fmt.Errorf("custodian: hpke key: %w", err)
	}
	raw, err := priv.Bytes()
	if err != nil {
		return nil, nil, fmt.Errorf("custodian: hpke key: %w", err)
	}
	defer clear(raw)
	wrapped, err := w.Wrap(ctx, identityContext(name, "hpke"), raw)
	if err != nil {
		return nil, nil, fmt.Errorf("custodian: wrap hpke key: %w", err)
	}
	return priv, wrapped, nil
}

// unwrapHPKE unwraps an HPKE private key wrapped by newWrappedHPKE.
func unwrapHPKE(ctx context.Context, name string, w Wrapper, wrapped string) (hpke.PrivateKey, error) {
	raw, err := w.Unwrap(ctx, identityContext(name, "hpke"), []byte(wrapped))
	if err != nil {
		return nil, fmt.Errorf("custodian: unwrap hpke key: %w", err)
	}
	defer clear(raw)
	priv, err := hpke.MLKEM768X25519().NewPrivateKey(raw)
	if err != nil {
		return nil, fmt.Errorf("custodian: hpke key: %w", err)
	}
	return priv, nil
}

// publicSigningKey is the base64 text of the receipt-signing public key.
func (id *identity) publicSigningKey() ed25519.PublicKey {
	return id.sign.Public().(ed25519.PublicKey)
}

package custodian

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	vaultapi "github.com/hashicorp/vault/api"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/mediatorhq/mediator/witness"
)

// WitnessConfig makes the custodian a witness of the mediator's audit log
// (C2SP tlog-witness): the logs it cosigns, each by its origin and the
// note verifier keys of its checkpoints, pinned here like the roster
// genesis.
type WitnessConfig struct {
	Logs []WitnessLog `json:"logs"`
}

// WitnessLog is one log the custodian witnesses.
type WitnessLog struct {
	Origin       string   `json:"origin"`
	VerifierKeys []string `json:"verifier_keys"`
}

// openWitness makes the custodian's witness: it cosigns with its receipt
// key under the cosignature/v1 domain (C2SP tlog-cosignature), keeps the
// latest checkpoint it cosigned per log in its own store, and is named by
// the custodian's name.
func (c *Custodian) openWitness() (*witness.Witness, string, error) {
	var logs []witness.Log
	for _, l := range c.cfg.Witness.Logs {
		wl := witness.Log{Origin: l.Origin}
		for _, vk := range l.VerifierKeys {
			v, err := note.NewVerifier(vk)
			if err != nil || v.Name() != l.Origin {
				return nil, "", fmt.Errorf("custodian: witness: log %q: verifier key %q is not a note verifier key named by its origin", l.Origin, vk)
			}
			wl.Verifiers = append(wl.Verifiers, v)
		}
		if len(wl.Verifiers) == 0 {
			return nil, "", fmt.Errorf("custodian: witness: log %q has no verifier key", l.Origin)
		}
		logs = append(logs, wl)
	}
	signer, vkey, err := witness.NewSigner(c.cfg.Name, c.id.sign.Seed())
	if err != nil {
		return nil, "", fmt.Errorf("custodian: witness: %w", err)
	}
	return witness.New(signer, witnessStore{c.store}, logs...), vkey, nil
}

// witnessStore keeps each log's latest cosigned checkpoint in the
// custodian's KV store, at witness/<hex SHA-256 of the origin>, updated
// with check-and-set so that two requests can never both move it.
type witnessStore struct{ s *store }

func (w witnessStore) path(origin string) string {
	sum := sha256.Sum256([]byte(origin))
	return w.s.path("witness", hex.EncodeToString(sum[:]))
}

func (w witnessStore) read(ctx context.Context, origin string) (witness.Checkpoint, *vaultapi.KVSecret, error) {
	sec, err := w.s.get(ctx, w.path(origin))
	if errors.Is(err, errNoRecord) {
		return witness.Checkpoint{}, nil, nil
	}
	if err != nil {
		return witness.Checkpoint{}, nil, err
	}
	size, err := intOf(sec.Data["size"])
	root, rerr := base64.StdEncoding.DecodeString(fmt.Sprint(sec.Data["root"]))
	if err != nil || rerr != nil || len(root) != tlog.HashSize || sec.Data["origin"] != origin {
		return witness.Checkpoint{}, nil, fmt.Errorf("custodian: witness record of %q unreadable", origin)
	}
	return witness.Checkpoint{Size: size, Root: tlog.Hash(root)}, sec, nil
}

// Latest implements witness.Store.
func (w witnessStore) Latest(ctx context.Context, origin string) (witness.Checkpoint, bool, error) {
	c, sec, err := w.read(ctx, origin)
	return c, sec != nil, err
}

// Put implements witness.Store.
func (w witnessStore) Put(ctx context.Context, origin string, prev *witness.Checkpoint, next witness.Checkpoint) error {
	cur, sec, err := w.read(ctx, origin)
	if err != nil {
		return err
	}
	if (sec != nil) != (prev != nil) || (sec != nil && cur != *prev) {
		return witness.ErrChanged
	}
	// The record also keeps the last cosigned checkpoints, so that a
	// release can prove its request and approvals against any recent one.
	history := []any{fmt.Sprintf("%d:%s", next.Size, base64.StdEncoding.EncodeToString(next.Root[:]))}
	if sec != nil {
		old, _ := sec.Data["history"].([]any)
		history = append(history, old[:min(len(old), witnessHistory-1)]...)
	}
	data := map[string]any{"origin": origin, "size": next.Size, "root": base64.StdEncoding.EncodeToString(next.Root[:]), "history": history}
	if sec == nil {
		err = w.s.putOnce(ctx, w.path(origin), data)
	} else {
		err = w.s.replace(ctx, w.path(origin), sec, data)
	}
	if errors.Is(err, errExists) || errors.Is(err, errChanged) {
		return witness.ErrChanged
	}
	return err
}

// intOf reads a whole number from a decoded KV value.
func intOf(v any) (int64, error) {
	switch n := v.(type) {
	case json.Number:
		return n.Int64()
	case float64:
		if n == float64(int64(n)) {
			return int64(n), nil
		}
	}
	return 0, fmt.Errorf("not a whole number: %v", v)
}

// witnessHistory is how many recent cosigned checkpoints a custodian keeps
// per log: a release's proofs may be against any of them.
const witnessHistory = 256

// cosignedRoot returns the root of the checkpoint of size size the
// custodian cosigned for origin, if it is among the recent ones it keeps.
func (w witnessStore) cosignedRoot(ctx context.Context, origin string, size int64) (tlog.Hash, bool, error) {
	_, sec, err := w.read(ctx, origin)
	if err != nil || sec == nil {
		return tlog.Hash{}, false, err
	}
	history, _ := sec.Data["history"].([]any)
	for _, h := range history {
		n, b64, _ := strings.Cut(fmt.Sprint(h), ":")
		if n != strconv.FormatInt(size, 10) {
			continue
		}
		root, err := base64.StdEncoding.DecodeString(b64)
		if err != nil || len(root) != tlog.HashSize {
			return tlog.Hash{}, false, fmt.Errorf("custodian: witness record of %q unreadable", origin)
		}
		return tlog.Hash(root), true, nil
	}
	return tlog.Hash{}, false, nil
}

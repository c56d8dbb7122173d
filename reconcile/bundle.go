package reconcile

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/mediatorhq/mediator/audit"
)

// kindDeposit is the log's entry kind of a deposit (escrow.KindDeposit).
const kindDeposit = "escrow.deposit"

// FromBundle verifies an evidence bundle of escrow.deposit entries
// (`GET /v1/audit/export?kind=escrow.deposit`) with the log's verifier
// keys, and returns the deposits it holds. A bundle that does not verify
// is refused whole: no entry of it is taken on the mediator's word.
func FromBundle(bundle []byte, verifiers ...note.Verifier) ([]Logged, error) {
	rep, err := audit.VerifyBundle(bytes.NewReader(bundle), verifiers...)
	if err != nil {
		return nil, fmt.Errorf("reconcile: the log's bundle: %w", err)
	}
	if !rep.OK() {
		return nil, fmt.Errorf("reconcile: the log's bundle does not verify: %s", strings.Join(rep.Problems, "; "))
	}
	var out []Logged
	sc := bufio.NewScanner(bytes.NewReader(bundle))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var line struct {
			Type string `json:"type"`
			Leaf []byte `json:"leaf"` // what the inclusion proof covers
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return nil, fmt.Errorf("reconcile: the log's bundle: %w", err)
		}
		if line.Type != "entry" {
			continue
		}
		var r struct {
			Kind       string `json:"kind"`
			EscrowID   string `json:"escrow_id"`
			IngestedAt string `json:"ingested_at"`
			Shares     []struct {
				Custodian    string `json:"custodian"`
				SealedSHA256 string `json:"sealed_sha256"`
			} `json:"shares"`
		}
		if err := json.Unmarshal(line.Leaf, &r); err != nil {
			return nil, fmt.Errorf("reconcile: the log's bundle: a leaf: %w", err)
		}
		if r.Kind != kindDeposit {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, r.IngestedAt)
		if err != nil || r.EscrowID == "" {
			return nil, errors.New("reconcile: an escrow.deposit entry without its escrow id or time")
		}
		l := Logged{EscrowID: r.EscrowID, At: at, Sealed: map[string]string{}}
		for _, s := range r.Shares {
			l.Sealed[s.Custodian] = s.SealedSHA256
		}
		out = append(out, l)
	}
	return out, sc.Err()
}

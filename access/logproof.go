package access

import (
	"context"
	"fmt"
	"slices"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/mediatorhq/mediator/audit"
	"github.com/mediatorhq/mediator/wire"
)

// LogProof is what a release needs of the audit log for custodians that
// witness it (audit.Log): the largest checkpoint each cosigned, entries
// and inclusion proofs.
type LogProof interface {
	// WitnessNames are the witnesses of the log's policy.
	WitnessNames() []string
	CosignedSize(ctx context.Context, witness string) (int64, error)
	Entry(ctx context.Context, seq int64) (audit.StoredEntry, error)
	InclusionProof(ctx context.Context, seq, treeSize int64) (tlog.RecordProof, error)
}

// witnessWait bounds how long a release waits for the custodians that
// witness the log to cosign a checkpoint covering its request and
// approvals (a checkpoint is signed every second and cosigned right away).
const witnessWait = 5 * time.Second

// logEvidence proves, to each custodian that witnesses the log, that the
// request and its approvals are in it: their entries with inclusion proofs
// under the largest checkpoint that custodian cosigned. It waits up to
// witnessWait for a cosigned checkpoint to cover the newest of them. A
// custodian that is not among the log's witnesses, or whose cosigned
// checkpoint does not cover them in time, gets no evidence (and will
// refuse, saying why).
func (s *Service) logEvidence(ctx context.Context, r Request, custodians []string) (map[string]*wire.LogEvidence, error) {
	if s.logProof == nil {
		return nil, nil
	}
	approvals, err := s.approvals.Approvals(ctx, r.ID)
	if err != nil {
		return nil, err
	}
	seqs := []int64{r.AuditSeq}
	newest := max(r.AuditSeq, 0)
	for _, a := range approvals {
		seqs = append(seqs, a.AuditSeq)
		newest = max(newest, a.AuditSeq)
	}
	sizes, err := s.cosignedSizes(ctx, custodians, newest)
	if err != nil {
		return nil, err
	}
	leaves := map[int64][]byte{}
	for _, q := range seqs {
		e, err := s.logProof.Entry(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("%w: audit entry %d: %v", ErrUnavailable, q, err)
		}
		leaves[q] = e.Leaf
	}
	out := map[string]*wire.LogEvidence{}
	bySize := map[int64]*wire.LogEvidence{}
	for name, n := range sizes {
		if n <= newest {
			continue // never cosigned, or not yet far enough: it will refuse, and say so
		}
		if bySize[n] == nil {
			if bySize[n], err = s.inclusion(ctx, seqs, leaves, n); err != nil {
				return nil, err
			}
		}
		out[name] = bySize[n]
	}
	return out, nil
}

// cosignedSizes returns, for each of custodians that witnesses the log,
// the size of the largest checkpoint it cosigned, waiting up to
// witnessWait for it to pass newest.
func (s *Service) cosignedSizes(ctx context.Context, custodians []string, newest int64) (map[string]int64, error) {
	sizes := map[string]int64{}
	deadline := s.now().Add(witnessWait)
	for _, name := range custodians {
		if !slices.Contains(s.logProof.WitnessNames(), name) {
			continue // not a witness of the log: it cannot check, and gets nothing
		}
		for {
			n, err := s.logProof.CosignedSize(ctx, name)
			if err != nil {
				return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
			}
			if n > newest || !s.now().Before(deadline) {
				sizes[name] = n
				break
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return sizes, nil
}

// inclusion returns the entries seqs, with their leaves, each with its
// inclusion proof in the tree of size n.
func (s *Service) inclusion(ctx context.Context, seqs []int64, leaves map[int64][]byte, n int64) (*wire.LogEvidence, error) {
	ev := &wire.LogEvidence{TreeSize: n}
	for _, q := range seqs {
		proof, err := s.logProof.InclusionProof(ctx, q, n)
		if err != nil {
			return nil, fmt.Errorf("%w: inclusion proof of %d: %v", ErrUnavailable, q, err)
		}
		e := wire.LogEntry{Seq: q, Leaf: leaves[q]}
		for _, h := range proof {
			e.Proof = append(e.Proof, h[:])
		}
		ev.Entries = append(ev.Entries, e)
	}
	return ev, nil
}

package custodian

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/mediatorhq/mediator/wire"
)

// testTree is a small audit log in memory.
type testTree struct {
	hashes map[int64]tlog.Hash
	leaves [][]byte
}

func (tr *testTree) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		out[i] = tr.hashes[x]
	}
	return out, nil
}

func (tr *testTree) add(t *testing.T, leaf string) int64 {
	seq := int64(len(tr.leaves))
	hs, err := tlog.StoredHashes(seq, []byte(leaf), tr)
	if err != nil {
		t.Fatal(err)
	}
	for j, h := range hs {
		tr.hashes[tlog.StoredHashIndex(0, seq)+int64(j)] = h
	}
	tr.leaves = append(tr.leaves, []byte(leaf))
	return seq
}

func (tr *testTree) evidence(t *testing.T, seqs ...int64) (*wire.LogEvidence, tlog.Hash) {
	size := int64(len(tr.leaves))
	root, _ := tlog.TreeHash(size, tr)
	ev := &wire.LogEvidence{TreeSize: size}
	for _, q := range seqs {
		p, err := tlog.ProveRecord(size, q, tr)
		if err != nil {
			t.Fatal(err)
		}
		e := wire.LogEntry{Seq: q, Leaf: tr.leaves[q]}
		for _, h := range p {
			e.Proof = append(e.Proof, h[:])
		}
		ev.Entries = append(ev.Entries, e)
	}
	return ev, root
}

// TestCheckLogged: the request and each approval count only with an
// included entry recording exactly them.
func TestCheckLogged(t *testing.T) {
	tr := &testTree{hashes: map[int64]tlog.Hash{}}
	sig := []byte(strings.Repeat("s", 64))
	other := []byte(strings.Repeat("o", 64))
	tr.add(t, `{"kind":"message","seq":0}`)
	req := tr.add(t, `{"digest":"sha256:d","kind":"access.request","request_id":"r1","seq":1}`)
	lena := tr.add(t, fmt.Sprintf(`{"approver_id":"lena","decision":"approve","digest":"sha256:d","kind":"access.approval","request_id":"r1","seq":2,"signature":%q}`, base64.StdEncoding.EncodeToString(sig)))
	samOther := tr.add(t, fmt.Sprintf(`{"approver_id":"sam","decision":"approve","digest":"sha256:d","kind":"access.approval","request_id":"r1","seq":3,"signature":%q}`, base64.StdEncoding.EncodeToString(other)))
	approvals := []wire.EvidenceApproval{{ApproverID: "lena", Decision: "approve", Signature: sig}, {ApproverID: "sam", Decision: "approve", Signature: sig}}

	ev, root := tr.evidence(t, req, lena, samOther)
	logged, reason := checkLogged(root, ev, "r1", "sha256:d", approvals)
	if reason != "" || !logged[0] || logged[1] {
		t.Fatalf("logged %v, reason %q: want lena's only (sam's logged signature is another)", logged, reason)
	}
	if _, reason := checkLogged(root, ev, "r2", "sha256:d", approvals); !strings.Contains(reason, "the request is not in the audit log") {
		t.Fatalf("another request: %q", reason)
	}
	noReq, _ := tr.evidence(t, lena)
	if _, reason := checkLogged(root, noReq, "r1", "sha256:d", approvals); !strings.Contains(reason, "the request is not in the audit log") {
		t.Fatalf("without the request's entry: %q", reason)
	}
	forged, _ := tr.evidence(t, req, lena)
	forged.Entries[1].Leaf = []byte(strings.Replace(string(forged.Entries[1].Leaf), "lena", "lana", 1))
	if _, reason := checkLogged(root, forged, "r1", "sha256:d", approvals); !strings.Contains(reason, "is not in the log") {
		t.Fatalf("an edited leaf: %q", reason)
	}
	var other32 tlog.Hash
	other32[0] = 1
	if _, reason := checkLogged(other32, ev, "r1", "sha256:d", approvals); !strings.Contains(reason, "is not in the log") {
		t.Fatalf("another root: %q", reason)
	}
}

package custodian

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/mediatorhq/mediator/wire"
)

// loggedLeaf is what a custodian reads of an audit entry's leaf.
type loggedLeaf struct {
	Seq        int64  `json:"seq"`
	Kind       string `json:"kind"`
	RequestID  string `json:"request_id"`
	Digest     string `json:"digest"`
	ApproverID string `json:"approver_id"`
	Decision   string `json:"decision"`
	Signature  string `json:"signature"`
}

// The audit entry kinds a release must find in the log (access.KindRequest,
// access.KindApproval).
const (
	kindRequest  = "access.request"
	kindApproval = "access.approval"
)

// checkLogged checks that every entry of lg is in the tree of lg.TreeSize
// entries whose root is root (a checkpoint this custodian cosigned), that
// one of them is the request with this id and digest, and reports which
// approvals have an entry recording exactly them (approver, decision and
// signature). reason is non-empty when the release must be refused as a
// whole: a bad proof, or the request not in the log.
func checkLogged(root tlog.Hash, lg *wire.LogEvidence, requestID, digest string, approvals []wire.EvidenceApproval) (logged []bool, reason string) {
	logged = make([]bool, len(approvals))
	requestLogged := false
	for _, e := range lg.Entries {
		proof := make(tlog.RecordProof, len(e.Proof))
		for i, h := range e.Proof {
			if len(h) != tlog.HashSize {
				return logged, fmt.Sprintf("the inclusion proof of audit entry %d is malformed", e.Seq)
			}
			proof[i] = tlog.Hash(h)
		}
		if err := tlog.CheckRecord(proof, lg.TreeSize, root, e.Seq, tlog.RecordHash(e.Leaf)); err != nil {
			return logged, fmt.Sprintf("audit entry %d is not in the log this custodian cosigned at size %d", e.Seq, lg.TreeSize)
		}
		var l loggedLeaf
		dec := json.NewDecoder(bytes.NewReader(e.Leaf))
		if err := dec.Decode(&l); err != nil || l.Seq != e.Seq {
			return logged, fmt.Sprintf("audit entry %d is not a leaf of that seq", e.Seq)
		}
		switch {
		case l.Kind == kindRequest && l.RequestID == requestID && l.Digest == digest:
			requestLogged = true
		case l.Kind == kindApproval && l.RequestID == requestID && l.Digest == digest:
			for i, a := range approvals {
				if a.ApproverID == l.ApproverID && a.Decision == l.Decision && l.Signature == base64.StdEncoding.EncodeToString(a.Signature) {
					logged[i] = true
				}
			}
		}
	}
	if !requestLogged {
		return logged, "the request is not in the audit log under a checkpoint this custodian cosigned"
	}
	return logged, ""
}

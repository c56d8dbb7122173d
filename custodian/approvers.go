package custodian

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/shares"
)

// Approvers are the approvers a custodian trusts, from its own pinned file:
// whose signatures count, with which roles. The mediator's word on who is
// an approver counts for nothing here.
type Approvers struct {
	byID map[string]Approver
}

// Approver is one trusted approver.
type Approver struct {
	ID    string              `json:"id"`
	Roles []string            `json:"roles"`
	Keys  []ed25519.PublicKey `json:"keys"`
	// Active false keeps the approver on file with their signatures
	// refused.
	Active bool `json:"active"`
}

// ParseApprovers reads an approvers file:
// {"approvers":[{"id":"lena","roles":["legal"],"keys":["<base64 Ed25519 public key>"],"active":true}]}.
func ParseApprovers(b []byte) (*Approvers, error) {
	var f struct {
		Approvers []Approver `json:"approvers"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("custodian: approvers file: %w", err)
	}
	out := &Approvers{byID: make(map[string]Approver, len(f.Approvers))}
	for _, a := range f.Approvers {
		if !shares.ValidID(a.ID) || len(a.Roles) == 0 || len(a.Keys) == 0 {
			return nil, fmt.Errorf("custodian: approvers file: approver %q needs an id, roles and keys", a.ID)
		}
		if _, dup := out.byID[a.ID]; dup {
			return nil, fmt.Errorf("custodian: approvers file: approver %q listed twice", a.ID)
		}
		for _, k := range a.Keys {
			if len(k) != ed25519.PublicKeySize {
				return nil, fmt.Errorf("custodian: approvers file: approver %q has a key that is not a 32-byte Ed25519 public key", a.ID)
			}
		}
		out.byID[a.ID] = a
	}
	return out, nil
}

// Verify reports whether approver id is trusted and active, and sig is
// their signature over the approval message for this request and digest
// with one of their keys. It returns the approver's roles from the file.
func (a *Approvers) Verify(id, requestID, digest, decision string, sig []byte) (roles []string, verified, active bool) {
	ap, ok := a.byID[id]
	if !ok {
		return nil, false, false
	}
	for _, k := range ap.Keys {
		if approval.Verify(k, requestID, digest, decision, id, sig) {
			return slices.Clone(ap.Roles), true, ap.Active
		}
	}
	return slices.Clone(ap.Roles), false, ap.Active
}

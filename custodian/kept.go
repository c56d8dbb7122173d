package custodian

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"

	"github.com/google/uuid"

	"github.com/mediatorhq/mediator/wire"
)

// keptEntryBytes bounds the encoded answers of one kept entry: well under
// the 512 KiB a Consul backend and the 1 MiB integrated storage (Raft)
// allow one Vault entry by default, and far under Vault's 32 MiB request
// limit. With ML-KEM a share's answer is about 2.5 KB, so an entry holds
// about 100 and a release call of 1,000 shares (the mediator's chunk)
// about 10 entries, one of 10,000 (the most a call answers) about 100.
const keptEntryBytes = 256 << 10

// keptEntry names one kept entry of a release record and the first escrow
// id, in byte order, whose answer it holds.
type keptEntry struct {
	Name  string `json:"name"`
	First string `json:"first"`
}

// keptEntries are a release record's kept entries in the order of their
// first escrow ids. Entry k holds the answers of the record's escrow ids
// from its First up to, not including, entry k+1's.
type keptEntries []keptEntry

// holding returns the name of the entry that holds id's answer, if any.
// It costs O(log n) comparisons.
func (ks keptEntries) holding(id string) string {
	k := sort.Search(len(ks), func(k int) bool { return ks[k].First > id }) - 1
	if k < 0 {
		return ""
	}
	return ks[k].Name
}

// keptField is one answer as a kept entry holds it: a field named by its
// escrow id, its value the answer's JSON.
type keptField struct {
	id   string
	json string
}

// splitKept cuts fields, in escrow id order, into entries of at most max
// bytes of values each (an answer larger than max alone in its entry).
func splitKept(fields []keptField, max int) [][]keptField {
	var out [][]keptField
	size := 0
	for i, f := range fields {
		if i == 0 || size+len(f.json) > max {
			out = append(out, nil)
			size = 0
		}
		out[len(out)-1] = append(out[len(out)-1], f)
		size += len(f.json)
	}
	return out
}

// keep writes answers (each with a sealed share and receipt), once, as
// new kept entries of request's release records, at most
// releaseParallelism writes at a time, and returns them for the record to
// name. If any write fails, the entries written are deleted again (as far
// as the store allows) and the error returned: nothing names them, so an
// entry left behind is never answered from.
func (s *store) keep(ctx context.Context, requestID string, answers []wire.CustodianShare) (keptEntries, error) {
	fields := make([]keptField, len(answers))
	for i, a := range answers {
		b, err := json.Marshal(a)
		if err != nil {
			return nil, fmt.Errorf("custodian: encode the answer of %s: %w", a.EscrowID, err)
		}
		fields[i] = keptField{id: a.EscrowID, json: string(b)}
	}
	slices.SortFunc(fields, func(a, b keptField) int { return cmp.Compare(a.id, b.id) })
	parts := splitKept(fields, keptEntryBytes)
	entries := make(keptEntries, len(parts))
	errs := make([]error, len(parts))
	var wg sync.WaitGroup
	sem := make(chan struct{}, releaseParallelism)
	for k, part := range parts {
		entries[k] = keptEntry{Name: uuid.NewString(), First: part[0].id}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			data := make(map[string]any, len(part))
			for _, f := range part {
				data[f.id] = f.json
			}
			errs[k] = s.putOnce(ctx, s.keptPath(requestID, entries[k].Name), data)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		var written keptEntries
		for k, e := range entries {
			if errs[k] == nil {
				written = append(written, e)
			}
		}
		s.drop(ctx, requestID, written)
		return nil, fmt.Errorf("custodian: keep the answers of a release: %w", err)
	}
	return entries, nil
}

// drop deletes kept entries that no release record names, with every
// version. It is best effort: an entry left behind is never answered
// from, since only a record leads to one.
func (s *store) drop(ctx context.Context, requestID string, entries keptEntries) {
	for _, e := range entries {
		_ = s.kv.DeleteMetadata(ctx, s.keptPath(requestID, e.Name))
	}
}

// kept reads the answers held in kept entry name of request, by escrow
// id. An answer that does not decode is left out.
func (s *store) kept(ctx context.Context, requestID, name string) (map[string]wire.CustodianShare, error) {
	if !validUUID(name) {
		return nil, errNoRecord
	}
	sec, err := s.get(ctx, s.keptPath(requestID, name))
	if err != nil {
		return nil, err
	}
	out := make(map[string]wire.CustodianShare, len(sec.Data))
	for id, v := range sec.Data {
		raw, _ := v.(string)
		var a wire.CustodianShare
		if json.Unmarshal([]byte(raw), &a) == nil && a.EscrowID == id {
			out[id] = a
		}
	}
	return out, nil
}

func (s *store) keptPath(requestID, name string) string {
	return s.path("released", requestID, "kept", name)
}

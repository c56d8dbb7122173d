package custodian

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"sync"
	"time"

	"github.com/mediatorhq/mediator/shares"
)

// releaseCacheRequests is how many requests' release records a store
// remembers; the least recently used is forgotten first. A forgotten
// request is read again from its records when next asked about.
const releaseCacheRequests = 8

// releaseCache remembers what a store read of each request's release
// records. Release records are written once and never change, so a
// release call reads only the records written since the store last looked
// (by this process or another sharing the store), never every record of
// the request again: the fixed work of a call no longer grows with what
// was released before it.
type releaseCache struct {
	mu        sync.Mutex
	byRequest map[string]*requestReleases
	recent    []string // request ids, least recently used first
}

// requestReleases is what the release records of one request read so far
// say. Its mutex serialises the reads that add to it.
type requestReleases struct {
	mu     sync.Mutex
	read   map[string]bool // the record names merged
	first  time.Time       // the earliest record's time
	shares map[string]releasedShare
}

func newReleaseCache() *releaseCache {
	return &releaseCache{byRequest: map[string]*requestReleases{}}
}

// request returns what is remembered of requestID, making it the most
// recently used.
func (c *releaseCache) request(requestID string) *requestReleases {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i := slices.Index(c.recent, requestID); i >= 0 {
		c.recent = append(slices.Delete(c.recent, i, i+1), requestID)
		return c.byRequest[requestID]
	}
	if len(c.recent) >= releaseCacheRequests {
		delete(c.byRequest, c.recent[0])
		c.recent = slices.Delete(c.recent, 0, 1)
	}
	rr := &requestReleases{read: map[string]bool{}, shares: map[string]releasedShare{}}
	c.byRequest[requestID] = rr
	c.recent = append(c.recent, requestID)
	return rr
}

// released returns, of the escrow ids ids, those already released for
// request (a UUID), each with where its answer is kept, the number of
// release records the request has and the earliest one's time. It lists
// the request's records and reads only those it has not read before.
func (s *store) released(ctx context.Context, requestID string, ids []string) (releases, error) {
	names, err := s.list(ctx, path.Join("released", requestID))
	if err != nil {
		return releases{}, err
	}
	rr := s.releases.request(requestID)
	rr.mu.Lock()
	defer rr.mu.Unlock()
	for _, n := range names {
		if rr.read[n] {
			continue
		}
		r, err := s.releaseRecord(ctx, requestID, n)
		if err != nil {
			return releases{}, err
		}
		for id, h := range r.Receipts {
			rr.shares[id] = releasedShare{digest: r.RequestDigest, receipt: h, kept: r.Kept.holding(id)}
		}
		if at, err := time.Parse(shares.TimeLayout, r.At); err == nil && (rr.first.IsZero() || at.Before(rr.first)) {
			rr.first = at
		}
		rr.read[n] = true
	}
	out := releases{records: len(names), first: rr.first, shares: map[string]releasedShare{}}
	for _, id := range ids {
		if sh, ok := rr.shares[id]; ok {
			out.shares[id] = sh
		}
	}
	return out, nil
}

// releaseRecord reads release record name of request.
func (s *store) releaseRecord(ctx context.Context, requestID, name string) (releaseRecord, error) {
	sec, err := s.get(ctx, s.path("released", requestID, name))
	if err != nil {
		return releaseRecord{}, err
	}
	raw, _ := sec.Data["record"].(string)
	var r releaseRecord
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		return releaseRecord{}, fmt.Errorf("custodian: release record %s/%s is unreadable", requestID, name)
	}
	return r, nil
}

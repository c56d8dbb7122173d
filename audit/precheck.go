package audit

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/mediatorhq/mediator/idfilter"
)

// precheck is the part of an append's duplicate check that needs no
// sequencer lock, done by the caller before its entries queue, in
// parallel with other callers and with the transaction in flight: the
// entries' filter keys, and their ids looked up in every closed generation
// this process held a filter of at the time. A closed generation's entries
// never change, so what the precheck found, or ruled out, there still
// holds under the lock; only the current generation, and any generation
// that closed since, are left to the transaction. This keeps the work
// under the lock constant as the number of generations grows
// (docs/decisions.md, "The duplicate check probes one generation").
type precheck struct {
	// keys are the entries' filter keys, by entry; zero for an entry
	// without an event id.
	keys []idfilter.Key
	// covered are the closed generations checked: generation g if
	// covered[g].
	covered []bool
	// found are the entries logged in them with one of the ids.
	found map[idKey]logged
}

// checked reports whether the precheck looked for the ids in generation g.
func (p *precheck) checked(g int64) bool {
	return p != nil && g < int64(len(p.covered)) && p.covered[g]
}

// precheck returns entries' precheck, asking the database only about the
// ids a closed generation's filter cannot rule out, in one query on the
// pool, outside any transaction.
func (s *store) precheck(ctx context.Context, entries []Entry) (*precheck, error) {
	p := &precheck{keys: filterKeys(entries), found: map[idKey]logged{}}
	closed, err := s.filters.closedFilters()
	if err != nil {
		return nil, err
	}
	eventIDs, submitters, generations := closed.maybes(entries, p.keys)
	p.covered = closed.covered()
	if s.filters.onProbes != nil {
		s.filters.onProbes(0, int64(len(eventIDs)))
	}
	if len(eventIDs) == 0 {
		return p, nil
	}
	rows, err := s.pool.Query(ctx, sqlLoggedEventIDs, loggedEventIDsArgs(eventIDs, submitters, generations)...)
	if err != nil {
		return nil, fmt.Errorf("audit: look up event ids in closed generations: %w", err)
	}
	if err := collectLogged(rows, p.found); err != nil {
		return nil, err
	}
	return p, nil
}

// maybes returns the (event id, submitter, generation) triples of the
// distinct ids of entries, whose filter keys are keys, that a closed
// generation's filter in c cannot rule out.
func (c closedStack) maybes(entries []Entry, keys []idfilter.Key) (eventIDs, submitters []string, generations []int64) {
	var in []int
	seen := make(map[idKey]bool, len(entries))
	for i, e := range entries {
		k := idKey{e.Submitter, e.EventID}
		if e.EventID == "" || seen[k] {
			continue
		}
		seen[k] = true
		in = c.stack.AppendMaybes(in[:0], keys[i])
		for _, j := range in {
			eventIDs, submitters, generations = append(eventIDs, e.EventID), append(submitters, e.Submitter), append(generations, c.gens[j])
		}
	}
	return eventIDs, submitters, generations
}

// covered returns the generations c holds a filter of, as precheck.covered.
func (c closedStack) covered() []bool {
	if len(c.gens) == 0 {
		return nil
	}
	out := make([]bool, c.gens[len(c.gens)-1]+1)
	for _, g := range c.gens {
		out[g] = true
	}
	return out
}

// byEntry returns the filter keys of entries, made of requests of the
// given sizes, and the precheck of each entry's request: pre holds one
// precheck a request, or is nil when none was made (the keys are then
// computed here, and no entry has a precheck).
func byEntry(entries []Entry, requests []int, pre []*precheck) ([]idfilter.Key, []*precheck) {
	if pre == nil {
		return filterKeys(entries), nil
	}
	keys := make([]idfilter.Key, 0, len(entries))
	of := make([]*precheck, 0, len(entries))
	for i, n := range requests {
		keys = append(keys, pre[i].keys...)
		for range n {
			of = append(of, pre[i])
		}
	}
	return keys, of
}

// keepEarliest records l as k's entry in found unless found holds an
// earlier one.
func keepEarliest(found map[idKey]logged, k idKey, l logged) {
	if old, seen := found[k]; !seen || l.seq < old.seq {
		found[k] = l
	}
}

// filterKeys returns the filter key of each entry's event id in its
// submitter's namespace, zero for an entry without one.
func filterKeys(entries []Entry) []idfilter.Key {
	keys := make([]idfilter.Key, len(entries))
	for i, e := range entries {
		if e.EventID != "" {
			keys[i] = idfilter.KeyOf(e.Submitter, e.EventID)
		}
	}
	return keys
}

// collectLogged adds to found the rows of sqlLoggedEventIDs, keeping each
// id's first entry.
func collectLogged(rows pgx.Rows, found map[idKey]logged) error {
	defer rows.Close()
	for rows.Next() {
		var k idKey
		var l logged
		if err := rows.Scan(&k.submitter, &k.eventID, &l.seq, &l.leaf, &l.ingestedAt); err != nil {
			return fmt.Errorf("audit: look up event ids: %w", err)
		}
		l.ingestedAt = l.ingestedAt.UTC()
		keepEarliest(found, k, l)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("audit: look up event ids: %w", err)
	}
	return nil
}

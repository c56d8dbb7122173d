package custodian

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	vaultapi "github.com/hashicorp/vault/api"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/shares"
	"github.com/mediatorhq/mediator/wire"
)

// recordJSON is rec as a deposit entry holds it.
func recordJSON(t *testing.T, rec record) string {
	t.Helper()
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestCheckShares: each share asked for passes only if it is in the
// custodian's own records, readable, of a conversation in the request's
// scope, stored within its window, and not asked for twice in the call;
// each check answers its own code and message, in that order, and the
// shares that fail do not hold back the others. A share released for the
// request before passes the same checks, and only then goes to be
// answered again rather than sealed.
func TestCheckShares(t *testing.T) {
	from := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	to := from.Add(24 * time.Hour)
	req := approval.Request{ID: uuid.NewString(), Scope: approval.Scope{ConversationIDs: []string{"conv-a", "conv-b"}, From: from, To: to}}
	in, out := shares.FormatTime(from.Add(time.Hour)), shares.FormatTime(to.Add(time.Second))
	id := func() string { return uuid.NewString() }
	ok, ok2, released, missing, garbled, badTime, otherConv, early, late, outAndReleased := id(), id(), id(), id(), id(), id(), id(), id(), id(), id()
	// The request was approved (or first released) at noon: shares stored
	// since are not its to release, unless it released them already.
	cutoff := from.Add(12 * time.Hour)
	since, sinceAndReleased := id(), id()
	entry := map[string]any{
		ok:    recordJSON(t, record{EscrowID: ok, ConversationID: "conv-a", KeyID: "e1", StoredAt: in}),
		ok2:   recordJSON(t, record{EscrowID: ok2, ConversationID: "conv-b", KeyID: "e1", StoredAt: shares.FormatTime(cutoff)}),
		since: recordJSON(t, record{EscrowID: since, ConversationID: "conv-b", KeyID: "e2", StoredAt: shares.FormatTime(cutoff.Add(time.Microsecond))}),
		sinceAndReleased: recordJSON(t, record{EscrowID: sinceAndReleased, ConversationID: "conv-b", KeyID: "e3",
			StoredAt: shares.FormatTime(cutoff.Add(time.Hour))}),
		released:       recordJSON(t, record{EscrowID: released, ConversationID: "conv-a", StoredAt: in}),
		garbled:        "{",
		badTime:        recordJSON(t, record{EscrowID: badTime, ConversationID: "conv-a", StoredAt: "yesterday"}),
		otherConv:      recordJSON(t, record{EscrowID: otherConv, ConversationID: "conv-z", StoredAt: in}),
		early:          recordJSON(t, record{EscrowID: early, ConversationID: "conv-a", StoredAt: shares.FormatTime(from.Add(-time.Microsecond))}),
		late:           recordJSON(t, record{EscrowID: late, ConversationID: "conv-a", StoredAt: out}),
		outAndReleased: recordJSON(t, record{EscrowID: outAndReleased, ConversationID: "conv-z", StoredAt: in}),
		// A record filed under another escrow id is not that share's.
		missing + "-x": recordJSON(t, record{EscrowID: missing, ConversationID: "conv-a", StoredAt: in}),
	}
	const deposit, gone, down = "deposits/1", "deposits/2", "deposits/3"
	entries := map[string]entryRead{
		deposit: {sec: &vaultapi.KVSecret{Data: entry}},
		gone:    {err: errNoRecord},
		down:    {err: errors.New("vault: connection refused")},
	}
	already := map[string]releasedShare{released: {kept: "k"}, outAndReleased: {kept: "k"}, sinceAndReleased: {kept: "k"}}
	notFound := wire.ItemError{Code: codeNotFound, Message: msgNoSuchShare}
	unreadable := wire.ItemError{Code: codeNotFound, Message: "the share's record is unreadable"}
	window := wire.ItemError{Code: codeNotInScope, Message: "the share was stored outside the request's window"}
	cases := []struct {
		ref  wire.ShareRef
		want *wire.ItemError // nil: passes
	}{
		{wire.ShareRef{EscrowID: ok, Locator: deposit}, nil},
		{wire.ShareRef{EscrowID: "../identity", Locator: deposit}, &notFound},
		{wire.ShareRef{EscrowID: "../identity", Locator: down}, &notFound},
		{wire.ShareRef{EscrowID: ok2, Locator: gone}, &notFound},
		{wire.ShareRef{EscrowID: ok2, Locator: down}, &wire.ItemError{Code: codeUnavailable, Message: msgStoreDown}},
		{wire.ShareRef{EscrowID: missing, Locator: deposit}, &notFound},
		{wire.ShareRef{EscrowID: garbled, Locator: deposit}, &unreadable},
		{wire.ShareRef{EscrowID: badTime, Locator: deposit}, &unreadable},
		{wire.ShareRef{EscrowID: otherConv, Locator: deposit}, &wire.ItemError{Code: codeNotInScope, Message: "the share's conversation is not in the request's scope"}},
		{wire.ShareRef{EscrowID: early, Locator: deposit}, &window},
		{wire.ShareRef{EscrowID: late, Locator: deposit}, &window},
		{wire.ShareRef{EscrowID: outAndReleased, Locator: deposit}, &wire.ItemError{Code: codeNotInScope, Message: "the share's conversation is not in the request's scope"}},
		{wire.ShareRef{EscrowID: released, Locator: deposit}, nil},
		{wire.ShareRef{EscrowID: ok, Locator: deposit}, &wire.ItemError{Code: codeAlreadyReleased, Message: msgAlreadyReleased}},
		{wire.ShareRef{EscrowID: ok2, Locator: deposit}, nil},
		{wire.ShareRef{EscrowID: since, Locator: deposit}, &wire.ItemError{Code: codeNotInScope, Message: msgStoredLater}},
		{wire.ShareRef{EscrowID: sinceAndReleased, Locator: deposit}, nil},
	}
	refs := make([]wire.ShareRef, len(cases))
	for i, c := range cases {
		refs[i] = c.ref
	}
	ans := newShareAnswers(refs, nil)
	pending, again := checkShares(req, refs, entries, already, cutoff, ans)

	var passed []int
	for i, c := range cases {
		got := ans.out[i]
		if got.EscrowID != c.ref.EscrowID || got.Sealed != nil || got.Receipt != nil {
			t.Errorf("share %d: answer %+v", i, got)
		}
		switch {
		case c.want == nil && got.Error != nil:
			t.Errorf("share %d: %+v, want it to pass", i, *got.Error)
		case c.want != nil && (got.Error == nil || *got.Error != *c.want):
			t.Errorf("share %d: %+v, want %+v", i, got.Error, *c.want)
		case c.want == nil:
			passed = append(passed, i)
		}
	}
	var got []int
	for _, p := range pending {
		got = append(got, p.i)
		want, _ := time.Parse(shares.TimeLayout, in)
		if p.i == 14 {
			want = cutoff
		}
		if p.rec.EscrowID != refs[p.i].EscrowID || !p.stored.Equal(want) || p.ready {
			t.Errorf("pending %+v", p)
		}
	}
	for _, p := range again {
		got = append(got, p.i)
		if (p.rec.EscrowID != released && p.rec.EscrowID != sinceAndReleased) || p.ready {
			t.Errorf("again %+v", p)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, passed) || !slices.Equal(got, []int{0, 12, 14, 16}) || len(again) != 2 {
		t.Errorf("pending shares and again %v (%d again), want %v", got, len(again), passed)
	}
}

// fakeLedger plays a request's release records, with concurrent calls
// that write record numbers first.
type fakeLedger struct {
	records int                            // the records written so far
	racers  int                            // the puts a concurrent call wins first
	taken   map[string]releasedShare       // what the concurrent calls gave out
	theirs  map[string]wire.CustodianShare // and their answers, kept in entry "theirs"
	readErr error
	keepErr error
	putErr  error
	puts    []int // the record numbers tried
	reads   int
	mine    map[string][]wire.CustodianShare // the entries this call kept, by name
	dropped []string                         // and dropped
	// recorded is the record written.
	recorded releaseRecord
}

func (l *fakeLedger) released(context.Context, string, []string) (releases, error) {
	l.reads++
	return releases{records: l.records, shares: l.taken}, l.readErr
}

func (l *fakeLedger) keep(_ context.Context, _ string, answers []wire.CustodianShare) (keptEntries, error) {
	if l.keepErr != nil {
		return nil, l.keepErr
	}
	name := fmt.Sprint("mine-", len(l.mine))
	if l.mine == nil {
		l.mine = map[string][]wire.CustodianShare{}
	}
	l.mine[name] = answers
	return keptEntries{{Name: name, First: answers[0].EscrowID}}, nil
}

func (l *fakeLedger) drop(_ context.Context, _ string, entries keptEntries) {
	for _, e := range entries {
		l.dropped = append(l.dropped, e.Name)
	}
}

func (l *fakeLedger) kept(_ context.Context, _ string, name string) (map[string]wire.CustodianShare, error) {
	if name != "theirs" {
		return nil, errNoRecord
	}
	return l.theirs, nil
}

func (l *fakeLedger) putRelease(_ context.Context, _ string, n int, r releaseRecord) error {
	l.puts = append(l.puts, n)
	switch {
	case l.putErr != nil:
		return l.putErr
	case n <= l.records:
		return errExists
	case l.racers > 0:
		l.racers--
		l.records = n
		return errExists
	}
	l.records, l.recorded = n, r
	return nil
}

// TestRecordRelease: the answers are kept before the release record names
// them, and the record is write-once per number; when a concurrent call
// wins a number, this call's kept entry is dropped, the shares the other
// call gave out are answered with its kept answers (never this call's
// sealing), and the rest recorded under the next number; a share the
// other call released under another request digest is answered
// already_released; after releaseRetries re-reads, or any other failure,
// every ready share is withheld as unavailable.
func TestRecordRelease(t *testing.T) {
	ids := []string{uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()}
	storeDown := errors.New("vault: connection refused")
	cr := checkedRequest{req: approval.Request{ID: uuid.NewString()}, digest: "sha256:d"}
	// What a concurrent call gave out, as its record and kept entry say.
	theirs := map[string]wire.CustodianShare{}
	taken := map[string]releasedShare{}
	for _, id := range ids {
		sealed := []byte("their sealing of " + id)
		r := &shares.SignedReceipt{Receipt: shares.Receipt{Kind: shares.ReceiptRelease, Custodian: "custodian-1", EscrowID: id,
			RequestID: cr.req.ID, RequestDigest: cr.digest, SealedSHA256: shares.SealedHash(sealed)}, Signature: []byte("theirs")}
		theirs[id] = wire.CustodianShare{EscrowID: id, Sealed: sealed, Receipt: r}
		taken[id] = releasedShare{digest: cr.digest, receipt: r.Hash(), kept: "theirs"}
	}
	only := func(m map[string]releasedShare, keep ...string) map[string]releasedShare {
		out := map[string]releasedShare{}
		for _, id := range keep {
			out[id] = m[id]
		}
		return out
	}
	otherRequest := only(taken, ids[0], ids[1], ids[2])
	otherRequest[ids[1]] = releasedShare{digest: "sha256:other", receipt: taken[ids[1]].receipt, kept: "theirs"}
	const mine, theirsOut = "", "theirs"
	for _, tc := range []struct {
		name        string
		ledger      fakeLedger
		wantPuts    []int
		wantReads   int
		wantDropped []string
		wantOut     map[string]string // escrow id to item error code, mine, or theirsOut
		wantWritten []string
	}{
		{name: "alone", ledger: fakeLedger{records: 2}, wantPuts: []int{3},
			wantOut:     map[string]string{ids[0]: mine, ids[1]: mine, ids[2]: mine},
			wantWritten: []string{ids[0], ids[1], ids[2]}},
		{name: "a concurrent call took one", ledger: fakeLedger{records: 1, racers: 1, taken: only(taken, ids[1], ids[3]), theirs: theirs},
			wantPuts: []int{2, 3}, wantReads: 1, wantDropped: []string{"mine-0"},
			wantOut:     map[string]string{ids[0]: mine, ids[1]: theirsOut, ids[2]: mine},
			wantWritten: []string{ids[0], ids[2]}},
		{name: "concurrent calls took all", ledger: fakeLedger{racers: 1, taken: only(taken, ids[0], ids[1], ids[2]), theirs: theirs},
			wantPuts: []int{1}, wantReads: 1, wantDropped: []string{"mine-0"},
			wantOut: map[string]string{ids[0]: theirsOut, ids[1]: theirsOut, ids[2]: theirsOut}},
		{name: "a concurrent call of another request under the id", ledger: fakeLedger{racers: 1, taken: otherRequest, theirs: theirs},
			wantPuts: []int{1}, wantReads: 1, wantDropped: []string{"mine-0"},
			wantOut: map[string]string{ids[0]: theirsOut, ids[1]: codeAlreadyReleased, ids[2]: theirsOut}},
		{name: "their answers not kept", ledger: fakeLedger{racers: 1, taken: only(taken, ids[0], ids[1], ids[2])},
			wantPuts: []int{1}, wantReads: 1, wantDropped: []string{"mine-0"},
			wantOut: map[string]string{ids[0]: codeAlreadyReleased, ids[1]: codeAlreadyReleased, ids[2]: codeAlreadyReleased}},
		{name: "too many concurrent calls", ledger: fakeLedger{racers: 100},
			wantPuts: []int{1, 2, 3, 4, 5, 6}, wantReads: releaseRetries,
			wantDropped: []string{"mine-0", "mine-1", "mine-2", "mine-3", "mine-4", "mine-5"},
			wantOut:     map[string]string{ids[0]: codeUnavailable, ids[1]: codeUnavailable, ids[2]: codeUnavailable}},
		{name: "records unreadable", ledger: fakeLedger{racers: 1, readErr: storeDown}, wantPuts: []int{1}, wantReads: 1,
			wantDropped: []string{"mine-0"},
			wantOut:     map[string]string{ids[0]: codeUnavailable, ids[1]: codeUnavailable, ids[2]: codeUnavailable}},
		{name: "store down", ledger: fakeLedger{putErr: storeDown}, wantPuts: []int{1}, wantDropped: []string{"mine-0"},
			wantOut: map[string]string{ids[0]: codeUnavailable, ids[1]: codeUnavailable, ids[2]: codeUnavailable}},
		{name: "answers not kept", ledger: fakeLedger{keepErr: storeDown},
			wantOut: map[string]string{ids[0]: codeUnavailable, ids[1]: codeUnavailable, ids[2]: codeUnavailable}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Custodian{cfg: Config{Name: "custodian-1"}, log: slog.New(slog.DiscardHandler)}
			refs := make([]wire.ShareRef, len(ids))
			pending := make([]pendingShare, len(ids))
			const notReady = 3 // pending[notReady] failed before recording
			for i, id := range ids {
				refs[i] = wire.ShareRef{EscrowID: id}
				pending[i] = pendingShare{i: i, rec: record{EscrowID: id}, ready: i != notReady}
			}
			ans := newShareAnswers(refs, nil)
			hashes := map[string]string{}
			for i, p := range pending {
				if p.ready {
					r := &shares.SignedReceipt{Receipt: shares.Receipt{Kind: shares.ReceiptRelease, Custodian: "custodian-1", EscrowID: p.rec.EscrowID,
						RequestID: cr.req.ID, RequestDigest: cr.digest}, Signature: []byte{byte(i)}}
					ans.out[i].Sealed, ans.out[i].Receipt = []byte("my sealing"), r
					hashes[p.rec.EscrowID] = r.Hash()
				} else {
					ans.fail(i, codeUnavailable, "the custodian's key is unavailable")
				}
			}
			l := tc.ledger
			c.recordRelease(context.Background(), &l, cr, "2030-01-01T00:00:00.000000Z", l.records, pending, ans)

			if !slices.Equal(l.puts, tc.wantPuts) || l.reads != tc.wantReads || !slices.Equal(l.dropped, tc.wantDropped) {
				t.Errorf("puts %v, %d reads and dropped %v, want %v, %d and %v", l.puts, l.reads, l.dropped, tc.wantPuts, tc.wantReads, tc.wantDropped)
			}
			for i, p := range pending {
				got := ans.out[i]
				want, asked := tc.wantOut[p.rec.EscrowID]
				switch {
				case !asked:
				case want == mine && (got.Error != nil || string(got.Sealed) != "my sealing" || got.Receipt.Hash() != hashes[p.rec.EscrowID] || !p.ready):
					t.Errorf("%s: %+v (ready %v), want it released", p.rec.EscrowID, got, p.ready)
				case want == theirsOut && (got.Error != nil || !bytes.Equal(got.Sealed, theirs[p.rec.EscrowID].Sealed) ||
					got.Receipt.Hash() != taken[p.rec.EscrowID].receipt || p.ready):
					t.Errorf("%s: %+v (ready %v), want the concurrent call's answer", p.rec.EscrowID, got, p.ready)
				case want != mine && want != theirsOut && (got.Error == nil || got.Error.Code != want || got.Sealed != nil || p.ready):
					t.Errorf("%s: %+v (ready %v), want %s", p.rec.EscrowID, got, p.ready, want)
				}
			}
			written := slices.Sorted(maps.Keys(l.recorded.Receipts))
			if !slices.Equal(written, slices.Sorted(slices.Values(tc.wantWritten))) {
				t.Errorf("recorded %v, want %v", written, tc.wantWritten)
			}
			for id, h := range l.recorded.Receipts {
				if h != hashes[id] || h == "" {
					t.Errorf("%s recorded with receipt hash %q, want %q", id, h, hashes[id])
				}
			}
			if len(written) == 0 {
				return
			}
			if l.recorded.RequestDigest != cr.digest || l.recorded.At == "" || len(l.recorded.Kept) != 1 {
				t.Fatalf("record %+v", l.recorded)
			}
			var kept []string
			for _, a := range l.mine[l.recorded.Kept[0].Name] {
				kept = append(kept, a.EscrowID)
				if a.Receipt.Hash() != l.recorded.Receipts[a.EscrowID] {
					t.Errorf("%s kept with another receipt than recorded", a.EscrowID)
				}
			}
			if !slices.Equal(slices.Sorted(slices.Values(kept)), written) {
				t.Errorf("kept %v, recorded %v", kept, written)
			}
		})
	}
}

// TestSplitKept: kept answers are cut, in order, into entries of at most
// the bound, an answer larger than it alone in its own; and each escrow id
// is found in the entry that holds it.
func TestSplitKept(t *testing.T) {
	var fields []keptField
	for i := range 10 {
		fields = append(fields, keptField{id: fmt.Sprintf("id-%02d", i), json: strings.Repeat("x", 10+i*5)})
	}
	fields[6].json = strings.Repeat("x", 200)
	parts := splitKept(fields, 100)
	var sizes [][]int
	entries := keptEntries{}
	for k, part := range parts {
		var n []int
		total := 0
		for _, f := range part {
			n = append(n, len(f.json))
			total += len(f.json)
		}
		if total > 100 && len(part) > 1 {
			t.Errorf("entry %d holds %d bytes", k, total)
		}
		sizes = append(sizes, n)
		entries = append(entries, keptEntry{Name: fmt.Sprint("entry-", k), First: part[0].id})
	}
	want := [][]int{{10, 15, 20, 25, 30}, {35}, {200}, {45, 50}, {55}}
	if fmt.Sprint(sizes) != fmt.Sprint(want) {
		t.Fatalf("entries %v, want %v", sizes, want)
	}
	for k, part := range parts {
		for _, f := range part {
			if got := entries.holding(f.id); got != entries[k].Name {
				t.Errorf("%s found in %q, want %q", f.id, got, entries[k].Name)
			}
		}
	}
	if got := entries.holding("id-"); got != "" {
		t.Errorf("an id before every entry found in %q", got)
	}
	if splitKept(nil, 100) != nil {
		t.Error("no answers made entries")
	}
}

package custodian

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"slices"
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
// scope, stored within its window, and not released for the request
// before nor asked for twice in the call; each check answers its own code
// and message, in that order, and the shares that fail do not hold back
// the others.
func TestCheckShares(t *testing.T) {
	from := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	to := from.Add(24 * time.Hour)
	req := approval.Request{ID: uuid.NewString(), Scope: approval.Scope{ConversationIDs: []string{"conv-a", "conv-b"}, From: from, To: to}}
	in, out := shares.FormatTime(from.Add(time.Hour)), shares.FormatTime(to.Add(time.Second))
	id := func() string { return uuid.NewString() }
	ok, ok2, released, missing, garbled, badTime, otherConv, early, late, outAndReleased := id(), id(), id(), id(), id(), id(), id(), id(), id(), id()
	entry := map[string]any{
		ok:             recordJSON(t, record{EscrowID: ok, ConversationID: "conv-a", KeyID: "e1", StoredAt: in}),
		ok2:            recordJSON(t, record{EscrowID: ok2, ConversationID: "conv-b", KeyID: "e1", StoredAt: shares.FormatTime(to)}),
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
	already := map[string]bool{released: true, outAndReleased: true}
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
		{wire.ShareRef{EscrowID: released, Locator: deposit}, &wire.ItemError{Code: codeAlreadyReleased, Message: msgAlreadyReleased}},
		{wire.ShareRef{EscrowID: ok, Locator: deposit}, &wire.ItemError{Code: codeAlreadyReleased, Message: msgAlreadyReleased}},
		{wire.ShareRef{EscrowID: ok2, Locator: deposit}, nil},
	}
	refs := make([]wire.ShareRef, len(cases))
	for i, c := range cases {
		refs[i] = c.ref
	}
	ans := newShareAnswers(refs, nil)
	pending := checkShares(req, refs, entries, already, ans)

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
			want = to
		}
		if p.rec.EscrowID != refs[p.i].EscrowID || !p.stored.Equal(want) || p.ready {
			t.Errorf("pending %+v", p)
		}
	}
	if !slices.Equal(got, passed) || !slices.Equal(got, []int{0, 14}) {
		t.Errorf("pending shares %v, want %v", got, passed)
	}
}

// fakeLedger plays a request's release records, with concurrent calls
// that write record numbers first.
type fakeLedger struct {
	records  int             // the records written so far
	racers   int             // the puts a concurrent call wins first
	taken    map[string]bool // what the concurrent calls gave out
	readErr  error
	putErr   error
	puts     []int // the record numbers tried
	reads    int
	recorded releaseRecord // the record written
}

func (l *fakeLedger) released(context.Context, string) (map[string]bool, int, error) {
	l.reads++
	return l.taken, l.records, l.readErr
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

// TestRecordRelease: the release record is write-once per number; when a
// concurrent call wins a number, the shares it gave out are answered
// already_released and the rest recorded under the next number; after
// releaseRetries re-reads, or any other failure, every ready share is
// withheld as unavailable.
func TestRecordRelease(t *testing.T) {
	ids := []string{uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()}
	storeDown := errors.New("vault: connection refused")
	for _, tc := range []struct {
		name        string
		ledger      fakeLedger
		notReady    int // pending[notReady] failed before recording
		wantPuts    []int
		wantReads   int
		wantOut     map[string]string // escrow id to item error code, "" released
		wantWritten []string
	}{
		{name: "alone", ledger: fakeLedger{records: 2}, notReady: 3, wantPuts: []int{3},
			wantOut:     map[string]string{ids[0]: "", ids[1]: "", ids[2]: ""},
			wantWritten: []string{ids[0], ids[1], ids[2]}},
		{name: "a concurrent call took one", ledger: fakeLedger{records: 1, racers: 1, taken: map[string]bool{ids[1]: true, ids[3]: true}},
			notReady: 3, wantPuts: []int{2, 3}, wantReads: 1,
			wantOut:     map[string]string{ids[0]: "", ids[1]: codeAlreadyReleased, ids[2]: ""},
			wantWritten: []string{ids[0], ids[2]}},
		{name: "concurrent calls took all", ledger: fakeLedger{racers: 1, taken: map[string]bool{ids[0]: true, ids[1]: true, ids[2]: true}},
			notReady: 3, wantPuts: []int{1}, wantReads: 1,
			wantOut: map[string]string{ids[0]: codeAlreadyReleased, ids[1]: codeAlreadyReleased, ids[2]: codeAlreadyReleased}},
		{name: "too many concurrent calls", ledger: fakeLedger{racers: 100}, notReady: 3,
			wantPuts: []int{1, 2, 3, 4, 5, 6}, wantReads: releaseRetries,
			wantOut: map[string]string{ids[0]: codeUnavailable, ids[1]: codeUnavailable, ids[2]: codeUnavailable}},
		{name: "records unreadable", ledger: fakeLedger{racers: 1, readErr: storeDown}, notReady: 3, wantPuts: []int{1}, wantReads: 1,
			wantOut: map[string]string{ids[0]: codeUnavailable, ids[1]: codeUnavailable, ids[2]: codeUnavailable}},
		{name: "store down", ledger: fakeLedger{putErr: storeDown}, notReady: 3, wantPuts: []int{1},
			wantOut: map[string]string{ids[0]: codeUnavailable, ids[1]: codeUnavailable, ids[2]: codeUnavailable}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Custodian{log: slog.New(slog.DiscardHandler)}
			refs := make([]wire.ShareRef, len(ids))
			pending := make([]pendingShare, len(ids))
			for i, id := range ids {
				refs[i] = wire.ShareRef{EscrowID: id}
				pending[i] = pendingShare{i: i, rec: record{EscrowID: id}, ready: i != tc.notReady}
			}
			ans := newShareAnswers(refs, nil)
			hashes := map[string]string{}
			for i, p := range pending {
				if p.ready {
					r := &shares.SignedReceipt{Receipt: shares.Receipt{Kind: shares.ReceiptRelease, EscrowID: p.rec.EscrowID}, Signature: []byte{byte(i)}}
					ans.out[i].Sealed, ans.out[i].Receipt = []byte("sealed"), r
					hashes[p.rec.EscrowID] = r.Hash()
				} else {
					ans.fail(i, codeUnavailable, "the custodian's key is unavailable")
				}
			}
			before := tc.ledger.records
			l := tc.ledger
			cr := checkedRequest{req: approval.Request{ID: uuid.NewString()}, digest: "sha256:d"}
			c.recordRelease(context.Background(), &l, cr, "2030-01-01T00:00:00.000000Z", before, pending, ans)

			if !slices.Equal(l.puts, tc.wantPuts) || l.reads != tc.wantReads {
				t.Errorf("puts %v and %d reads, want %v and %d", l.puts, l.reads, tc.wantPuts, tc.wantReads)
			}
			for i, p := range pending {
				got := ans.out[i]
				want, asked := tc.wantOut[p.rec.EscrowID]
				switch {
				case !asked:
				case want == "" && (got.Error != nil || got.Receipt == nil || !p.ready):
					t.Errorf("%s: %+v (ready %v), want it released", p.rec.EscrowID, got, p.ready)
				case want != "" && (got.Error == nil || got.Error.Code != want || got.Sealed != nil || p.ready):
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
			if len(written) > 0 && (l.recorded.RequestDigest != cr.digest || l.recorded.At == "") {
				t.Errorf("record %+v", l.recorded)
			}
		})
	}
}

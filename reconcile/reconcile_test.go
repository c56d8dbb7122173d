package reconcile

import (
	"slices"
	"testing"
	"time"

	"github.com/mediatorhq/mediator/shares"
)

// TestCompare: an orphan past the cutoff, a silent abort, a share
// missing, and another sealed share are each found at the custodian that
// shows them; agreement, a fresh uncommitted share, a destroyed share and
// deposits logged at the window's edges are not.
func TestCompare(t *testing.T) {
	base := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	w := Window{Since: base, Until: base.Add(time.Hour), Cutoff: base.Add(50 * time.Minute), Slack: time.Minute}
	at := func(m int) string { return shares.FormatTime(base.Add(time.Duration(m) * time.Minute)) }
	logged := []Logged{
		{EscrowID: "e-ok", At: base.Add(5 * time.Minute), Sealed: map[string]string{"c1": "aa", "c2": "bb"}},
		{EscrowID: "e-aborted", At: base.Add(6 * time.Minute), Sealed: map[string]string{"c1": "cc", "c2": "dd"}},
		{EscrowID: "e-gone", At: base.Add(7 * time.Minute), Sealed: map[string]string{"c1": "ee", "c2": "ff"}},
		{EscrowID: "e-edge", At: base.Add(30 * time.Second), Sealed: map[string]string{"c1": "11", "c2": "22"}},
	}
	inv := map[string]shares.Inventory{
		"c1": {Shares: []shares.ShareState{
			{EscrowID: "e-ok", SealedSHA256: "aa", StoredAt: at(5), State: shares.StateKept},
			{EscrowID: "e-aborted", SealedSHA256: "cc", StoredAt: at(6), State: shares.StateKept},
			{EscrowID: "e-gone", SealedSHA256: "ee", StoredAt: at(7), State: shares.StateDestroyed},
			{EscrowID: "e-orphan", SealedSHA256: "99", StoredAt: at(20), State: shares.StateKept},
			{EscrowID: "e-fresh", SealedSHA256: "98", StoredAt: at(55), State: shares.StateUncommitted},
		}},
		"c2": {Shares: []shares.ShareState{
			{EscrowID: "e-ok", SealedSHA256: "b0", StoredAt: at(5), State: shares.StateKept},
			{EscrowID: "e-aborted", SealedSHA256: "dd", StoredAt: at(6), State: shares.StateAborted},
		}},
	}
	var got []string
	for _, f := range Compare(w, logged, []string{"c1", "c2"}, inv) {
		got = append(got, f.Custodian+" "+f.Kind+" "+f.EscrowID)
	}
	want := []string{
		"c1 orphan e-orphan",
		"c2 missing e-aborted",
		"c2 missing e-gone",
		"c2 mismatch e-ok",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("findings:\n got %q\nwant %q", got, want)
	}
}

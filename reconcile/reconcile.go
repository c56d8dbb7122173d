// Package reconcile compares what the custodians say they keep with what
// the log says was deposited, so that a share no deposit entry names (an
// orphan: a mediator that died between the custodians' stores and its
// commit, or a store no depositor made) and a logged deposit whose share
// a custodian no longer keeps (a silent abort) are found, not assumed
// away. Both sides are signed: the custodians' inventories with their
// receipt keys, the log's entries under its checkpoint. Compare is pure;
// `mediator escrow reconcile` and the mediator's reconciliation job feed
// it.
package reconcile

import (
	"fmt"
	"slices"
	"time"

	"github.com/mediatorhq/mediator/shares"
)

// Logged is what the log says of one deposit: its escrow id, when it was
// logged, and the SHA-256 of the sealed share each custodian was given.
type Logged struct {
	EscrowID string
	At       time.Time
	// Sealed maps a custodian's name to the hex SHA-256 of its share.
	Sealed map[string]string
}

// Kinds of finding.
const (
	// KindOrphan: a custodian keeps a share, stored before the cutoff,
	// that no deposit entry in the log names.
	KindOrphan = "orphan"
	// KindMissing: the log names a deposit whose share the custodian does
	// not keep: it says it aborted it, or knows nothing of it.
	KindMissing = "missing"
	// KindMismatch: the custodian keeps another share under the escrow id
	// than the log records.
	KindMismatch = "mismatch"
)

// Finding is one disagreement between a custodian and the log.
type Finding struct {
	Custodian string
	EscrowID  string
	Kind      string
	Detail    string
}

func (f Finding) String() string {
	return fmt.Sprintf("%s %s %s: %s", f.Custodian, f.Kind, f.EscrowID, f.Detail)
}

// Window is the stretch of time compared: shares the custodians stored in
// [Since, Until), against deposits logged in it. Cutoff is the end of the
// abort window: a share stored after it may still be waiting for its
// deposit's commit, and is never called an orphan.
type Window struct {
	Since, Until, Cutoff time.Time
	// Slack is how far a custodian's clock and the log's may differ: a
	// deposit logged within Slack of the window's edges is not required
	// of the custodians' inventories.
	Slack time.Duration
}

// Compare checks each custodian's inventory of w against the deposits
// logged, and returns the disagreements, custodian by custodian in the
// order given, each sorted by escrow id. A destroyed share is no
// disagreement: retention ended. A deposit logged but absent from an
// inventory is looked for only if it was logged within w (less Slack at
// both ends); a share an inventory shows aborted is checked against every
// deposit logged.
func Compare(w Window, logged []Logged, custodians []string, inventories map[string]shares.Inventory) []Finding {
	byID := make(map[string]Logged, len(logged))
	for _, l := range logged {
		byID[l.EscrowID] = l
	}
	var out []Finding
	for _, name := range custodians {
		var found []Finding
		kept := map[string]shares.ShareState{}
		for _, s := range inventories[name].Shares {
			kept[s.EscrowID] = s
			l, inLog := byID[s.EscrowID]
			stored, _ := time.Parse(shares.TimeLayout, s.StoredAt)
			switch {
			case s.State == shares.StateAborted && inLog:
				found = append(found, Finding{name, s.EscrowID, KindMissing,
					fmt.Sprintf("logged at %s; the custodian aborted its share", shares.FormatTime(l.At))})
			case s.State == shares.StateAborted || s.State == shares.StateDestroyed:
			case !inLog && stored.Before(w.Cutoff):
				found = append(found, Finding{name, s.EscrowID, KindOrphan,
					fmt.Sprintf("kept (%s) since %s; no escrow.deposit entry in the log names it", s.State, s.StoredAt)})
			case inLog && l.Sealed[name] != "" && l.Sealed[name] != s.SealedSHA256:
				found = append(found, Finding{name, s.EscrowID, KindMismatch,
					fmt.Sprintf("keeps sealed share %s; the log records %s", s.SealedSHA256, l.Sealed[name])})
			}
		}
		for _, l := range logged {
			if _, named := l.Sealed[name]; !named || l.At.Before(w.Since.Add(w.Slack)) || !l.At.Before(w.Until.Add(-w.Slack)) {
				continue
			}
			if _, ok := kept[l.EscrowID]; !ok {
				found = append(found, Finding{name, l.EscrowID, KindMissing,
					fmt.Sprintf("logged at %s; the custodian lists no share of it", shares.FormatTime(l.At))})
			}
		}
		slices.SortFunc(found, func(a, b Finding) int {
			switch {
			case a.EscrowID < b.EscrowID:
				return -1
			case a.EscrowID > b.EscrowID:
				return 1
			}
			return 0
		})
		out = append(out, found...)
	}
	return out
}

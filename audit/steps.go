package audit

import "time"

// appendStep is one part of an append transaction as the sequencer runs
// it. The parts are timed so that an operator, and a run at scale, can
// tell which of them grows with the log.
type appendStep int

const (
	stepBegin   appendStep = iota // begin, the sequencer lock, the halt check, the tree size
	stepFilters                   // the event-id filters: kept up to date, then asked
	stepDedup                     // the duplicate check's reads of the ids filters did not rule out
	stepPreload                   // the right edge's stored hashes
	stepPlace                     // leaves, tree hashes and rows, in the process
	stepWrite                     // the COPY of the new rows
	stepCommit                    // the commit: durable once it returns
	numAppendSteps
)

// appendStepNames label the steps in mediator_audit_sequencer_seconds_total.
var appendStepNames = [numAppendSteps]string{"begin", "filters", "dedup", "preload", "place", "write", "commit"}

// stopwatch adds the time since its last lap to a step. A nil *stopwatch
// times nothing: the appends of a TxAppender, whose commit is its
// caller's, are not timed.
type stopwatch struct {
	last  time.Time
	spent [numAppendSteps]time.Duration
}

func newStopwatch() *stopwatch { return &stopwatch{last: time.Now()} }

// lap charges the time since the previous lap to step.
func (w *stopwatch) lap(step appendStep) {
	if w == nil {
		return
	}
	now := time.Now()
	w.spent[step] += now.Sub(w.last)
	w.last = now
}

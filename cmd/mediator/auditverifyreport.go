package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/mediatorhq/mediator/audit"
)

// verifyResult is what audit verify found, checked and did not check: its
// text output, and its JSON output as is (docs/audit.md, "Verifying the
// database", lists the fields).
type verifyResult struct {
	OK     bool   `json:"ok"`
	Source string `json:"source"` // "database" or "bundle"
	Origin string `json:"origin"`
	// Entries were checked; TreeSize and Root are the tree they make
	// (a bundle's: its checkpoint's). Root is base64, "" for an empty tree.
	Entries  int64  `json:"entries"`
	TreeSize int64  `json:"tree_size"`
	Root     string `json:"root"`
	// Checkpoints were read; CheckpointSize is the largest that verified.
	Checkpoints    int    `json:"checkpoints"`
	CheckpointSize int64  `json:"checkpoint_size"`
	Keys           int    `json:"keys"`
	KeysFrom       string `json:"keys_from"`
	// WitnessesChecked: a witness policy was configured and applied;
	// Witnessed checkpoints met its Quorum.
	WitnessesChecked bool `json:"witnesses_checked"`
	Quorum           int  `json:"quorum"`
	Witnessed        int  `json:"witnessed"`
	// Tiles were stored full and partial tiles (audit_tiles, the parts
	// of level-0 tiles in audit_leaf_tile_parts, audit_partial_tiles)
	// compared with the recomputed hashes.
	Tiles          int             `json:"tiles"`
	NotChecked     []string        `json:"not_checked"`
	Problems       []string        `json:"problems"`
	FirstFailure   *verifyFailure  `json:"first_failure"`
	OriginMismatch *originMismatch `json:"origin_mismatch"`

	// StateFile is the --state file, "" without one. FromSize is the
	// tree size it held (0: a full run); ToSize the checkpoint verified
	// up to; ConsistencyProof "ok" or "failed" for an incremental run, ""
	// for a full one; StateSaved whether the state now holds ToSize.
	StateFile        string `json:"state_file"`
	FromSize         int64  `json:"from_size"`
	ToSize           int64  `json:"to_size"`
	ConsistencyProof string `json:"consistency_proof"`
	StateSaved       bool   `json:"state_saved"`
	// StateMissing: the state file did not exist, so this was a full
	// run (the first), which writes it when it passes.
	StateMissing bool `json:"state_missing"`
	// StateWithoutIndex: the state file held no event-id index (it was
	// written before there was one), so this was a full run, which
	// writes both when it passes.
	StateWithoutIndex bool `json:"state_without_index"`
	// EventIDs entries with an event id were checked against every
	// other entry of the tree; DuplicateEventIDs of them log an event id
	// their submitter had logged before.
	EventIDs          int64 `json:"event_ids"`
	DuplicateEventIDs int   `json:"duplicate_event_ids"`

	ran bool // the verification ran (fill), rather than stopping at the configuration
}

// verifyFailure is the first thing found wrong: at the lowest bad seq, or
// the first problem when no entry is named (Seq nil).
type verifyFailure struct {
	Seq     *int64 `json:"seq"`
	Problem string `json:"problem"`
}

// originMismatch is a configuration error: the origin expected and the
// ones found, and where they were found.
type originMismatch struct {
	Expected string   `json:"expected"`
	Found    []string `json:"found"`
	In       string   `json:"in"`
}

// configured records that the checkpoints or keys found in (where:
// "the --key", "the bundle's checkpoint") name another origin than
// expected, before anything was verified.
func (r *verifyResult) configured(m *audit.OriginMismatch, keys logKeys, in string) {
	r.Origin, r.Keys, r.KeysFrom = m.Expected, len(keys.verifiers), keys.from
	r.WitnessesChecked = false
	r.OriginMismatch = &originMismatch{Expected: m.Expected, Found: m.Found, In: in}
	r.NotChecked = []string{"the entries, checkpoints and witnesses: nothing was verified, for the origin is not the log's"}
	r.Problems = []string{}
}

// fill takes the report of a verification.
func (r *verifyResult) fill(rep *audit.Report) {
	r.ran = true
	if rep.Origin != "" {
		r.Origin = rep.Origin
	}
	r.Entries, r.TreeSize = rep.Entries, rep.TreeSize
	if rep.TreeSize > 0 {
		r.Root = base64.StdEncoding.EncodeToString(rep.Root[:])
	}
	r.Checkpoints, r.CheckpointSize, r.Witnessed, r.Tiles = rep.Checkpoints, rep.CheckpointSize, rep.Witnessed, rep.Tiles
	r.FromSize, r.ToSize, r.ConsistencyProof = rep.FromSize, rep.CheckpointSize, rep.Consistency
	r.EventIDs, r.DuplicateEventIDs = rep.EventIDs, rep.DuplicateEventIDs
	r.Problems = append([]string{}, rep.Problems...)
	switch {
	case rep.FirstBadSeq >= 0:
		seq := rep.FirstBadSeq
		r.FirstFailure = &verifyFailure{Seq: &seq, Problem: rep.FirstBadProblem}
	case len(rep.Problems) > 0:
		r.FirstFailure = &verifyFailure{Problem: rep.Problems[0]}
	}
	if m := rep.OriginMismatch; m != nil {
		r.OriginMismatch = &originMismatch{Expected: m.Expected, Found: m.Found, In: "the stored checkpoints"}
		r.WitnessesChecked = false
	}
	r.OK = rep.OK()
	r.NotChecked = r.notChecked()
}

// notChecked lists, for a person, what this verification did not check.
func (r *verifyResult) notChecked() []string {
	out := []string{}
	switch {
	case r.OriginMismatch != nil:
		out = append(out, fmt.Sprintf("the checkpoints' signatures, roots and consistency, and witness cosignatures (they name origin %s, not %s)",
			strings.Join(r.OriginMismatch.Found, ", "), r.OriginMismatch.Expected))
	case !r.WitnessesChecked:
		out = append(out, "witness cosignatures (no witness policy configured: --witnesses/MEDIATOR_WITNESSES)")
	}
	if r.OriginMismatch == nil {
		out = append(out, fmt.Sprintf("signatures by keys other than the %d given (%s): a checkpoint that none of them signed fails, so give every key the log has used", r.Keys, r.KeysFrom))
	}
	if r.FromSize > 0 {
		out = append(out, fmt.Sprintf("entries 0–%d's leaves and columns against their stored hashes: an earlier run verified them (--state); a rewrite of leaves and hashes together fails the consistency proof, a leaf changed alone fails any inclusion proof of it; run without --state now and then to read every row again",
			r.FromSize-1))
	}
	if r.Source == "bundle" {
		return append(out,
			"that no other entry matches the bundle's query: the service chose its entries (audit verify against the database checks the rows)",
			fmt.Sprintf("entries after the bundle's checkpoint (tree size %d)", r.TreeSize))
	}
	if r.OriginMismatch == nil {
		switch {
		case r.Checkpoints == 0 && r.TreeSize > 0 && r.FromSize == 0:
			out = append(out, fmt.Sprintf("entries 0–%d against a signature: no checkpoint is stored (their hashes and columns were checked)", r.TreeSize-1))
		case r.TreeSize > r.CheckpointSize:
			out = append(out, fmt.Sprintf("entries %d–%d against a signature: no checkpoint that verified covers them (their hashes and columns were checked)", r.CheckpointSize, r.TreeSize-1))
		}
	}
	return append(out, fmt.Sprintf("that the log was not cut short or rolled back: compare tree size %d and root %s with a checkpoint kept outside the database (published, exported or a witness's)",
		r.TreeSize, orNone(r.Root)))
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// write prints the result as text or JSON and returns the exit status:
// nil when ok, 1 when something was found wrong, 3 when only the origin
// was not the log's.
func (r *verifyResult) write(c *call, output string) error {
	if output == "json" {
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "%s\n", b)
	} else {
		r.writeText(c.stdout)
	}
	switch {
	case len(r.Problems) > 0:
		return exitVerifyFailed
	case r.OriginMismatch != nil:
		return exitVerifyMisconfigured
	}
	return nil
}

// writeText prints the result for a person: each problem, what was
// checked, what was not, and the verdict last.
func (r *verifyResult) writeText(w io.Writer) {
	for _, p := range r.Problems {
		fmt.Fprintln(w, "FAIL:", p)
	}
	if m := r.OriginMismatch; m != nil {
		found := strings.Join(m.Found, ", ")
		switch m.In {
		case "the --key":
			fmt.Fprintf(w, "origin %s expected, %s found (in %s): a configuration error: give the key of the log %s, or set --log-origin or MEDIATOR_LOG_ORIGIN to the origin of the log the key signs\n",
				m.Expected, found, m.In, m.Expected)
		case "the bundle's checkpoint":
			fmt.Fprintf(w, "origin %s expected, %s found (in %s): a configuration error: the bundle is of the log %s, the --key of the log %s; give the key of the bundle's log\n",
				m.Expected, found, m.In, found, m.Expected)
		case "the state file":
			fmt.Fprintf(w, "origin %s expected, %s found (in %s): a configuration error: %s is the state of the log %s, not of this one; give this log's state file (--state, MEDIATOR_AUDIT_VERIFY_STATE), or remove it to verify in full\n",
				m.Expected, found, m.In, r.StateFile, found)
		default:
			fmt.Fprintf(w, "origin %s expected, %s found (in %s): a configuration error: set --log-origin or MEDIATOR_LOG_ORIGIN to the service's origin (its --log-origin); if the service's origin is %s, see docs/operations.md, \"Audit verification failure\"\n",
				m.Expected, found, m.In, m.Expected)
		}
	}
	switch {
	case !r.ran:
	case r.OriginMismatch != nil:
		fmt.Fprintf(w, "checked: %d entries (tree size %d, root %s); not the %d checkpoints\n",
			r.Entries, r.TreeSize, orNone(r.Root), r.Checkpoints)
	default:
		fmt.Fprintf(w, "checked: %d entries (tree size %d, root %s) and %d checkpoints of origin %s, with %d keys (%s)\n",
			r.Entries, r.TreeSize, orNone(r.Root), r.Checkpoints, r.Origin, r.Keys, r.KeysFrom)
	}
	switch {
	case !r.ran || r.StateFile == "":
	case r.StateMissing:
		fmt.Fprintf(w, "state: %s does not exist: a full verification (the first run); it is written when verification passes\n", r.StateFile)
	case r.StateWithoutIndex:
		fmt.Fprintf(w, "state: %s has no event-id index (written by an older mediator): a full verification, once; the state and its index are written when verification passes\n", r.StateFile)
	case r.FromSize > 0:
		checked := "no new entries"
		if r.TreeSize > r.FromSize {
			checked = fmt.Sprintf("entries %d–%d checked", r.FromSize, r.TreeSize-1)
		}
		fmt.Fprintf(w, "incremental: %s; the %d before them were verified by an earlier run (state %s); consistency proof from tree size %d to checkpoint %d: %s\n",
			checked, r.FromSize, r.StateFile, r.FromSize, r.ToSize, r.ConsistencyProof)
	}
	if r.WitnessesChecked {
		fmt.Fprintf(w, "witnesses: %d of %d checkpoints cosigned by the quorum of %d\n", r.Witnessed, r.Checkpoints, r.Quorum)
	}
	if r.Source == "database" && r.ran {
		fmt.Fprintf(w, "stored tiles: %d compared with the recomputed hashes\n", r.Tiles)
		fmt.Fprintf(w, "event ids: %d checked against every other entry's in the tree; %d logged twice\n", r.EventIDs, r.DuplicateEventIDs)
	}
	for _, n := range r.NotChecked {
		fmt.Fprintln(w, "not checked:", n)
	}
	switch {
	case len(r.Problems) > 0:
		if f := r.FirstFailure; f != nil && f.Seq != nil {
			fmt.Fprintf(w, "first bad seq: %d\n", *f.Seq)
		}
		fmt.Fprintf(w, "verification FAILED: %d problems in %d entries and %d checkpoints\n", len(r.Problems), r.Entries, r.Checkpoints)
	case r.OriginMismatch != nil:
		fmt.Fprintf(w, "not verified: configuration error, origin %s expected, %s found\n", r.OriginMismatch.Expected, strings.Join(r.OriginMismatch.Found, ", "))
	default:
		fmt.Fprintf(w, "ok: %d entries and %d checkpoints verified\n", r.Entries, r.Checkpoints)
	}
	switch {
	case r.StateFile == "" || !r.ran:
	case r.StateSaved:
		fmt.Fprintf(w, "state: saved checkpoint %d to %s\n", r.ToSize, r.StateFile)
	case r.OK:
		fmt.Fprintf(w, "state: not saved: no checkpoint verified; %s is unchanged\n", r.StateFile)
	default:
		fmt.Fprintf(w, "state: not saved: verification did not pass; %s is unchanged\n", r.StateFile)
	}
}

// verifyMeter shows on a terminal how far verification has come: entries
// verified, entries/s and the time left. A nil meter shows nothing.
type verifyMeter struct {
	w           io.Writer
	now         func() time.Time
	start, last time.Time
	shown       bool
}

// meterEvery is how often the meter's line is redrawn at most.
const meterEvery = 250 * time.Millisecond

// progressMeter is a meter on stderr when stderr is a terminal, else nil:
// a pipe or a file gets no progress.
func (c *call) progressMeter() *verifyMeter {
	f, ok := c.stderr.(*os.File)
	if !ok || !isTerminal(f) {
		return nil
	}
	return &verifyMeter{w: f, now: time.Now}
}

// progress is the meter as audit.VerifyWith's progress hook, or nil.
func (m *verifyMeter) progress() audit.Progress {
	if m == nil {
		return nil
	}
	return m.update
}

// update redraws the meter's line, at most every meterEvery but always
// when done reaches total.
func (m *verifyMeter) update(done, total int64) {
	t := m.now()
	if m.start.IsZero() {
		m.start = t
	}
	if m.shown && t.Sub(m.last) < meterEvery && done < total {
		return
	}
	m.last, m.shown = t, true
	fmt.Fprintf(m.w, "\r%s\x1b[K", meterLine(done, total, t.Sub(m.start)))
}

// finish clears the meter's line, so that the result is not mixed with it.
func (m *verifyMeter) finish() {
	if m != nil && m.shown {
		fmt.Fprint(m.w, "\r\x1b[K")
	}
}

// meterLine is "verified D of T entries, R entries/s, ETA E" after elapsed.
func meterLine(done, total int64, elapsed time.Duration) string {
	total = max(total, done)
	line := fmt.Sprintf("verified %d of %d entries", done, total)
	if done == 0 || elapsed < 100*time.Millisecond {
		return line
	}
	rate := float64(done) / elapsed.Seconds()
	line += fmt.Sprintf(", %.0f entries/s", rate)
	if total > done {
		line += ", ETA " + time.Duration(float64(total-done)/rate*float64(time.Second)).Round(time.Second).String()
	}
	return line
}

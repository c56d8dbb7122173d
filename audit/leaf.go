// Package audit is the mediator's tamper-evident, append-only log. It
// follows the design of Certificate Transparency (RFC 6962) through
// golang.org/x/mod/sumdb/tlog: entry seq is the leaf index, leaf hashes are
// SHA-256(0x00 ‖ leaf), interior nodes SHA-256(0x01 ‖ l ‖ r), and every hash
// a proof or root needs is stored, so proofs cost O(log n) hash reads and no
// rebuild. Checkpoints are C2SP tlog-checkpoints in signed notes
// (golang.org/x/mod/sumdb/note), verifiable by anyone holding the verifier
// key.
//
// The tree code never knows where hashes live: it reads them through
// tlog.HashReader. Store implements that over PostgreSQL; a bundle verifier
// implements it over nothing at all (the proofs carry the hashes).
package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/go-json-experiment/json/jsontext"
)

// Entry is something to append. Record is the JSON object the leaf is made
// of; it must not itself contain the keys "seq" or "ingested_at", which the
// log adds.
type Entry struct {
	// Kind names the entry: an event kind ("message", …) or an internal
	// action ("escrow.deposit", …).
	Kind string
	// EventID, when set, makes the append idempotent: an entry whose
	// EventID is already in the log is not appended again.
	EventID string
	// ConversationID and OccurredAt index the entry for searches.
	ConversationID string
	OccurredAt     time.Time
	Record         any
}

// ingestedAtLayout is the leaf's timestamp format: UTC with microseconds,
// exactly what PostgreSQL's timestamptz keeps, so the column and the leaf
// always agree.
const ingestedAtLayout = "2006-01-02T15:04:05.000000Z"

// EncodeLeaf returns the leaf bytes for record at seq: the RFC 8785
// canonical JSON of the record's members plus "seq" and "ingested_at".
func EncodeLeaf(record any, seq int64, ingestedAt time.Time) ([]byte, error) {
	body, err := json.Marshal(record)
	if err != nil {
		return nil, fmt.Errorf("audit: encode record: %w", err)
	}
	body = bytes.TrimSpace(body)
	if len(body) < 2 || body[0] != '{' {
		return nil, errors.New("audit: a record must be a JSON object")
	}
	var b bytes.Buffer
	b.Grow(len(body) + 64)
	b.WriteString(`{"ingested_at":"`)
	b.WriteString(ingestedAt.UTC().Format(ingestedAtLayout))
	b.WriteString(`","seq":`)
	b.WriteString(strconv.FormatInt(seq, 10))
	if len(bytes.TrimSpace(body[1:len(body)-1])) > 0 {
		b.WriteByte(',')
	}
	b.Write(body[1:])
	// Canonicalize applies RFC 8785 (sorted members, normalized strings and
	// numbers) and refuses duplicate member names, so a record that sets seq
	// or ingested_at itself is an error, never a silent override.
	leaf := jsontext.Value(b.Bytes())
	if err := leaf.Canonicalize(); err != nil {
		return nil, fmt.Errorf("audit: canonicalize leaf (a record must not set seq or ingested_at): %w", err)
	}
	return leaf, nil
}

// LeafFields are the members of a leaf that the log indexes on.
type LeafFields struct {
	Seq            int64  `json:"seq"`
	IngestedAt     string `json:"ingested_at"`
	Kind           string `json:"kind"`
	EventID        string `json:"event_id"`
	ConversationID string `json:"conversation_id"`
}

// ParseLeaf decodes the indexed members of a leaf, and the whole record
// (without seq and ingested_at) as a JSON object.
func ParseLeaf(leaf []byte) (LeafFields, map[string]any, error) {
	var f LeafFields
	if err := json.Unmarshal(leaf, &f); err != nil {
		return f, nil, fmt.Errorf("audit: parse leaf: %w", err)
	}
	var rec map[string]any
	if err := json.Unmarshal(leaf, &rec); err != nil {
		return f, nil, fmt.Errorf("audit: parse leaf: %w", err)
	}
	delete(rec, "seq")
	delete(rec, "ingested_at")
	return f, rec, nil
}

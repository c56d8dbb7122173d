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
// tlog.HashReader. The log's tables implement that over PostgreSQL; a
// bundle verifier implements it over nothing at all (the proofs carry the
// hashes).
//
// The log has two faces. Log is the published one: appends through a
// group-commit queue, the latest checkpoint its witnesses cosigned, and
// entries, proofs and evidence bundles under it. TxAppender appends inside
// a transaction another package owns (access, escrow), so a row and its
// entry commit together. Verify and CheckWitnesses read the tables as they
// are, published or not, for `mediator audit verify`.
package audit

import (
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
	// EventID, when set, makes the append idempotent per Submitter: an
	// entry whose Submitter and EventID are already in the log with the
	// same record is not appended again, and one with a different record
	// is refused (Appended.Conflict).
	EventID string
	// Submitter is who sent the entry (the authenticated subject); event
	// ids are unique per submitter. The record carries it too, so the leaf
	// says who submitted.
	Submitter string
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
	p, err := prepareLeaf(record)
	if err != nil {
		return nil, err
	}
	return p.leaf(seq, ingestedAt), nil
}

// preparedLeaf is a record canonicalized before it has a seq, with the
// offsets where the "ingested_at" and "seq" members belong in sorted order.
// It lets the expensive canonicalization happen outside the sequencer lock;
// inside it, making the leaf is a splice.
type preparedLeaf struct {
	canon       []byte
	atIngested  int // offset of the member "ingested_at" precedes, or of the closing brace
	atSeq       int // likewise for "seq"
	emptyObject bool
}

// CanonicalRecord is a record that writes its own RFC 8785 canonical JSON
// object, sparing the generic marshal-and-canonicalize. AppendCanonicalJSON
// must append exactly what canonicalizing the record's encoding/json form
// gives, with no "seq" or "ingested_at" member.
type CanonicalRecord interface {
	AppendCanonicalJSON(b []byte) []byte
}

// prepareLeaf canonicalizes record (RFC 8785) and finds where seq and
// ingested_at go. The record must be a JSON object without those members.
func prepareLeaf(record any) (preparedLeaf, error) {
	if cr, ok := record.(CanonicalRecord); ok {
		return prepareCanonical(cr.AppendCanonicalJSON(make([]byte, 0, 512)))
	}
	body, err := json.Marshal(record)
	if err != nil {
		return preparedLeaf{}, fmt.Errorf("audit: encode record: %w", err)
	}
	// Canonicalize applies RFC 8785 and refuses duplicate member names.
	canon := jsontext.Value(body)
	if err := canon.Canonicalize(); err != nil {
		return preparedLeaf{}, fmt.Errorf("audit: canonicalize record: %w", err)
	}
	return prepareCanonical(canon)
}

// prepareCanonical finds the insertion points in an already canonical
// object with a byte scan of its top-level member names. Comparing a name's
// raw (escaped) bytes with "ingested_at" and "seq" orders it as its decoded
// text would: an escape starts with '\' (0x5C) and stands for '"', '\' or
// a control character, all of which, like 0x5C itself, sort below every
// byte of those two names ([_a-z], 0x5F and up).
func prepareCanonical(canon []byte) (preparedLeaf, error) {
	if len(canon) < 2 || canon[0] != '{' || canon[len(canon)-1] != '}' {
		return preparedLeaf{}, errors.New("audit: a record must be a JSON object")
	}
	p := preparedLeaf{canon: canon, atIngested: -1, atSeq: -1}
	members := 0
	depth, inString := 0, false
	for i := 1; i < len(canon)-1; i++ {
		c := canon[i]
		if inString {
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			if depth == 0 && (i == 1 || canon[i-1] == ',') {
				// A top-level member name starts here.
				end := i + 1
				for end < len(canon) && canon[end] != '"' {
					if canon[end] == '\\' {
						end++
					}
					end++
				}
				if end >= len(canon) {
					return preparedLeaf{}, errors.New("audit: record is not canonical JSON")
				}
				name := string(canon[i+1 : end])
				if name == "ingested_at" || name == "seq" {
					return preparedLeaf{}, fmt.Errorf("audit: a record must not set %q", name)
				}
				if p.atIngested < 0 && name > "ingested_at" {
					p.atIngested = i
				}
				if p.atSeq < 0 && name > "seq" {
					p.atSeq = i
				}
				members++
				i = end
				continue
			}
			inString = true
		case '{', '[':
			depth++
		case '}', ']':
			depth--
		}
	}
	end := len(canon) - 1
	if p.atIngested < 0 {
		p.atIngested = end
	}
	if p.atSeq < 0 {
		p.atSeq = end
	}
	p.emptyObject = members == 0
	return p, nil
}

// leaf splices seq and ingested_at into the prepared record.
func (p preparedLeaf) leaf(seq int64, ingestedAt time.Time) []byte {
	end := len(p.canon) - 1
	ing := `"ingested_at":"` + ingestedAt.UTC().Format(ingestedAtLayout) + `"`
	sq := `"seq":` + strconv.FormatInt(seq, 10)
	out := make([]byte, 0, len(p.canon)+len(ing)+len(sq)+2)
	// insert writes member m at offset at: before a member it is followed by
	// a comma; at the closing brace it follows one, unless nothing precedes.
	last := 0
	wrote := !p.emptyObject
	insert := func(at int, m string) {
		out = append(out, p.canon[last:at]...)
		last = at
		if at == end {
			if wrote {
				out = append(out, ',')
			}
			out = append(out, m...)
		} else {
			out = append(out, m...)
			out = append(out, ',')
		}
		wrote = true
	}
	insert(p.atIngested, ing)
	insert(p.atSeq, sq)
	return append(out, p.canon[last:]...)
}

// LeafFields are the members of a leaf that the log indexes on.
type LeafFields struct {
	Seq            int64  `json:"seq"`
	IngestedAt     string `json:"ingested_at"`
	Kind           string `json:"kind"`
	EventID        string `json:"event_id"`
	Submitter      string `json:"submitter"`
	ConversationID string `json:"conversation_id"`
	// OccurredAt is the record's occurred_at (events only), nil without.
	OccurredAt *string `json:"occurred_at"`
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

package audit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/go-json-experiment/json/jsontext"
)

// The reference reading of a leaf's indexed members that verify used
// before it read binary COPY: the verify pipeline's leafScanner must agree
// with it (TestLeafScannerAgreesWithParseLeafFields).

// parseLeafFields reads only the indexed members of a leaf, checking that
// the whole leaf is one valid JSON object: what verification needs, at a
// fraction of ParseLeaf's cost.
func parseLeafFields(leaf []byte) (LeafFields, error) {
	var f LeafFields
	dec := jsontext.NewDecoder(bytes.NewReader(leaf))
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return f, errors.New("audit: parse leaf: not a JSON object")
	}
	for dec.PeekKind() != '}' {
		tok, err := dec.ReadToken()
		if err != nil {
			return f, fmt.Errorf("audit: parse leaf: %w", err)
		}
		name := tok.String() // a token is void after the next read
		str := func(dst *string) error {
			tok, err := dec.ReadToken()
			if err != nil {
				return err
			}
			if tok.Kind() != '"' {
				return fmt.Errorf("member %s is not a string", name)
			}
			*dst = tok.String()
			return nil
		}
		switch name {
		case "seq":
			tok, rerr := dec.ReadToken()
			if rerr == nil && tok.Kind() != '0' {
				rerr = errors.New("member seq is not a number")
			}
			if rerr == nil {
				f.Seq, rerr = tok.Int()
			}
			err = rerr
		case "ingested_at":
			err = str(&f.IngestedAt)
		case "kind":
			err = str(&f.Kind)
		case "event_id":
			err = str(&f.EventID)
		case "submitter":
			err = str(&f.Submitter)
		case "conversation_id":
			err = str(&f.ConversationID)
		case "occurred_at":
			var at string
			if err = str(&at); err == nil {
				f.OccurredAt = &at
			}
		default:
			err = dec.SkipValue()
		}
		if err != nil {
			return f, fmt.Errorf("audit: parse leaf: %w", err)
		}
	}
	if _, err := dec.ReadToken(); err != nil {
		return f, fmt.Errorf("audit: parse leaf: %w", err)
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return f, errors.New("audit: parse leaf: data after the object")
	}
	return f, nil
}

// columnsDiffer names the first indexed or filtered column of an entry's
// row that says something other than its leaf, or "".
func columnsDiffer(f LeafFields, kind, eventID, submitter, convo string, occurred *time.Time, ingested time.Time) string {
	switch {
	case f.Kind != kind:
		return "kind"
	case f.EventID != eventID:
		return "event_id"
	case f.Submitter != submitter:
		return "submitter"
	case f.ConversationID != convo:
		return "conversation_id"
	}
	if at, err := time.Parse(ingestedAtLayout, f.IngestedAt); err != nil || !at.Equal(ingested) {
		return "ingested_at"
	}
	switch {
	case f.OccurredAt == nil && occurred != nil, f.OccurredAt != nil && occurred == nil:
		return "occurred_at"
	case f.OccurredAt != nil:
		if at, err := time.Parse(time.RFC3339Nano, *f.OccurredAt); err != nil || !at.Equal(*occurred) {
			return "occurred_at"
		}
	}
	return ""
}

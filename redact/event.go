// Package redact defines the delivery-metadata event the mediator accepts,
// validates it strictly, and minimizes it into the record the audit log
// keeps. Everything here is a pure function: keys arrive as values, nothing
// does I/O.
//
// Decoding refuses unknown fields (names compared byte for byte, so a
// look-alike such as a Cyrillic "о" is unknown), duplicate keys, and any
// field that could carry message content (body, text, content, plaintext,
// attachment, attachment_url) at any depth. Every problem is reported with the
// event's index and a JSON path.
package redact

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// Event is one delivery-metadata event as a gateway sends it.
type Event struct {
	EventID        string     `json:"event_id"`
	Kind           string     `json:"kind"`
	ConversationID string     `json:"conversation_id"`
	MessageHash    string     `json:"message_hash"`
	CEKHash        string     `json:"cek_hash,omitempty"`
	Sender         string     `json:"sender"`
	Recipients     []string   `json:"recipients"`
	Transport      string     `json:"transport"`
	Status         string     `json:"status"`
	OccurredAt     string     `json:"occurred_at"`
	Carrier        *Carrier   `json:"carrier,omitempty"`
	Downgrade      *Downgrade `json:"downgrade,omitempty"`
	Client         *Client    `json:"client,omitempty"`
}

// Carrier identifies the mobile network.
type Carrier struct {
	MCC string `json:"mcc"`
	MNC string `json:"mnc,omitempty"`
}

// Downgrade records a fall back from one transport to another.
type Downgrade struct {
	From   string `json:"from"`
	To     string `json:"to"`
	Reason string `json:"reason,omitempty"`
}

// Client names the sending client.
type Client struct {
	Platform string `json:"platform"`
	Version  string `json:"version,omitempty"`
}

// Problem is one reason an event was refused.
type Problem struct {
	// Index is the event's position in the request (0-based).
	Index int `json:"index"`
	// Path is a JSON path within the event, such as "$.recipients[2]".
	Path string `json:"path"`
	// Code is stable and machine-readable, e.g. "content_not_accepted".
	Code string `json:"code"`
	// Message is for humans. It never quotes the offending value.
	Message string `json:"message"`
}

// Problem codes.
const (
	CodeContentNotAccepted = "content_not_accepted"
	CodeUnknownField       = "unknown_field"
	CodeDuplicateKey       = "duplicate_key"
	CodeMalformed          = "malformed_json"
	CodeInvalidField       = "invalid_field"
	CodeMissingField       = "missing_field"
	CodeTooDeep            = "too_deep"
)

// contentFields may carry message content and are refused wherever they
// appear, whatever their value.
var contentFields = map[string]bool{
	"body": true, "text": true, "content": true, "plaintext": true,
	"attachment": true, "attachment_url": true,
}

// schema lists the exact field names allowed in each object of an event.
var schema = map[string]map[string]bool{
	"$": {
		"event_id": true, "kind": true, "conversation_id": true, "message_hash": true,
		"cek_hash": true, "sender": true, "recipients": true, "transport": true,
		"status": true, "occurred_at": true, "carrier": true, "downgrade": true, "client": true,
	},
	"carrier":   {"mcc": true, "mnc": true},
	"downgrade": {"from": true, "to": true, "reason": true},
	"client":    {"platform": true, "version": true},
}

// maxDepth bounds nesting; a valid event is three levels deep at most.
const maxDepth = 8

// DecodeEvent decodes one event from raw JSON with the strict rules of the
// package comment. On failure it returns the problems (with Index set to
// index) and a nil event; the value of a refused field is never echoed.
func DecodeEvent(index int, raw []byte) (*Event, []Problem) {
	if !utf8.Valid(raw) {
		return nil, []Problem{{Index: index, Path: "$", Code: CodeMalformed, Message: "event is not valid UTF-8"}}
	}
	// Fast path: encoding/json/v2 semantics already refuse unknown members
	// at every level (so any content field), duplicate names and invalid
	// UTF-8, and match names exactly. Only a refused event pays for the
	// walker, which explains every problem.
	var ev Event
	if err := jsonv2.Unmarshal(raw, &ev, jsonv2.RejectUnknownMembers(true)); err == nil {
		return &ev, nil
	}
	w := walker{index: index}
	w.check(raw)
	if len(w.problems) > 0 {
		return nil, w.problems
	}
	ev = Event{}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ev); err != nil {
		return nil, []Problem{typeProblem(index, err)}
	}
	return &ev, nil
}

// typeProblem turns a json type error into a Problem without the value.
func typeProblem(index int, err error) Problem {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		path := "$"
		if te.Field != "" {
			path = "$." + te.Field
		}
		return Problem{Index: index, Path: path, Code: CodeInvalidField, Message: "wrong type: want " + te.Type.String()}
	}
	return Problem{Index: index, Path: "$", Code: CodeMalformed, Message: "event is not a valid JSON object"}
}

// walker checks the raw token stream before it is decoded into an Event:
// duplicate keys and content fields cannot be seen after decoding, and
// encoding/json matches names case-insensitively, so exact-name checks must
// happen here.
type walker struct {
	index    int
	problems []Problem
}

func (w *walker) add(path, code, msg string) {
	w.problems = append(w.problems, Problem{Index: w.index, Path: path, Code: code, Message: msg})
}

func (w *walker) check(raw []byte) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		w.add("$", CodeMalformed, "event is not valid JSON")
		return
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		w.add("$", CodeMalformed, "event must be a JSON object")
		return
	}
	if err := w.object(dec, "$", "$", 1); err != nil {
		if errors.Is(err, errTooDeep) {
			return
		}
		w.problems = append(w.problems[:0], Problem{Index: w.index, Path: "$", Code: CodeMalformed, Message: "event is not valid JSON"})
		return
	}
	if _, err := dec.Token(); err != io.EOF {
		w.add("$", CodeMalformed, "trailing data after the event")
	}
}

// object walks an object whose '{' was consumed. schemaKey names the field
// set allowed here ("" when the object is itself unexpected).
func (w *walker) object(dec *json.Decoder, path, schemaKey string, depth int) error {
	if depth > maxDepth {
		w.add(path, CodeTooDeep, "nesting too deep")
		return errTooDeep
	}
	allowed := schema[schemaKey]
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		child := path + "." + pathName(key)
		switch {
		case seen[key]:
			w.add(child, CodeDuplicateKey, "duplicate key")
		case contentFields[strings.ToLower(key)]:
			w.add(child, CodeContentNotAccepted, "message content is never accepted")
		case allowed != nil && !allowed[key]:
			w.add(child, CodeUnknownField, "unknown field")
		}
		seen[key] = true
		next := ""
		if schemaKey == "$" && schema[key] != nil {
			next = key
		}
		if err := w.value(dec, child, next, depth); err != nil {
			return err
		}
	}
	_, err := dec.Token() // '}'
	return err
}

var errTooDeep = errors.New("too deep")

func (w *walker) value(dec *json.Decoder, path, schemaKey string, depth int) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	switch d {
	case '{':
		return w.object(dec, path, schemaKey, depth+1)
	case '[':
		if depth+1 > maxDepth {
			w.add(path, CodeTooDeep, "nesting too deep")
			return errTooDeep
		}
		for i := 0; dec.More(); i++ {
			if err := w.value(dec, path+"["+strconv.Itoa(i)+"]", "", depth+1); err != nil {
				return err
			}
		}
		_, err := dec.Token() // ']'
		return err
	}
	return nil
}

// pathName renders a key for a path without echoing arbitrary input: plain
// ASCII names as they are, anything else quoted and escaped.
func pathName(key string) string {
	for _, r := range key {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_') {
			q := strconv.QuoteToASCII(key)
			if len(q) > 80 {
				q = q[:77] + `..."`
			}
			return "[" + q + "]"
		}
	}
	if len(key) > 64 {
		return key[:64] + "..."
	}
	return key
}

// SplitBatch splits a request body into raw events: a JSON object
// {"events":[...]} when ndjson is false, else one event per non-blank line.
// maxEvents bounds the count. A body-level problem has Index -1.
func SplitBatch(body []byte, ndjson bool, maxEvents int) ([]json.RawMessage, *Problem) {
	if !utf8.Valid(body) {
		return nil, &Problem{Index: -1, Path: "$", Code: CodeMalformed, Message: "body is not valid UTF-8"}
	}
	if ndjson {
		var out []json.RawMessage
		for _, line := range bytes.Split(body, []byte("\n")) {
			line = bytes.TrimSpace(line)
			if len(line) == 0 {
				continue
			}
			if len(out) == maxEvents {
				return nil, &Problem{Index: -1, Path: "$", Code: CodeInvalidField, Message: fmt.Sprintf("more than %d events", maxEvents)}
			}
			out = append(out, json.RawMessage(line))
		}
		return out, nil
	}
	// jsontext reads the envelope without decoding the events, and refuses
	// duplicate names and invalid UTF-8 on its own.
	malformed := &Problem{Index: -1, Path: "$", Code: CodeMalformed, Message: `body must be a JSON object {"events":[...]}`}
	dec := jsontext.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return nil, malformed
	}
	var events []json.RawMessage
	seenEvents := false
	for dec.PeekKind() == '"' {
		tok, err := dec.ReadToken()
		if err != nil {
			return nil, malformed
		}
		key := tok.String()
		if key != "events" {
			code := CodeUnknownField
			if contentFields[strings.ToLower(key)] {
				code = CodeContentNotAccepted
			}
			return nil, &Problem{Index: -1, Path: "$." + pathName(key), Code: code, Message: `only "events" is allowed at the top level`}
		}
		if seenEvents {
			return nil, &Problem{Index: -1, Path: "$.events", Code: CodeDuplicateKey, Message: "duplicate key"}
		}
		seenEvents = true
		if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '[' {
			return nil, &Problem{Index: -1, Path: "$.events", Code: CodeMalformed, Message: "events must be an array"}
		}
		for dec.PeekKind() != ']' {
			if len(events) == maxEvents {
				return nil, &Problem{Index: -1, Path: "$.events", Code: CodeInvalidField, Message: fmt.Sprintf("more than %d events", maxEvents)}
			}
			raw, err := dec.ReadValue()
			if err != nil {
				return nil, &Problem{Index: -1, Path: "$.events", Code: CodeMalformed, Message: "body is not valid JSON"}
			}
			// ReadValue's bytes are only valid until the next read.
			events = append(events, json.RawMessage(bytes.Clone(raw)))
		}
		if _, err := dec.ReadToken(); err != nil {
			return nil, malformed
		}
	}
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '}' {
		if err != nil && strings.Contains(err.Error(), "duplicate") {
			return nil, &Problem{Index: -1, Path: "$.events", Code: CodeDuplicateKey, Message: "duplicate key"}
		}
		return nil, malformed
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return nil, &Problem{Index: -1, Path: "$", Code: CodeMalformed, Message: "trailing data after the body"}
	}
	if !seenEvents {
		return nil, &Problem{Index: -1, Path: "$.events", Code: CodeMissingField, Message: "events is required"}
	}
	return events, nil
}

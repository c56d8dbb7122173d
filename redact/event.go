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
	"reflect"
	"slices"
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
	// CodeNotAPseudonym: an identifier field (conversation_id, sender,
	// recipients) holds something other than a well-formed pseudonym.
	CodeNotAPseudonym = "not_a_pseudonym"
	// CodeTooManyRecipients: the events of one request name more
	// recipients in all than the profile's max_recipients_per_request.
	CodeTooManyRecipients = "too_many_recipients"
)

// isContentField reports whether a field name (compared in lower case) may
// carry message content; such fields are refused wherever they appear,
// whatever their value.
func isContentField(name string) bool {
	switch strings.ToLower(name) {
	case "body", "text", "content", "plaintext", "attachment", "attachment_url":
		return true
	}
	return false
}

// objectFields returns the exact field names allowed in an object of an
// event: "$" is the event itself, the others its nested objects. It
// returns nil for a name that is not one of those objects.
func objectFields(object string) []string {
	switch object {
	case "$":
		return []string{"event_id", "kind", "conversation_id", "message_hash", "cek_hash", "sender", "recipients",
			"transport", "status", "occurred_at", "carrier", "downgrade", "client"}
	case "carrier":
		return []string{"mcc", "mnc"}
	case "downgrade":
		return []string{"from", "to", "reason"}
	case "client":
		return []string{"platform", "version"}
	}
	return nil
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
	// The walker found every name allowed: a value has the wrong type.
	ev = Event{}
	err := jsonv2.Unmarshal(raw, &ev, jsonv2.RejectUnknownMembers(true))
	if err == nil {
		return &ev, nil
	}
	return nil, []Problem{typeProblem(index, err)}
}

// typeProblem turns a decoding error into a Problem without the value.
func typeProblem(index int, err error) Problem {
	var se *jsonv2.SemanticError
	if errors.As(err, &se) && se.GoType != nil {
		return Problem{Index: index, Path: pointerPath(string(se.JSONPointer)), Code: CodeInvalidField,
			Message: "wrong type: want " + kindName(se.GoType.Kind())}
	}
	return Problem{Index: index, Path: "$", Code: CodeMalformed, Message: "event is not a valid JSON object"}
}

// pointerPath renders a JSON pointer ("/recipients/1") as the problem path
// style ("$.recipients[1]"), escaping names as pathName does.
func pointerPath(ptr string) string {
	path := "$"
	if ptr == "" {
		return path
	}
	for _, tok := range strings.Split(ptr[1:], "/") {
		tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
		if _, err := strconv.Atoi(tok); err == nil {
			path += "[" + tok + "]"
		} else {
			path += "." + pathName(tok)
		}
	}
	return path
}

func kindName(k reflect.Kind) string {
	switch k {
	case reflect.String:
		return "string"
	case reflect.Slice, reflect.Array:
		return "array"
	case reflect.Struct, reflect.Map, reflect.Pointer:
		return "object"
	}
	return k.String()
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
	allowed := objectFields(schemaKey)
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
		case isContentField(key):
			w.add(child, CodeContentNotAccepted, "message content is never accepted")
		case allowed != nil && !slices.Contains(allowed, key):
			w.add(child, CodeUnknownField, "unknown field")
		}
		seen[key] = true
		next := ""
		if schemaKey == "$" && key != "$" && objectFields(key) != nil {
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
	duplicate := &Problem{Index: -1, Path: "$.events", Code: CodeDuplicateKey, Message: "duplicate key"}
	for dec.PeekKind() == '"' {
		tok, err := dec.ReadToken()
		if errors.Is(err, jsontext.ErrDuplicateName) {
			// Any other name was refused where it first appeared.
			return nil, duplicate
		}
		if err != nil {
			return nil, malformed
		}
		key := tok.String()
		if key != "events" {
			code := CodeUnknownField
			if isContentField(key) {
				code = CodeContentNotAccepted
			}
			return nil, &Problem{Index: -1, Path: "$." + pathName(key), Code: code, Message: `only "events" is allowed at the top level`}
		}
		if seenEvents {
			return nil, duplicate
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

// CountRecipients returns the recipients named by all of events, or a
// body-level problem when they are more than limit.
func CountRecipients(events []*Event, limit int) *Problem {
	n := 0
	for _, ev := range events {
		if ev != nil {
			n += len(ev.Recipients)
		}
	}
	if n > limit {
		return &Problem{Index: -1, Path: "$.events", Code: CodeTooManyRecipients,
			Message: fmt.Sprintf("%d recipients in one request, more than %d; send fewer events per request", n, limit)}
	}
	return nil
}

// DecodeBatch decodes the events of a request body: events[i] is event i,
// or nil when it was refused, with the reasons in problems. A problem with
// the body itself (not the envelope, too many events) refuses every event
// and is returned alone, with Index -1.
//
// A body whose every event is valid is parsed once: the whole envelope is
// decoded in one pass under the same strict rules. Only a body with a
// problem pays for splitting and explaining it event by event.
func DecodeBatch(body []byte, ndjson bool, maxEvents int) ([]*Event, []Problem, *Problem) {
	if !ndjson {
		var envelope struct {
			Events []Event `json:"events"`
		}
		err := jsonv2.Unmarshal(body, &envelope, jsonv2.RejectUnknownMembers(true))
		if err == nil && envelope.Events != nil && len(envelope.Events) <= maxEvents {
			out := make([]*Event, len(envelope.Events))
			for i := range envelope.Events {
				out[i] = &envelope.Events[i]
			}
			return out, nil, nil
		}
	}
	raws, bodyProblem := SplitBatch(body, ndjson, maxEvents)
	if bodyProblem != nil {
		return nil, nil, bodyProblem
	}
	out := make([]*Event, len(raws))
	var problems []Problem
	for i, raw := range raws {
		ev, probs := DecodeEvent(i, raw)
		out[i] = ev
		problems = append(problems, probs...)
	}
	return out, problems, nil
}

// RefusalCode is the code of a request refused for problems, as ingest
// answers it and a client that refuses on its behalf must too:
// content_not_accepted if any event carried content, else
// not_a_pseudonym if an identifier field held anything but a pseudonym,
// else identifier_in_opaque_field (client.version) or
// too_many_recipients, else validation_failed.
func RefusalCode(problems []Problem) string {
	code := "validation_failed"
	for _, p := range problems {
		switch p.Code {
		case CodeContentNotAccepted:
			return p.Code
		case CodeNotAPseudonym:
			code = p.Code
		case CodeIdentifierInOpaqueField, CodeTooManyRecipients:
			if code != CodeNotAPseudonym {
				code = p.Code
			}
		}
	}
	return code
}

// CountEvents counts the distinct events problems, sorted by index, are
// about.
func CountEvents(problems []Problem) int {
	n, last := 0, -2
	for _, p := range problems {
		if p.Index != last {
			n++
			last = p.Index
		}
	}
	return n
}

package redact

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/mediatorhq/mediator/pseudonym"
)

// Profile is the minimization profile: how much of each event is kept. The
// zero value is not useful; start from DefaultProfile.
type Profile struct {
	// Granularity truncates occurred_at (default 1 minute).
	Granularity Duration `json:"granularity"`
	// MaxFutureSkew refuses events dated further ahead than this.
	MaxFutureSkew Duration `json:"max_future_skew"`
	// KeepMNC keeps carrier.mnc; dropped by default since MCC+MNC+time
	// narrows a person down.
	KeepMNC bool `json:"keep_mnc"`
	// MaxRecipients bounds recipients per event.
	MaxRecipients int `json:"max_recipients"`
	// MaxRecipientsPerRequest bounds recipients over all the events of one
	// request: each recipient costs a pseudonym and its share of a leaf, so
	// this bounds what one request can make the service hold (default
	// 50,000; a request over it is refused whole with too_many_recipients).
	MaxRecipientsPerRequest int `json:"max_recipients_per_request"`
}

// Duration is a time.Duration written as "1m" in profile files.
type Duration struct{ time.Duration }

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"1m\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalJSON writes a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// DefaultProfile keeps the architecture's defaults.
func DefaultProfile() Profile {
	return Profile{
		Granularity:             Duration{time.Minute},
		MaxFutureSkew:           Duration{5 * time.Minute},
		MaxRecipients:           1024,
		MaxRecipientsPerRequest: 50000,
	}
}

// ParseProfile reads a profile (JSON, fields as in Profile, unknown fields
// refused); fields it omits keep their defaults. The caller reads the file.
func ParseProfile(b []byte) (Profile, error) {
	p := DefaultProfile()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return p, fmt.Errorf("redact: profile: %w", err)
	}
	if p.Granularity.Duration <= 0 || p.MaxFutureSkew.Duration < 0 || p.MaxRecipients <= 0 || p.MaxRecipientsPerRequest <= 0 {
		return p, fmt.Errorf("redact: profile: granularity, max_recipients and max_recipients_per_request must be positive")
	}
	return p, nil
}

// RecordVersion is the version of the event records Minimize makes,
// written as the record's "v". Version 2 records hold identifiers only as
// VOPRF pseudonyms the gateway's side computed ("ps1_…") and the event id
// only as EventIDDigest. Records without "v" are of the HMAC era: senders
// and recipients as "hmac-sha256:<key version>:<hex>" under a key the
// mediator held, conversation and event ids as sent. The two kinds of
// pseudonym are unrelated: nothing maps one to the other.
const RecordVersion = 2

// Record is what the log keeps of an event: no raw identifier, coarse time.
type Record struct {
	// V is RecordVersion.
	V int `json:"v,omitempty"`
	// EventID is EventIDDigest of the submitter and the event id it sent,
	// never the id itself.
	EventID        string         `json:"event_id"`
	Kind           string         `json:"kind"`
	ConversationID string         `json:"conversation_id"`
	MessageHash    string         `json:"message_hash"`
	CEKHash        string         `json:"cek_hash,omitempty"`
	Sender         string         `json:"sender"`
	Recipients     []string       `json:"recipients"`
	Transport      string         `json:"transport"`
	Status         string         `json:"status"`
	OccurredAt     string         `json:"occurred_at"`
	Carrier        *RecordCarrier `json:"carrier,omitempty"`
	Downgrade      *Downgrade     `json:"downgrade,omitempty"`
	Client         *Client        `json:"client,omitempty"`
	// Submitter is the authenticated subject that sent the event (the
	// ingest token's sub), set by ingest, not by the gateway: event ids are
	// unique per submitter, so no one can claim another gateway's id.
	Submitter string `json:"submitter,omitempty"`

	// Occurred is OccurredAt as a time, for indexing; not part of the record.
	Occurred time.Time `json:"-"`
}

// RecordCarrier is the carrier as kept: MNC only when the profile says so.
type RecordCarrier struct {
	MCC string `json:"mcc"`
	MNC string `json:"mnc,omitempty"`
}

// The allowed values of the enumerated fields (ARCHITECTURE.md, "Events in").
func isKind(v string) bool {
	switch v {
	case "message", "receipt", "downgrade", "key_change", "membership_change":
		return true
	}
	return false
}

func isTransport(v string) bool {
	switch v {
	case "rcs-e2ee", "rcs", "sms", "mms", "app-e2ee", "imessage":
		return true
	}
	return false
}

func isStatus(v string) bool {
	switch v {
	case "sent", "delivered", "read", "failed":
		return true
	}
	return false
}

func isPlatform(v string) bool {
	switch v {
	case "android", "ios", "web":
		return true
	}
	return false
}

const (
	maxIDLen      = 128
	maxReasonLen  = 200
	maxVersionLen = 64
	redactedMark  = "[redacted]"
)

var (
	mccPattern = regexp.MustCompile(`^[0-9]{3}$`)
	mncPattern = regexp.MustCompile(`^[0-9]{2,3}$`)
	// versionPattern is a release version: an optional "v", one to four
	// numbers joined by dots, then optional pre-release and build parts of
	// letters, digits and dots, as in semantic versioning.
	versionPattern = regexp.MustCompile(`^v?[0-9]{1,6}(?:\.[0-9]{1,6}){0,3}(?:-[0-9A-Za-z]{1,20}(?:\.[0-9A-Za-z]{1,20}){0,3})?(?:\+[0-9A-Za-z]{1,20}(?:\.[0-9A-Za-z]{1,20}){0,3})?$`)
	// Things in a free-text reason that could identify someone.
	urlPattern = regexp.MustCompile(`(?i)\b(?:https?|ftp|sms|tel|mailto):[^\s]*|\bwww\.[^\s]+`)
)

// validHash reports whether s is "sha256:" and 64 lowercase hex digits.
func validHash(s string) bool {
	const prefix = "sha256:"
	if len(s) != len(prefix)+64 || s[:len(prefix)] != prefix {
		return false
	}
	for _, c := range []byte(s[len(prefix):]) {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Minimizer minimizes the events of one submitter with one profile.
type Minimizer struct {
	profile   Profile
	submitter string
	digest    hash.Hash
	buf       []byte
}

// NewMinimizer returns a Minimizer for p and the authenticated subject
// that sent the events (the token's sub), whose event ids it binds. It is
// not safe for concurrent use: make one per request.
func NewMinimizer(p Profile, submitter string) *Minimizer {
	return &Minimizer{profile: p, submitter: submitter, digest: sha256.New()}
}

// Minimize validates ev and returns the record to keep, or the problems
// that refuse it. now is the ingest time (for the future-skew bound).
func Minimize(index int, ev *Event, p Profile, submitter string, now time.Time) (*Record, []Problem) {
	return NewMinimizer(p, submitter).Minimize(index, ev, now)
}

// EventIDDigest is what the log keeps of an event id: "eid1:" and the hex
// SHA-256 of "mediator-event-id-v1\n" + submitter + "\n" + eventID. It is
// bound to the submitter, as event ids are unique per submitter, and it
// keeps an id of any shape out of storage in readable form. (An id that
// can be guessed can be tested against it: ids are for idempotency, not
// for people.)
func EventIDDigest(submitter, eventID string) string {
	sum := sha256.Sum256([]byte(eventIDLabel + "\n" + submitter + "\n" + eventID))
	return eventIDPrefix + hex.EncodeToString(sum[:])
}

const (
	eventIDLabel  = "mediator-event-id-v1"
	eventIDPrefix = "eid1:"
)

func (m *Minimizer) eventIDDigest(eventID string) string {
	m.digest.Reset()
	m.digest.Write([]byte(eventIDLabel + "\n"))
	m.digest.Write([]byte(m.submitter))
	m.digest.Write([]byte{'\n'})
	m.digest.Write([]byte(eventID))
	m.buf = m.digest.Sum(m.buf[:0])
	return eventIDPrefix + hex.EncodeToString(m.buf)
}

// Minimize is the package-level Minimize with m's profile and submitter.
func (m *Minimizer) Minimize(index int, ev *Event, now time.Time) (*Record, []Problem) {
	p := m.profile
	var probs []Problem
	bad := func(path, code, msg string) {
		probs = append(probs, Problem{Index: index, Path: path, Code: code, Message: msg})
	}
	// An opaque id may hold anything printable: it is stored only as a
	// digest, so its shape is no one's business.
	opaque := func(path, v string) {
		switch {
		case v == "":
			bad(path, CodeMissingField, "required")
		case !Printable(v):
			bad(path, CodeInvalidField, "must be printable text without control characters")
		case len(v) > maxIDLen:
			bad(path, CodeInvalidField, fmt.Sprintf("longer than %d bytes", maxIDLen))
		}
	}
	// An identifier must arrive as a pseudonym: the mediator cannot make
	// one, as it does not hold the pseudonym service's key.
	pseudonymous := func(path, v string) {
		switch {
		case v == "":
			bad(path, CodeMissingField, "required")
		case !pseudonym.Valid(v):
			bad(path, CodeNotAPseudonym, "must be a pseudonym (ps1_…) computed through the pseudonym service; send events through the client package or the agent, which compute it")
		}
	}
	oneOf := func(path, v string, allowed func(string) bool) {
		if v == "" {
			bad(path, CodeMissingField, "required")
		} else if !allowed(v) {
			bad(path, CodeInvalidField, "not an allowed value")
		}
	}
	opaque("$.event_id", ev.EventID)
	pseudonymous("$.conversation_id", ev.ConversationID)
	oneOf("$.kind", ev.Kind, isKind)
	oneOf("$.transport", ev.Transport, isTransport)
	oneOf("$.status", ev.Status, isStatus)
	if ev.MessageHash == "" {
		bad("$.message_hash", CodeMissingField, "required")
	} else if !validHash(ev.MessageHash) {
		bad("$.message_hash", CodeInvalidField, `must be "sha256:" and 64 lowercase hex digits`)
	}
	if ev.CEKHash != "" && !validHash(ev.CEKHash) {
		bad("$.cek_hash", CodeInvalidField, `must be "sha256:" and 64 lowercase hex digits`)
	}

	rec := &Record{
		V: RecordVersion, Submitter: m.submitter, EventID: m.eventIDDigest(ev.EventID), Kind: ev.Kind, ConversationID: ev.ConversationID,
		MessageHash: ev.MessageHash, CEKHash: ev.CEKHash,
		Transport: ev.Transport, Status: ev.Status,
		Recipients: make([]string, 0, len(ev.Recipients)),
	}
	pseudonymous("$.sender", ev.Sender)
	rec.Sender = ev.Sender
	if len(ev.Recipients) > p.MaxRecipients {
		bad("$.recipients", CodeInvalidField, fmt.Sprintf("more than %d recipients", p.MaxRecipients))
	} else {
		for i, r := range ev.Recipients {
			if r == "" {
				bad("$.recipients["+strconv.Itoa(i)+"]", CodeMissingField, "empty")
				continue
			}
			pseudonymous("$.recipients["+strconv.Itoa(i)+"]", r)
			rec.Recipients = append(rec.Recipients, r)
		}
	}

	if ev.OccurredAt == "" {
		bad("$.occurred_at", CodeMissingField, "required")
	} else if t, err := time.Parse(time.RFC3339Nano, ev.OccurredAt); err != nil {
		bad("$.occurred_at", CodeInvalidField, "must be an RFC 3339 timestamp")
	} else if t.After(now.Add(p.MaxFutureSkew.Duration)) {
		bad("$.occurred_at", CodeInvalidField, "is in the future")
	} else {
		rec.Occurred = t.UTC().Truncate(p.Granularity.Duration)
		rec.OccurredAt = rec.Occurred.Format(time.RFC3339)
	}

	if c := ev.Carrier; c != nil {
		if !mccPattern.MatchString(c.MCC) {
			bad("$.carrier.mcc", CodeInvalidField, "must be 3 digits")
		}
		if c.MNC != "" && !mncPattern.MatchString(c.MNC) {
			bad("$.carrier.mnc", CodeInvalidField, "must be 2 or 3 digits")
		}
		rec.Carrier = &RecordCarrier{MCC: c.MCC}
		if p.KeepMNC {
			rec.Carrier.MNC = c.MNC
		}
	}
	if d := ev.Downgrade; d != nil {
		oneOf("$.downgrade.from", d.From, isTransport)
		oneOf("$.downgrade.to", d.To, isTransport)
		if utf8.RuneCountInString(d.Reason) > maxReasonLen {
			bad("$.downgrade.reason", CodeInvalidField, fmt.Sprintf("longer than %d characters", maxReasonLen))
		} else if !Printable(d.Reason) {
			bad("$.downgrade.reason", CodeInvalidField, "must be printable text without control characters")
		}
		rec.Downgrade = &Downgrade{From: d.From, To: d.To, Reason: RedactText(d.Reason)}
	}
	if c := ev.Client; c != nil {
		oneOf("$.client.platform", c.Platform, isPlatform)
		switch {
		case c.Version == "":
		case !Printable(c.Version):
			bad("$.client.version", CodeInvalidField, "must be printable text without control characters")
		case LooksLikeIdentifier(c.Version):
			bad("$.client.version", CodeIdentifierInOpaqueField, "looks like a phone number or an email address")
		case len(c.Version) > maxVersionLen || !versionPattern.MatchString(c.Version):
			bad("$.client.version", CodeInvalidField, "must be a version such as 5.2, 8.1.0-beta.2 or v2.24.23.78")
		}
		rec.Client = &Client{Platform: c.Platform, Version: c.Version}
	}
	if len(probs) > 0 {
		return nil, probs
	}
	return rec, nil
}

// NormalizeE164 returns "+" and the digits of s when s is written as an
// E.164 number ("+", 8 to 15 digits, optionally separated by spaces, dashes,
// dots or parentheses).
func NormalizeE164(s string) (string, bool) {
	if !strings.HasPrefix(s, "+") {
		return "", false
	}
	var b strings.Builder
	b.WriteByte('+')
	digits := 0
	for _, r := range s[1:] {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
			digits++
		case r == ' ' || r == '-' || r == '.' || r == '(' || r == ')':
		default:
			return "", false
		}
	}
	if digits < 8 || digits > 15 || b.String()[1] == '0' {
		return "", false
	}
	return b.String(), true
}

// RedactText returns s in NFKC form (see Normalize) with phone numbers,
// email addresses and URLs replaced by "[redacted]". Numbers are found
// across any separators that are not letters (see identifierSpans), so
// "415/555/0100", "415_555_0100" and full-width digits are caught too.
func RedactText(s string) string {
	if s == "" {
		return s
	}
	s = Normalize(s)
	// Cheap pre-checks keep the common reason ("peer offline") off the
	// regular expressions.
	if strings.Contains(s, ":") || strings.Contains(s, "www.") {
		s = urlPattern.ReplaceAllString(s, redactedMark)
	}
	spans := identifierSpans(s, minTextRun)
	if len(spans) == 0 {
		return s
	}
	slices.SortFunc(spans, func(a, b [2]int) int { return cmp.Compare(a[0], b[0]) })
	var b strings.Builder
	last := 0
	for _, sp := range spans {
		if sp[0] < last { // overlaps the previous span
			if sp[1] > last {
				last = sp[1]
			}
			continue
		}
		b.WriteString(s[last:sp[0]])
		b.WriteString(redactedMark)
		last = sp[1]
	}
	b.WriteString(s[last:])
	return b.String()
}

// Printable reports whether s is valid UTF-8 without control characters.
func Printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return false
		}
	}
	return true
}

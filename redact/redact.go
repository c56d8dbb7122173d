package redact

import (
	"bytes"
	"cmp"
	"crypto/hmac"
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

// PseudonymKey is a versioned HMAC-SHA-256 key. Key is secret: never log it.
type PseudonymKey struct {
	Version int
	Key     []byte
}

// Record is what the log keeps of an event: no raw identifier, coarse time.
type Record struct {
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

// Minimizer minimizes many events with one profile and key, reusing its
// HMAC state. It is not safe for concurrent use: make one per request.
type Minimizer struct {
	profile Profile
	ps      pseudonymizer
}

// NewMinimizer returns a Minimizer for p and key.
func NewMinimizer(p Profile, key PseudonymKey) *Minimizer {
	return &Minimizer{profile: p, ps: pseudonymizer{key: key, mac: hmac.New(sha256.New, key.Key)}}
}

// Minimize validates ev and returns the record to keep, or the problems
// that refuse it. now is the ingest time (for the future-skew bound).
func Minimize(index int, ev *Event, p Profile, key PseudonymKey, now time.Time) (*Record, []Problem) {
	return NewMinimizer(p, key).Minimize(index, ev, now)
}

// Minimize is the package-level Minimize with m's profile and key.
func (m *Minimizer) Minimize(index int, ev *Event, now time.Time) (*Record, []Problem) {
	p := m.profile
	var probs []Problem
	bad := func(path, code, msg string) {
		probs = append(probs, Problem{Index: index, Path: path, Code: code, Message: msg})
	}
	opaque := func(path, v string, required bool) {
		switch {
		case v == "" && required:
			bad(path, CodeMissingField, "required")
		case !Printable(v):
			bad(path, CodeInvalidField, "must be printable text without control characters")
		case LooksLikeIdentifier(v):
			bad(path, CodeIdentifierInOpaqueField, "looks like a phone number or an email address; use an opaque id such as a UUID")
		case len(v) > maxIDLen:
			bad(path, CodeInvalidField, fmt.Sprintf("longer than %d bytes", maxIDLen))
		}
	}
	oneOf := func(path, v string, allowed func(string) bool) {
		if v == "" {
			bad(path, CodeMissingField, "required")
		} else if !allowed(v) {
			bad(path, CodeInvalidField, "not an allowed value")
		}
	}
	opaque("$.event_id", ev.EventID, true)
	opaque("$.conversation_id", ev.ConversationID, true)
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
		EventID: ev.EventID, Kind: ev.Kind, ConversationID: ev.ConversationID,
		MessageHash: ev.MessageHash, CEKHash: ev.CEKHash,
		Transport: ev.Transport, Status: ev.Status,
		Recipients: make([]string, 0, len(ev.Recipients)),
	}
	if ev.Sender == "" {
		bad("$.sender", CodeMissingField, "required")
	} else if ps, ok := m.ps.pseudonym(ev.Sender); ok {
		rec.Sender = ps
	} else {
		bad("$.sender", CodeInvalidField, "must be an E.164 number or an opaque id of at most 128 printable bytes")
	}
	if len(ev.Recipients) > p.MaxRecipients {
		bad("$.recipients", CodeInvalidField, fmt.Sprintf("more than %d recipients", p.MaxRecipients))
	} else {
		for i, r := range ev.Recipients {
			if ps, ok := m.ps.pseudonym(r); ok {
				rec.Recipients = append(rec.Recipients, ps)
			} else {
				bad("$.recipients["+strconv.Itoa(i)+"]", CodeInvalidField, "must be an E.164 number or an opaque id of at most 128 printable bytes")
			}
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

// Pseudonym returns "hmac-sha256:<version>:<hex>" for an identifier: E.164
// numbers are normalized first, NFKC then digits only (so "+1 415-555-0100",
// "+14155550100" and "＋１４１５５５５０１００" map to one pseudonym), anything else is used as an opaque id. The two spaces are
// domain-separated so a number and an id with the same text never collide.
// ok is false for an empty, over-long or non-printable identifier.
func Pseudonym(key PseudonymKey, id string) (string, bool) {
	ps := pseudonymizer{key: key, mac: hmac.New(sha256.New, key.Key)}
	return ps.pseudonym(id)
}

// pseudonymizer computes pseudonyms with one reusable HMAC.
type pseudonymizer struct {
	key PseudonymKey
	mac hash.Hash
	buf []byte
}

func (p *pseudonymizer) pseudonym(id string) (string, bool) {
	if id == "" || len(id) > maxIDLen || !Printable(id) {
		return "", false
	}
	p.mac.Reset()
	if n, ok := NormalizeE164(Normalize(id)); ok {
		p.mac.Write([]byte("e164:"))
		p.mac.Write([]byte(n))
	} else {
		p.mac.Write([]byte("id:"))
		p.mac.Write([]byte(id))
	}
	p.buf = p.mac.Sum(p.buf[:0])
	return "hmac-sha256:" + strconv.Itoa(p.key.Version) + ":" + hex.EncodeToString(p.buf), true
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

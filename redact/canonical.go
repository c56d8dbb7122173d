package redact

import (
	"strconv"
	"unicode/utf8"
)

// AppendCanonicalJSON appends the RFC 8785 (JCS) canonical JSON of r: the
// bytes that canonicalizing json.Marshal(r) would give, written directly
// because ingest makes one per event. Members are in sorted order and
// strings use JCS's minimal escaping. TestCanonicalMatchesJCS and
// FuzzCanonicalRecord hold it to an independent implementation.
func (r *Record) AppendCanonicalJSON(b []byte) []byte {
	b = append(b, '{')
	if c := r.Carrier; c != nil {
		b = append(b, `"carrier":{"mcc":`...)
		b = appendString(b, c.MCC)
		if c.MNC != "" {
			b = append(b, `,"mnc":`...)
			b = appendString(b, c.MNC)
		}
		b = append(b, "},"...)
	}
	if r.CEKHash != "" {
		b = append(b, `"cek_hash":`...)
		b = appendString(b, r.CEKHash)
		b = append(b, ',')
	}
	if c := r.Client; c != nil {
		b = append(b, `"client":{"platform":`...)
		b = appendString(b, c.Platform)
		if c.Version != "" {
			b = append(b, `,"version":`...)
			b = appendString(b, c.Version)
		}
		b = append(b, "},"...)
	}
	b = append(b, `"conversation_id":`...)
	b = appendString(b, r.ConversationID)
	if d := r.Downgrade; d != nil {
		b = append(b, `,"downgrade":{"from":`...)
		b = appendString(b, d.From)
		if d.Reason != "" {
			b = append(b, `,"reason":`...)
			b = appendString(b, d.Reason)
		}
		b = append(b, `,"to":`...)
		b = appendString(b, d.To)
		b = append(b, '}')
	}
	b = append(b, `,"event_id":`...)
	b = appendString(b, r.EventID)
	b = append(b, `,"kind":`...)
	b = appendString(b, r.Kind)
	b = append(b, `,"message_hash":`...)
	b = appendString(b, r.MessageHash)
	b = append(b, `,"occurred_at":`...)
	b = appendString(b, r.OccurredAt)
	b = append(b, `,"recipients":[`...)
	for i, p := range r.Recipients {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, p)
	}
	b = append(b, `],"sender":`...)
	b = appendString(b, r.Sender)
	b = append(b, `,"status":`...)
	b = appendString(b, r.Status)
	if r.Submitter != "" {
		b = append(b, `,"submitter":`...)
		b = appendString(b, r.Submitter)
	}
	b = append(b, `,"transport":`...)
	b = appendString(b, r.Transport)
	if r.V != 0 {
		b = append(b, `,"v":`...)
		b = strconv.AppendInt(b, int64(r.V), 10)
	}
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JCS string: '"' and '\\' escaped, control
// characters as \b \t \n \f \r or \u00xx, everything else as is. Invalid
// UTF-8 becomes U+FFFD, as encoding/json would make it.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c >= 0x20:
				b = append(b, c)
			case c == '\b':
				b = append(b, '\\', 'b')
			case c == '\t':
				b = append(b, '\\', 't')
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\f':
				b = append(b, '\\', 'f')
			case c == '\r':
				b = append(b, '\\', 'r')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, "\ufffd"...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

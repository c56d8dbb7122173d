package redact

import (
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/mediatorhq/mediator/pseudonym"
)

// CodeIdentifierInOpaqueField is the problem code for an opaque field
// (event_id, conversation_id, client.version, a lawful-access
// justification) that holds what looks like a phone number or an email
// address. Such fields are stored and logged verbatim, forever, so they must
// not carry an identifier of a person.
const CodeIdentifierInOpaqueField = "identifier_in_opaque_field"

// Normalize returns s in Unicode normalization form NFKC, so that
// full-width digits ("４１５") and the full-width at sign ("＠") read as
// their ASCII forms before any matching. ASCII text is returned as is.
func Normalize(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return norm.NFKC.String(s)
		}
	}
	return s
}

// LooksLikeIdentifier reports whether an opaque id holds, anywhere in it,
// an email address or a phone number written in any of the shapes
// identifierSpans knows. Ten or more digits in one run count as a number;
// shorter runs (sequence numbers such as "evt-1234567") do not.
func LooksLikeIdentifier(id string) bool {
	return len(identifierSpans(Normalize(id), minOpaqueRun)) > 0
}

// ContainsIdentifier reports whether free text holds an email address, a
// URL or a phone number (seven or more digits in one run count).
func ContainsIdentifier(text string) bool {
	n := Normalize(text)
	return urlPattern.MatchString(n) || len(identifierSpans(n, minTextRun)) > 0
}

const (
	// A single run of digits with no separators counts as a phone number
	// from this many digits in an opaque id...
	minOpaqueRun = 10
	// ...and from this many in free text.
	minTextRun = 7
	// Phone numbers have at most 15 digits (E.164) and, written with
	// separators, at least 7.
	minPhoneDigits = 7
	maxPhoneDigits = 15
	// A separator between two groups of digits is 1 to this many runes,
	// none of them a letter or a digit.
	maxSeparatorRunes = 3
)

var (
	emailIDPattern = regexp.MustCompile(`[\p{L}\p{N}._%+\-]+@[\p{L}\p{N}\-]+(?:\.[\p{L}\p{N}\-]+)*\.\p{L}{2,}`)
	// Shapes that are made of digits and separators but are not phone
	// numbers; they are masked before numbers are looked for. Masking them
	// is what lets a UUID, a digest, a date or a time through; a gateway
	// set on smuggling a number can always encode it, so the check is
	// against accidents, not against a hostile gateway.
	uuidPattern    = regexp.MustCompile(`[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}`)
	isoDatePattern = regexp.MustCompile(`(?:^|[^0-9])(?:19|20)[0-9]{2}[-/.](?:0?[1-9]|1[0-2])[-/.](?:0?[1-9]|[12][0-9]|3[01])`)
	dmyDatePattern = regexp.MustCompile(`(?:^|[^0-9])[0-9]{1,2}[-/.][0-9]{1,2}[-/.](?:19|20)[0-9]{2}`)
	timePattern    = regexp.MustCompile(`(?:^|[^0-9])[0-9]{1,2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?`)
)

// identifierSpans returns the byte ranges of normalized text n that are an
// email address or a phone number. A phone number is found as groups of
// digits joined by short separators of anything but letters and digits
// ("415-555-0100", "415/555/0100", "415_555_0100", "(415) 555 0100"):
//
//   - after a "+", 8 to 15 digits (E.164);
//   - a single run of minRun to 15 digits that does not start "000";
//   - two or more groups of at least two digits each, 7 to 15 digits in
//     all; groups joined only by dots must end in a group of four or more
//     digits, so that version numbers such as "120.0.6099.109" pass and
//     "415.555.0100" does not.
func identifierSpans(n string, minRun int) [][2]int {
	var spans [][2]int
	digits, at := 0, false
	for _, r := range n {
		if unicode.IsDigit(r) {
			digits++
		} else if r == '@' {
			at = true
		}
	}
	if at {
		for _, m := range emailIDPattern.FindAllStringIndex(n, -1) {
			spans = append(spans, [2]int{m[0], m[1]})
		}
	}
	if digits < minPhoneDigits {
		return spans
	}
	// Masking only ever removes numbers, so text without any skips it.
	phones := phoneSpans(n, minRun)
	if len(phones) == 0 {
		return spans
	}
	masked := []byte(n)
	mask := func(re *regexp.Regexp) {
		for _, m := range re.FindAllIndex(masked, -1) {
			for i := m[0]; i < m[1]; i++ {
				masked[i] = 'x'
			}
		}
	}
	if strings.Count(n, "-") >= 4 {
		mask(uuidPattern)
	}
	maskHexWords(masked)
	if strings.Contains(n, "19") || strings.Contains(n, "20") {
		mask(isoDatePattern)
		mask(dmyDatePattern)
	}
	if strings.Contains(n, ":") {
		mask(timePattern)
	}
	return append(spans, phoneSpans(string(masked), minRun)...)
}

// maskHexWords masks words of 16 or more hex digits with at least one
// letter among them (digests, UUIDs written without dashes).
func maskHexWords(b []byte) {
	isHex := func(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }
	isWord := func(c byte) bool { return isHex(c) || c >= 'g' && c <= 'z' || c >= 'G' && c <= 'Z' || c == '_' }
	for i := 0; i < len(b); {
		if !isHex(b[i]) || i > 0 && isWord(b[i-1]) {
			i++
			continue
		}
		j, letter := i, false
		for j < len(b) && isHex(b[j]) {
			letter = letter || b[j] > '9'
			j++
		}
		if j-i >= 16 && letter && (j == len(b) || !isWord(b[j])) {
			for k := i; k < j; k++ {
				b[k] = 'x'
			}
		}
		i = j
	}
}

// group is one run of digits in a string.
type group struct {
	start, end int    // byte offsets
	digits     int    // number of digits
	sep        string // the separator before it, "" for the first of a chain
}

// phoneSpans finds phone numbers in s (see identifierSpans).
func phoneSpans(s string, minRun int) [][2]int {
	var spans [][2]int
	for _, chain := range chains(s) {
		if plus := chain[0].start - 1; plus >= 0 && s[plus] == '+' {
			total := 0
			for _, g := range chain {
				total += g.digits
				if total >= 8 && total <= maxPhoneDigits {
					spans = append(spans, [2]int{plus, g.end})
					break
				}
			}
		}
		for _, g := range chain {
			// Leading zeros pad counters ("000000000042"); a number has at
			// most two (an international prefix, "0044...").
			if g.digits >= minRun && g.digits <= maxPhoneDigits && !strings.HasPrefix(s[g.start:], "000") {
				spans = append(spans, [2]int{g.start, g.end})
			}
		}
		for _, run := range splitRuns(chain) {
			if len(run) >= 2 && groupedNumber(run) {
				spans = append(spans, [2]int{run[0].start, run[len(run)-1].end})
			}
		}
	}
	return spans
}

// chains splits s into chains of digit groups joined by separators.
func chains(s string) [][]group {
	var out [][]group
	var cur []group
	sepStart, sepRunes := -1, 0
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case unicode.IsDigit(r):
			if n := len(cur); n > 0 && cur[n-1].end == i {
				cur[n-1].end += size
				cur[n-1].digits++
				break
			}
			g := group{start: i, end: i + size, digits: 1}
			if len(cur) > 0 && sepStart >= 0 && sepRunes <= maxSeparatorRunes {
				g.sep = s[sepStart:i]
			} else if len(cur) > 0 {
				out = append(out, cur)
				cur = nil
			}
			cur = append(cur, g)
			sepStart, sepRunes = -1, 0
		case unicode.IsLetter(r):
			if len(cur) > 0 {
				out = append(out, cur)
				cur = nil
			}
			sepStart, sepRunes = -1, 0
		default:
			if sepStart < 0 {
				sepStart = i
			}
			sepRunes++
		}
		i += size
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// splitRuns splits a chain at single-digit groups (which phone numbers
// written with separators rarely have, apart from a country code, and
// version numbers often do) and at separators holding a space, a "+", a
// comma or a semicolon when the run would be too long for one number.
func splitRuns(chain []group) [][]group {
	var runs [][]group
	var cur []group
	for _, g := range chain {
		if g.digits < 2 {
			if len(cur) > 0 {
				runs = append(runs, cur)
			}
			cur = nil
			continue
		}
		cur = append(cur, g)
	}
	if len(cur) > 0 {
		runs = append(runs, cur)
	}
	var out [][]group
	for _, run := range runs {
		if total(run) <= maxPhoneDigits {
			out = append(out, run)
			continue
		}
		start := 0
		for i := 1; i < len(run); i++ {
			if breaksNumbers(run[i].sep) {
				out = append(out, run[start:i])
				start = i
			}
		}
		out = append(out, run[start:])
	}
	return out
}

// groupedNumber reports whether a run of two or more groups reads as one
// phone number.
func groupedNumber(run []group) bool {
	if t := total(run); t < minPhoneDigits || t > maxPhoneDigits {
		return false
	}
	for _, g := range run[1:] {
		if g.sep != "." {
			return true
		}
	}
	return run[len(run)-1].digits >= 4
}

func total(run []group) int {
	t := 0
	for _, g := range run {
		t += g.digits
	}
	return t
}

func breaksNumbers(sep string) bool {
	for _, r := range sep {
		if unicode.IsSpace(r) || r == '+' || r == ',' || r == ';' {
			return true
		}
	}
	return false
}

// NamesConversation reports whether s may name a conversation in a
// request scope or a legal hold: a pseudonym, or an id of the HMAC era,
// when deposits carried conversation ids as sent (printable, at most 128
// bytes, and never shaped like a phone number or an email address, which
// deposits refused then). Anything else would bring an identifier into
// storage.
func NamesConversation(s string) bool {
	if pseudonym.Valid(s) {
		return true
	}
	return s != "" && len(s) <= maxIDLen && Printable(s) && !LooksLikeIdentifier(s)
}

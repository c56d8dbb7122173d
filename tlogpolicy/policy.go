// Package tlogpolicy reads and writes C2SP tlog-policy files
// (c2sp.org/tlog-policy): the logs a verifier accepts, the witnesses it
// knows, and the quorum of them whose cosignatures make a checkpoint
// valid, with nested groups such as "2 of the custodians and 1 of the
// external witnesses".
//
// One parsed Policy decides everywhere: whether the mediator publishes a
// checkpoint, whether audit verify accepts the stored ones, and whether a
// tlog-proof file checks out offline.
package tlogpolicy

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/mediatorhq/mediator/witness"
)

// None is the quorum that requires no cosignature.
const None = "none"

// Limits on a policy's size: the specification recommends supporting at
// least 32 of each; these leave room and still bound the work of Met.
const (
	MaxLogs      = 256
	MaxWitnesses = 256
	MaxGroups    = 256
)

// Log is a log the policy accepts: a checkpoint signed by its key, whose
// name is the log's origin.
type Log struct {
	Key      string // the note verifier key (vkey) as written
	Verifier note.Verifier
	URL      string // optional
}

// Witness is a witness the policy knows: its name in the policy (which
// need not be its key's name), its cosignature/v1 verifier key, and
// optionally the URL prefix of its add-checkpoint endpoint.
type Witness struct {
	Name     string
	Key      string
	Verifier note.Verifier
	URL      string
}

// Group is witnessed when at least Threshold of its Members (witnesses or
// earlier groups, by name) are.
type Group struct {
	Name      string
	Threshold int
	Members   []string
	// form is the threshold as written: "all", "any" or a number.
	form string
}

// Policy is a parsed tlog-policy file. Its zero value is not valid; use
// Parse or Threshold.
type Policy struct {
	Logs      []Log
	Witnesses []Witness
	Groups    []Group
	// Quorum names the witness or group that must witness a checkpoint,
	// or None.
	Quorum string
}

// ErrSyntax wraps every error Parse returns.
var ErrSyntax = errors.New("tlog-policy")

// Parse reads a tlog-policy file. It enforces the specification: only
// tab, newline and printable or high-bit octets; names defined before
// they are used and at most once (witnesses and groups share one
// namespace, and none is reserved); no duplicate log or witness keys,
// even under different key names; 1 ≤ k ≤ n for every group; exactly one
// quorum line.
func Parse(b []byte) (*Policy, error) {
	for i, c := range b {
		if c != '\t' && c != '\n' && (c < 0x20 || c == 0x7f) {
			return nil, fmt.Errorf("%w: byte %d is the control character %#02x (only tab and newline are allowed)", ErrSyntax, i, c)
		}
	}
	p := &Policy{}
	kinds := map[string]string{} // name → "witness" or "group"
	keys := map[string]string{}  // public key bytes → what defined them
	quorums := 0
	for n, raw := range strings.Split(string(b), "\n") {
		line := n + 1
		fields := strings.FieldsFunc(raw, func(r rune) bool { return r == ' ' || r == '\t' })
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		fail := func(format string, args ...any) error {
			return fmt.Errorf("%w: line %d: %s", ErrSyntax, line, fmt.Sprintf(format, args...))
		}
		switch fields[0] {
		case "log":
			if len(fields) < 2 || len(fields) > 3 {
				return nil, fail("want: log <vkey> [<url>]")
			}
			v, err := note.NewVerifier(fields[1])
			if err != nil {
				return nil, fail("log key: %v", err)
			}
			if err := uniqueKey(keys, fields[1], "log "+v.Name()); err != nil {
				return nil, fail("%v", err)
			}
			if len(p.Logs) == MaxLogs {
				return nil, fail("more than %d logs", MaxLogs)
			}
			p.Logs = append(p.Logs, Log{Key: fields[1], Verifier: v, URL: field(fields, 2)})
		case "witness":
			if len(fields) < 3 || len(fields) > 4 {
				return nil, fail("want: witness <name> <vkey> [<url>]")
			}
			name := fields[1]
			if err := newName(kinds, name); err != nil {
				return nil, fail("%v", err)
			}
			v, err := witness.NewVerifier(fields[2])
			if err != nil {
				return nil, fail("witness %s: a cosignature/v1 verifier key is needed: %v", name, err)
			}
			if err := uniqueKey(keys, fields[2], "witness "+name); err != nil {
				return nil, fail("%v", err)
			}
			if len(p.Witnesses) == MaxWitnesses {
				return nil, fail("more than %d witnesses", MaxWitnesses)
			}
			kinds[name] = "witness"
			p.Witnesses = append(p.Witnesses, Witness{Name: name, Key: fields[2], Verifier: v, URL: field(fields, 3)})
		case "group":
			if len(fields) < 4 {
				return nil, fail("want: group <name> all|any|<k> <name>...")
			}
			name, form, members := fields[1], fields[2], fields[3:]
			if err := newName(kinds, name); err != nil {
				return nil, fail("%v", err)
			}
			seen := map[string]bool{}
			for _, m := range members {
				if m == None {
					return nil, fail("group %s: none cannot be a member", name)
				}
				if kinds[m] == "" {
					return nil, fail("group %s: member %q is not a witness or group defined above", name, m)
				}
				if seen[m] {
					return nil, fail("group %s: member %q is listed twice", name, m)
				}
				seen[m] = true
			}
			k, err := threshold(form, len(members))
			if err != nil {
				return nil, fail("group %s: %v", name, err)
			}
			if len(p.Groups) == MaxGroups {
				return nil, fail("more than %d groups", MaxGroups)
			}
			kinds[name] = "group"
			p.Groups = append(p.Groups, Group{Name: name, Threshold: k, Members: members, form: form})
		case "quorum":
			if len(fields) != 2 {
				return nil, fail("want: quorum <name>")
			}
			if quorums > 0 {
				return nil, fail("a second quorum line (a policy has exactly one)")
			}
			if fields[1] != None && kinds[fields[1]] == "" {
				return nil, fail("quorum %q is not none or a witness or group defined above", fields[1])
			}
			p.Quorum = fields[1]
			quorums++
		default:
			return nil, fail("unknown keyword %q (want log, witness, group or quorum)", fields[0])
		}
	}
	if quorums == 0 {
		return nil, fmt.Errorf("%w: no quorum line (write \"quorum none\" to require no cosignature)", ErrSyntax)
	}
	return p, nil
}

// Threshold returns the policy that k of witnesses must cosign, as a
// group named group: the tlog-policy form of a plain k-of-n quorum.
func Threshold(group string, k int, logs []Log, witnesses []Witness) (*Policy, error) {
	p := &Policy{Logs: logs, Witnesses: witnesses, Quorum: None}
	if k > 0 {
		members := make([]string, len(witnesses))
		for i, w := range witnesses {
			members[i] = w.Name
		}
		p.Groups = []Group{{Name: group, Threshold: k, Members: members, form: strconv.Itoa(k)}}
		p.Quorum = group
	}
	return Parse(p.Marshal()) // checks names, keys and k as a file would be checked
}

// Marshal writes p as a tlog-policy file.
func (p *Policy) Marshal() []byte {
	var b bytes.Buffer
	for _, l := range p.Logs {
		b.WriteString("log " + l.Key + optional(l.URL) + "\n")
	}
	if len(p.Logs) > 0 {
		b.WriteString("\n")
	}
	for _, w := range p.Witnesses {
		b.WriteString("witness " + w.Name + " " + w.Key + optional(w.URL) + "\n")
	}
	for _, g := range p.Groups {
		form := g.form
		if form == "" {
			form = strconv.Itoa(g.Threshold)
		}
		b.WriteString("group " + g.Name + " " + form + " " + strings.Join(g.Members, " ") + "\n")
	}
	b.WriteString("quorum " + p.Quorum + "\n")
	return b.Bytes()
}

// Met reports whether the witnesses for which cosigned returns true make
// the quorum.
func (p *Policy) Met(cosigned func(Witness) bool) bool {
	if p.Quorum == None {
		return true
	}
	return p.eval(p.Quorum, func(w Witness) int {
		if cosigned(w) {
			return 1
		}
		return 0
	}, func(g Group, members []int) int {
		n := 0
		for _, m := range members {
			n += m
		}
		if n >= g.Threshold {
			return 1
		}
		return 0
	}) == 1
}

// MinCosigners is the fewest cosignatures that can make the quorum: 0 for
// none, and otherwise the smallest set the groups allow.
func (p *Policy) MinCosigners() int {
	if p.Quorum == None {
		return 0
	}
	return p.eval(p.Quorum, func(Witness) int { return 1 }, func(g Group, members []int) int {
		sort.Ints(members)
		n := 0
		for _, m := range members[:g.Threshold] {
			n += m
		}
		return n
	})
}

// Describe is the quorum in words, for messages: "none", a witness's
// name, or a group's rule with its members' rules nested.
func (p *Policy) Describe() string {
	var describe func(name string) string
	describe = func(name string) string {
		for _, g := range p.Groups {
			if g.Name == name {
				parts := make([]string, len(g.Members))
				for i, m := range g.Members {
					parts[i] = describe(m)
				}
				return fmt.Sprintf("%s: %d of (%s)", g.Name, g.Threshold, strings.Join(parts, ", "))
			}
		}
		return name
	}
	return describe(p.Quorum)
}

// eval folds the quorum's tree: leaf for a witness, node for a group
// given its members' values.
func (p *Policy) eval(name string, leaf func(Witness) int, node func(Group, []int) int) int {
	for _, w := range p.Witnesses {
		if w.Name == name {
			return leaf(w)
		}
	}
	for _, g := range p.Groups {
		if g.Name == name {
			vals := make([]int, len(g.Members))
			for i, m := range g.Members {
				vals[i] = p.eval(m, leaf, node)
			}
			return node(g, vals)
		}
	}
	return 0 // Parse admits no undefined name
}

// Cosigners returns the witnesses whose cosignature in signed (a note
// with signature lines) verifies with their key.
func (p *Policy) Cosigners(signed []byte) map[string]bool {
	out := map[string]bool{}
	for _, w := range p.Witnesses {
		if _, err := note.Open(signed, note.VerifierList(w.Verifier)); err == nil {
			out[w.Name] = true
		}
	}
	return out
}

// ErrNoLog: a checkpoint is not signed by any log of the policy.
var ErrNoLog = errors.New("tlog-policy: the checkpoint is not signed by a log the policy lists")

// ErrQuorum: a checkpoint's cosignatures do not make the policy's quorum.
var ErrQuorum = errors.New("tlog-policy: the checkpoint's cosignatures do not make the policy's quorum")

// Check verifies a checkpoint note with its cosignatures against p: it
// must be signed by one of p's logs, under that log's key name (its
// origin, the note's first line), and cosigned by witnesses that make the
// quorum. It returns the log that signed it and the names of the
// witnesses whose cosignatures verified.
func (p *Policy) Check(signed []byte) (Log, []string, error) {
	var log Log
	found := false
	for _, l := range p.Logs {
		n, err := note.Open(signed, note.VerifierList(l.Verifier))
		if err == nil && strings.SplitN(n.Text, "\n", 2)[0] == l.Verifier.Name() {
			log, found = l, true
			break
		}
	}
	if !found {
		return Log{}, nil, ErrNoLog
	}
	cosigners := p.Cosigners(signed)
	names := make([]string, 0, len(cosigners))
	for _, w := range p.Witnesses {
		if cosigners[w.Name] {
			names = append(names, w.Name)
		}
	}
	if !p.Met(func(w Witness) bool { return cosigners[w.Name] }) {
		return log, names, fmt.Errorf("%w: cosigned by %s; the quorum is %s", ErrQuorum, orNone(names), p.Describe())
	}
	return log, names, nil
}

func orNone(names []string) string {
	if len(names) == 0 {
		return "no witness"
	}
	return strings.Join(names, ", ")
}

func field(fields []string, i int) string {
	if i < len(fields) {
		return fields[i]
	}
	return ""
}

func optional(s string) string {
	if s == "" {
		return ""
	}
	return " " + s
}

// newName checks that name may be defined.
func newName(kinds map[string]string, name string) error {
	if name == None {
		return errors.New("none is reserved")
	}
	if k := kinds[name]; k != "" {
		return fmt.Errorf("%q is already defined as a %s", name, k)
	}
	return nil
}

// threshold reads a group's k of n members.
func threshold(form string, n int) (int, error) {
	switch form {
	case "all":
		return n, nil
	case "any":
		return 1, nil
	}
	for _, c := range form {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("threshold %q is not all, any or a decimal number", form)
		}
	}
	k, err := strconv.Atoi(form)
	if err != nil || k < 1 || k > n {
		return 0, fmt.Errorf("threshold %q must be 1–%d, its number of members", form, n)
	}
	return k, nil
}

// uniqueKey records the public key a vkey wraps, and fails if an earlier
// line wraps the same one (the specification's duplicate, whatever the
// key name and id).
func uniqueKey(keys map[string]string, vkey, what string) error {
	parts := strings.SplitN(vkey, "+", 3) // name+hash+base64(type || key)
	if len(parts) != 3 {
		return fmt.Errorf("%s: malformed verifier key", what)
	}
	raw, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(raw) < 2 {
		return fmt.Errorf("%s: malformed verifier key", what)
	}
	pub := string(raw[1:]) // the key without its type byte
	if prev, dup := keys[pub]; dup {
		return fmt.Errorf("%s has the same public key as %s", what, prev)
	}
	keys[pub] = what
	return nil
}

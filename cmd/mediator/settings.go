package main

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/mediatorhq/mediator/roster"
)

// A setting is one value a command is configured with, declared once: its
// flag, the environment variables that stand in for the flag, its default
// and the parser that checks a value's shape (flagSet.Parse applies it).
//
// A flag wins over the variables, the first variable that is set and not
// empty wins over those after it, and the default applies when none is
// given. A value that does not parse stops the command with an error that
// names the flag or variable and the shape wanted; a secret's value is
// never repeated, in errors or in help.
type setting struct {
	flag    string   // the flag's name without dashes; "" when only the environment sets it
	env     []string // the variables, in order of precedence
	envNote string   // said after the variables in the help's [VAR] hint, such as when one is used
	usage   string   // help text, without the [VAR] hint, which is generated
	value   value    // destination, parser and default
	secret  bool     // a credential or a URL that may hold one
}

// hint is the usage's [VAR, VAR; note] suffix, or "" for a setting no
// variable sets.
func (s setting) hint() string {
	if len(s.env) == 0 {
		return ""
	}
	h := strings.Join(s.env, ", ")
	if s.envNote != "" {
		h += "; " + s.envNote
	}
	return " [" + h + "]"
}

// refuse is the error for text that does not parse, given as source (a
// flag or a variable): it names source and the shape wanted, and repeats
// text only when it is not secret.
func (s setting) refuse(source, text string) error {
	if s.secret {
		return fmt.Errorf("%s: the value (not shown: it is secret) is not %s", source, s.value.kind().shape)
	}
	return fmt.Errorf("%s: %q is not %s", source, text, s.value.kind().shape)
}

// apply sets s's destination from flagTexts (the flag's occurrences in
// order), else from the first of s's variables that getenv finds, else
// to the default.
func (s setting) apply(flagTexts []string, getenv func(string) string) error {
	s.value.reset()
	if len(flagTexts) > 0 {
		for _, t := range flagTexts {
			if s.value.set(t) != nil {
				return s.refuse("--"+s.flag, t)
			}
		}
		return nil
	}
	for _, name := range s.env {
		if t := getenv(name); t != "" {
			if s.value.set(t) != nil {
				return s.refuse(name, t)
			}
			return nil
		}
	}
	return nil
}

// A kind says what a setting's values look like.
type kind struct {
	name      string   // one word for help: duration, int, number, address, string...
	shape     string   // for errors, after "is not": a duration (such as 1s, 5m, 72h)
	examples  []string // well-formed values, all distinct
	malformed string   // a value it refuses; "" when any text is well-formed
}

// A value is a setting's destination with its parser and default.
type value interface {
	// reset sets the destination to the default.
	reset()
	// set parses text into the destination (a list appends to it). Its
	// error only reports that text is not of the kind's shape.
	set(text string) error
	// String formats the destination.
	String() string
	// defaultText formats the default.
	defaultText() string
	// kind describes the values it takes.
	kind() kind
}

// errShape is what a parser returns: the refusal's text comes from the
// setting, so no parser's message can repeat a secret.
var errShape = errors.New("malformed")

// scalar is a value of type T.
type scalar[T any] struct {
	k      kind
	dst    *T
	def    T
	parse  func(string) (T, error)
	format func(T) string
}

func (s scalar[T]) reset()              { *s.dst = s.def }
func (s scalar[T]) String() string      { return s.format(*s.dst) }
func (s scalar[T]) defaultText() string { return s.format(s.def) }
func (s scalar[T]) kind() kind          { return s.k }

func (s scalar[T]) set(text string) error {
	v, err := s.parse(text)
	if err != nil {
		return errShape
	}
	*s.dst = v
	return nil
}

// checked is a text scalar that must pass valid.
func checked(k kind, dst *string, def string, valid func(string) bool) value {
	return scalar[string]{k: k, dst: dst, def: def, format: asIs, parse: func(s string) (string, error) {
		if !valid(s) {
			return "", errShape
		}
		return s, nil
	}}
}

func asIs(s string) string { return s }

// text takes any text: a name, a path, a URL left to its user to check.
func text(dst *string, def string) value {
	return checked(kind{name: "string", shape: "text", examples: []string{"alpha", "beta", "gamma"}},
		dst, def, func(string) bool { return true })
}

// duration takes a Go duration.
func duration(dst *time.Duration, def time.Duration) value {
	return scalar[time.Duration]{dst: dst, def: def, parse: time.ParseDuration, format: time.Duration.String,
		k: kind{name: "duration", shape: "a duration (such as 1s, 5m, 72h)", examples: []string{"1s", "5m", "72h"}, malformed: "abc"}}
}

// integer takes a whole number in decimal.
func integer(dst *int, def int) value {
	return scalar[int]{dst: dst, def: def, parse: strconv.Atoi, format: strconv.Itoa,
		k: kind{name: "int", shape: "a whole number (such as 0, 10, 400)", examples: []string{"0", "10", "400"}, malformed: "1.5"}}
}

// integer64 takes a whole number in decimal, such as a count of bytes.
func integer64(dst *int64, def int64) value {
	return scalar[int64]{dst: dst, def: def,
		parse:  func(s string) (int64, error) { return strconv.ParseInt(s, 10, 64) },
		format: func(n int64) string { return strconv.FormatInt(n, 10) },
		k:      kind{name: "int", shape: "a whole number (such as 0, 1048576, 50331648)", examples: []string{"0", "1048576", "50331648"}, malformed: "48MiB"}}
}

// number takes a finite decimal number.
func number(dst *float64, def float64) value {
	return scalar[float64]{dst: dst, def: def,
		parse: func(s string) (float64, error) {
			f, err := strconv.ParseFloat(s, 64)
			if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
				return 0, errShape
			}
			return f, nil
		},
		format: func(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) },
		k:      kind{name: "number", shape: "a number (such as 0, 0.5, 200)", examples: []string{"0", "0.5", "200"}, malformed: "fast"}}
}

// listenAddress takes what serve listens on: host:port or an http:// URL.
func listenAddress(dst *string, def string) value {
	return checked(kind{name: "address", shape: "a listen address (host:port or http://host:port, such as 127.0.0.1:8080)",
		examples: []string{"127.0.0.1:8080", ":9999", "http://127.0.0.1:7777"}, malformed: "localhost"},
		dst, def, func(s string) bool { _, err := listenAddr(s); return err == nil })
}

// hostPort takes a TCP listen address, host:port.
func hostPort(dst *string, def string) value {
	return checked(kind{name: "address", shape: "a listen address host:port (such as 127.0.0.1:9090 or :9090)",
		examples: []string{"127.0.0.1:9090", ":9090", "0.0.0.0:9091"}, malformed: "http://127.0.0.1:9090"},
		dst, def, func(s string) bool { _, _, err := net.SplitHostPort(s); return s == "" || err == nil })
}

// mediatorURL takes where a client reaches the mediator, as client.New
// does: an http(s):// URL, or host:port for http.
func mediatorURL(dst *string, def string) value {
	return checked(kind{name: "url", shape: "a mediator URL (such as http://127.0.0.1:8080 or https://mediator.example)",
		examples: []string{"http://127.0.0.1:8080", "https://mediator.example", "127.0.0.1:9999"}, malformed: "ftp://mediator.example"},
		dst, def, func(s string) bool {
			if !strings.Contains(s, "://") {
				s = "http://" + s
			}
			u, err := url.Parse(strings.TrimRight(s, "/"))
			return err == nil && u.Host != "" && (u.Scheme == "http" || u.Scheme == "https")
		})
}

// logLevel takes a log/slog level name.
func logLevel(dst *string, def string) value {
	return checked(kind{name: "level", shape: "a log level (debug, info, warn or error)",
		examples: []string{"debug", "info", "warn", "error"}, malformed: "verbose"},
		dst, def, validLogLevel)
}

// validLogLevel reports whether s names a level as log/slog reads it.
func validLogLevel(s string) bool {
	var l slog.Level
	return l.UnmarshalText([]byte(s)) == nil
}

// rosterDigest takes a roster digest, or nothing: no roster is pinned.
//
// @FILE stands for the digest held in FILE (surrounding space ignored),
// so that a deployment whose ceremony writes the digest to a file, and
// whose image has no shell, can point at it.
func rosterDigest(dst *string) value {
	return scalar[string]{k: kind{name: "digest", shape: "a roster digest (sha256: and 64 hex digits), or @FILE holding one",
		examples: []string{"sha256:" + strings.Repeat("0f", 32), "sha256:" + strings.Repeat("a1", 32)}, malformed: "sha256:abc"},
		dst: dst, format: asIs, parse: func(s string) (string, error) {
			if file, ok := strings.CutPrefix(s, "@"); ok {
				b, err := os.ReadFile(file)
				if err != nil {
					return "", errShape
				}
				if s = strings.TrimSpace(string(b)); s == "" {
					return "", errShape
				}
			}
			if s != "" && !roster.ValidDigest(s) {
				return "", errShape
			}
			return s, nil
		}}
}

// exampleVerifierKeys are well-formed note verifier keys, for errors and tests.
func exampleVerifierKeys() []string {
	return []string{"example.com/log+56614e8d+AQi4qmnMn2LcVUIta9fSJAS2A3bKP37wI8soikM9njAt",
		"example.com/log+016ca73c+AUSkcvJuQySzoPLgLcHuj2McIcCTtl9bUJBuqUJdLHv5"}
}

func validVerifierKey(s string) bool {
	_, err := note.NewVerifier(strings.TrimSpace(s))
	return err == nil
}

// verifierKeys takes note verifier keys, separated by commas or given in
// several flags.
func verifierKeys(dst *stringList) value {
	return list{dst: (*[]string)(dst), split: true, valid: validVerifierKey,
		k: kind{name: "keys", shape: "a comma-separated list of note verifier keys (name+hash+key, as GET /v1/audit/verifier-key returns them)",
			examples: exampleVerifierKeys(), malformed: "mediator/audit+0000"}}
}

// verifierKeyOrFile takes one note verifier key, or @FILE holding one,
// per flag.
func verifierKeyOrFile(dst *[]string) value {
	return list{dst: dst, valid: func(s string) bool { return s == "" || strings.HasPrefix(s, "@") || validVerifierKey(s) },
		k: kind{name: "key", shape: "a note verifier key (name+hash+key, as GET /v1/audit/verifier-key returns it) or @FILE",
			examples: append(exampleVerifierKeys(), "@verifier.key"), malformed: "mediator/audit+0000"}}
}

// list is a value of several items: each flag adds to it, and with split
// a comma-separated text holds several.
type list struct {
	k     kind
	dst   *[]string
	split bool
	valid func(string) bool
}

func (l list) reset()              { *l.dst = nil }
func (l list) String() string      { return strings.Join(*l.dst, ",") }
func (l list) defaultText() string { return "" }
func (l list) kind() kind          { return l.k }

func (l list) set(text string) error {
	items := []string{text}
	if l.split {
		var parts stringList
		_ = parts.Set(text)
		items = parts
	}
	for _, it := range items {
		if !l.valid(it) {
			return errShape
		}
	}
	*l.dst = append(*l.dst, items...)
	return nil
}

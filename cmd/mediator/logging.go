package main

import (
	"context"
	"io"
	"log/slog"
	"strings"
)

// newLogger returns a JSON logger at level that masks every value in
// secrets wherever it would appear in a message or string attribute. It is
// the last line of defence: code should not log secrets in the first place.
func newLogger(w io.Writer, level string, secrets []string) *slog.Logger {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		lv = slog.LevelInfo
	}
	var masked []string
	for _, s := range secrets {
		// Very short values would mask ordinary words.
		if len(s) >= 6 {
			masked = append(masked, s)
		}
	}
	h := slog.Handler(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lv}))
	if len(masked) > 0 {
		h = &maskingHandler{next: h, secrets: masked}
	}
	return slog.New(h)
}

type maskingHandler struct {
	next    slog.Handler
	secrets []string
}

const mask = "[redacted]"

func (m *maskingHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return m.next.Enabled(ctx, l)
}

func (m *maskingHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, m.clean(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(m.attr(a))
		return true
	})
	return m.next.Handle(ctx, out)
}

func (m *maskingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	cleaned := make([]slog.Attr, len(as))
	for i, a := range as {
		cleaned[i] = m.attr(a)
	}
	return &maskingHandler{next: m.next.WithAttrs(cleaned), secrets: m.secrets}
}

func (m *maskingHandler) WithGroup(name string) slog.Handler {
	return &maskingHandler{next: m.next.WithGroup(name), secrets: m.secrets}
}

func (m *maskingHandler) attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, m.clean(v.String()))
	case slog.KindGroup:
		g := v.Group()
		cleaned := make([]any, len(g))
		for i, ga := range g {
			cleaned[i] = m.attr(ga)
		}
		return slog.Group(a.Key, cleaned...)
	case slog.KindAny:
		// Errors and other values are logged by their text.
		return slog.String(a.Key, m.clean(v.String()))
	}
	return a
}

func (m *maskingHandler) clean(s string) string {
	for _, secret := range m.secrets {
		if strings.Contains(s, secret) {
			s = strings.ReplaceAll(s, secret, mask)
		}
	}
	return s
}

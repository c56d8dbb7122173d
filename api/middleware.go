package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/mediatorhq/mediator/identity"
	"github.com/mediatorhq/mediator/policy"
)

type ctxKey int

const (
	requestIDKey ctxKey = iota
	principalKey
)

// requestIDHeader carries the request id in and out.
const requestIDHeader = "X-Request-Id"

// maxRequestIDLen bounds a caller-supplied request id.
const maxRequestIDLen = 64

// requestID adopts the caller's X-Request-Id when it is short and plain, or
// makes one, and echoes it in the response so callers can quote it.
func requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(requestIDHeader)
		if !plainID(id) {
			b := make([]byte, 12)
			_, _ = rand.Read(b)
			id = hex.EncodeToString(b)
		}
		w.Header().Set(requestIDHeader, id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestIDKey, id)))
	})
}

func plainID(s string) bool {
	if s == "" || len(s) > maxRequestIDLen {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// RequestIDFrom returns the request id of ctx, or "".
func RequestIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// PrincipalFrom returns the verified caller of ctx, if any.
func PrincipalFrom(ctx context.Context) (identity.Principal, bool) {
	p, ok := ctx.Value(principalKey).(identity.Principal)
	return p, ok
}

// principalHolder lets the access log, which runs outside the guard, learn
// who the guard authenticated.
type principalHolder struct{ subject string }

type holderKey struct{}

// accessLog writes one JSON line per request and records the HTTP metrics.
// It logs the matched route pattern, never the raw path or query, and never
// a header value, so tokens and identifiers in URLs stay out of logs.
func (s *server) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		s.metrics.inflight.Inc()
		defer s.metrics.inflight.Dec()
		holder := &principalHolder{}
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		next.ServeHTTP(ww, r.WithContext(context.WithValue(r.Context(), holderKey{}, holder)))
		route := routeOf(r)
		status := ww.Status()
		if status == 0 {
			status = http.StatusOK
		}
		elapsed := time.Since(start)
		s.metrics.requests.WithLabelValues(route, r.Method, strconv.Itoa(status)).Inc()
		s.metrics.duration.WithLabelValues(route, r.Method).Observe(elapsed.Seconds())
		level := slog.LevelInfo
		if status >= 500 {
			level = slog.LevelError
		}
		s.log.LogAttrs(r.Context(), level, "request",
			slog.String("request_id", RequestIDFrom(r.Context())),
			slog.String("method", r.Method),
			slog.String("route", route),
			slog.Int("status", status),
			slog.Int("bytes", ww.BytesWritten()),
			slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000),
			slog.String("subject", holder.subject),
		)
	})
}

// routeOf returns the matched route pattern, or "unmatched" so that unknown
// paths cannot blow up metric cardinality.
func routeOf(r *http.Request) string {
	if rc := chi.RouteContext(r.Context()); rc != nil {
		if p := rc.RoutePattern(); p != "" && p != "/*" {
			return p
		}
	}
	return "unmatched"
}

// recoverPanic turns a panic into a 500 that names only the request id; the
// stack goes to the log.
func (s *server) recoverPanic(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("panic serving request",
					"request_id", RequestIDFrom(r.Context()),
					"route", routeOf(r),
					"panic", fmt.Sprint(v),
					"stack", string(debug.Stack()))
				writeError(w, http.StatusInternalServerError, codeInternal,
					"internal error; quote request id "+RequestIDFrom(r.Context()))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// limitBody caps how many body bytes a handler can read; reading past the cap
// fails with *http.MaxBytesError, which handlers turn into 413.
func limitBody(n int64) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ContentLength > n {
				writeError(w, http.StatusRequestEntityTooLarge, codeBodyTooLarge,
					fmt.Sprintf("request body exceeds %d bytes", n))
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, n)
			next.ServeHTTP(w, r)
		})
	}
}

// guard authenticates the caller (if a token is presented) and asks the
// policy whether the caller may use the matched route. It runs after routing,
// so the decision is made on the route pattern, never the raw path.
//
// A presented token that fails verification is always 401, even on a public
// route: a caller who believes they are authenticated must learn they are not.
func (s *server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		route := routeOf(r)
		in := policy.AuthzInput{Method: r.Method, Route: route, Roles: []string{}}
		if h := r.Header.Get("Authorization"); h != "" {
			raw, ok := bearer(h)
			if !ok {
				s.metrics.authz.WithLabelValues(route, "unauthenticated").Inc()
				unauthenticated(w, "the Authorization header must be \"Bearer <token>\"")
				return
			}
			p, err := s.authn.Verify(r.Context(), raw)
			if err != nil {
				s.metrics.authz.WithLabelValues(route, "unauthenticated").Inc()
				if !errors.Is(err, identity.ErrInvalidToken) {
					// The key source failed: our problem, not the caller's.
					s.log.Error("token verification unavailable", "request_id", RequestIDFrom(r.Context()), "err", err)
				}
				unauthenticated(w, "the bearer token is invalid or expired")
				return
			}
			in.Authenticated, in.Subject, in.Roles = true, p.Subject, p.Roles
			if h, ok := r.Context().Value(holderKey{}).(*principalHolder); ok {
				h.subject = p.Subject
			}
			r = r.WithContext(context.WithValue(r.Context(), principalKey, p))
		}
		allowed, err := s.authz.Authorize(r.Context(), in)
		switch {
		case err != nil:
			s.metrics.authz.WithLabelValues(route, "error").Inc()
			s.log.Error("authorization policy failed; denying", "request_id", RequestIDFrom(r.Context()), "err", err)
			writeError(w, http.StatusInternalServerError, codeInternal,
				"authorization could not be decided; quote request id "+RequestIDFrom(r.Context()))
		case allowed:
			s.metrics.authz.WithLabelValues(route, "allow").Inc()
			next.ServeHTTP(w, r)
		case !in.Authenticated:
			s.metrics.authz.WithLabelValues(route, "unauthenticated").Inc()
			unauthenticated(w, "a bearer token is required")
		default:
			s.metrics.authz.WithLabelValues(route, "deny").Inc()
			writeError(w, http.StatusForbidden, codeForbidden, "your roles do not allow "+r.Method+" "+route)
		}
	})
}

func bearer(h string) (string, bool) {
	const prefix = "bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", false
	}
	return strings.TrimSpace(h[len(prefix):]), true
}

func unauthenticated(w http.ResponseWriter, msg string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="mediator"`)
	writeError(w, http.StatusUnauthorized, codeUnauthenticated, msg)
}

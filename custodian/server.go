package custodian

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mediatorhq/mediator/invalid"
	"github.com/mediatorhq/mediator/ratelimit"
	"github.com/mediatorhq/mediator/wire"
)

// maxBody bounds a request body: a store call of 1,024 sealed shares, or
// a release call of 10,000 shares (the most it answers, maxReleaseShares),
// fits well within it; a release call of more than about 150,000 shares
// (some 100 bytes each) does not and is refused 413 as a whole.
const maxBody = 16 << 20

// Handler returns the custodian's HTTP API. Every route and who may call it
// is listed here: the public key document and health are public; the
// coordinator's calls need the mediator's token; rewrap and metrics need
// the operator's; with client_ca_file, a call that needs a token also
// needs a client certificate the bundle verifies. The roster, veto,
// revocation and signed hold routes are public: a pushed chain verifies
// from the pinned genesis, and a deny vote, a revocation or a hold
// statement with its signers' keys in it, or they are refused.
func (c *Custodian) Handler() http.Handler {
	r := chi.NewRouter()
	r.Use(c.accessLog)
	// Every error answer is the one envelope, chi's own included.
	r.NotFound(func(w http.ResponseWriter, _ *http.Request) {
		wire.WriteError(w, http.StatusNotFound, "not_found", "no such endpoint")
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, req *http.Request) {
		// A custom handler loses chi's Allow header, which a 405 must carry.
		for _, m := range []string{http.MethodGet, http.MethodPost} {
			if r.Match(chi.NewRouteContext(), m, req.URL.Path) {
				w.Header().Add("Allow", m)
			}
		}
		wire.WriteError(w, http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed on this endpoint")
	})
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		wire.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	r.Get("/readyz", c.readyz)
	r.Get("/v1/custodian", func(w http.ResponseWriter, _ *http.Request) { wire.WriteJSON(w, http.StatusOK, c.Info()) })
	r.Get("/v1/roster/status", c.rosterStatus)
	// The public calls that make the custodian work are limited per
	// caller address (public_rate).
	pub := r.With(c.perAddress(ratelimit.New(ratelimit.Limit{Rate: c.cfg.PublicRate, Burst: int(2 * c.cfg.PublicRate)})))
	// The roster: public, as a chain authenticates itself; anyone may
	// push a newer version, which is verified from the pinned genesis.
	pub.Post("/v1/roster", c.pushRoster)
	// Deny votes: public, as a vote authenticates itself; an approver's
	// tool delivers it here so that the mediator cannot withhold it.
	pub.Post("/v1/vetoes", c.postVeto)
	// Revocations: public, as a revocation authenticates itself; the
	// filing officer's tool delivers it here so that a mediator that
	// ignores it cannot still have the request released.
	pub.Post("/v1/revocations", c.postRevocation)
	// Legal holds signed by roster members: public, as the signatures
	// authenticate; the only road that lifts a hold.
	pub.Post("/v1/holds/signed", c.postSignedHold)
	// What the custodian keeps, signed: public, as depositors, officers
	// and auditors ask it directly (`mediator escrow check`, `escrow
	// reconcile`); the answers name no conversation but the one asked.
	pub.Post("/v1/shares/status", c.postStatus)
	pub.Post("/v1/shares/inventory", c.postInventory)
	// C2SP tlog-witness: public, as the protocol is; a checkpoint counts
	// only if the log's key signed it and it extends what was cosigned.
	if c.witness != nil {
		r.Handle("/add-checkpoint", c.witness.Handler())
	}

	m := r.With(c.bearer(&c.mediator, "the mediator's"))
	m.Post("/v1/shares", c.storeShares)
	m.Post("/v1/shares/commit", c.commitShares)
	m.Post("/v1/shares/abort", c.refs(c.Abort))
	m.Post("/v1/shares/destroy", c.refs(c.Destroy))
	m.Post("/v1/holds", c.hold) // places only; a lift is refused
	m.Post("/v1/releases", c.serveRelease)

	op := r.With(c.bearer(&c.operator, "the operator's"))
	op.Post("/v1/rewrap", c.rewrap)
	if c.metrics != nil {
		op.Get("/metrics", promhttp.HandlerFor(c.metrics.Registry, promhttp.HandlerOpts{}).ServeHTTP)
	}
	return r
}

// perAddress admits a request while its caller's address has tokens in
// ls; else 429 rate_limited with Retry-After.
func (c *Custodian) perAddress(ls *ratelimit.Buckets) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if ls == nil {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			host, _, err := net.SplitHostPort(r.RemoteAddr)
			if err != nil {
				host = r.RemoteAddr
			}
			if ok, wait := ls.Reserve(host, time.Now()); !ok {
				c.metrics.rateLimited()
				w.Header().Set("Retry-After", strconv.Itoa(ratelimit.RetryAfterSeconds(wait)))
				wire.WriteError(w, http.StatusTooManyRequests, "rate_limited", "too many calls from this address; retry after the Retry-After seconds")
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// bearer admits a request whose bearer token hashes to *want, compared in
// constant time, and, with client_ca_file, that came with a client
// certificate the bundle verified (clientCertified).
func (c *Custodian) bearer(want *[sha256.Size]byte, whose string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !c.clientCertified(r) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="mediator-custodian"`)
				wire.WriteError(w, http.StatusUnauthorized, "client_certificate_required",
					"this call needs a TLS client certificate signed by an authority of the custodian's client_ca_file, and "+whose+" bearer token")
				return
			}
			tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			got := sha256.Sum256([]byte(tok))
			if !ok || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="mediator-custodian"`)
				wire.WriteError(w, http.StatusUnauthorized, "unauthenticated", "this call needs "+whose+" bearer token")
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// statusRecorder keeps the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// accessLog writes one line per call (route pattern, status, time as
// duration_ms, the field every component logs; never a header or body)
// and counts it.
func (c *Custodian) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		route := chi.RouteContext(r.Context()).RoutePattern()
		if route == "" {
			route = "unmatched"
		}
		c.metrics.request(route, rec.status)
		c.log.LogAttrs(r.Context(), slog.LevelInfo, "request", slog.String("custodian", c.cfg.Name), slog.String("method", r.Method),
			slog.String("route", route), slog.Int("status", rec.status),
			slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000))
	})
}

// decode reads a JSON body of at most maxBody bytes into v, refusing
// unknown fields, and answers 400/413 when it cannot.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	return decodeLimited(w, r, v, maxBody)
}

// decodeLimited is decode with a body of at most limit bytes.
func decodeLimited(w http.ResponseWriter, r *http.Request, v any, limit int64) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			wire.WriteError(w, http.StatusRequestEntityTooLarge, "body_too_large", "request body too large")
		} else {
			wire.WriteError(w, http.StatusBadRequest, "bad_request", "body is not the expected JSON object")
		}
		return false
	}
	return true
}

// callError answers for an error of a whole call.
func (c *Custodian) callError(w http.ResponseWriter, what string, err error) {
	var refused *RefusedError
	bad, malformed := invalid.As(err)
	switch {
	case errors.As(err, &refused):
		wire.WriteError(w, http.StatusForbidden, "custodian_refused", c.cfg.Name+" refused the release: "+strings.Join(refused.Reasons, "; "),
			map[string]any{"custodian": c.cfg.Name, "reasons": refused.Reasons, "policy_revision": refused.PolicyRevision})
	case malformed:
		_, reason, code := bad.Invalid()
		wire.WriteError(w, http.StatusUnprocessableEntity, code, reason)
	default:
		c.log.Error(what+" failed", "custodian", c.cfg.Name, "err", err)
		w.Header().Set("Retry-After", "5")
		wire.WriteError(w, http.StatusServiceUnavailable, "dependency_unavailable", c.cfg.Name+": "+what+" failed; nothing was changed")
	}
}

func (c *Custodian) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := c.Ready(ctx); err != nil {
		c.log.Warn("readiness probe failed", "custodian", c.cfg.Name, "err", err)
		w.Header().Set("Retry-After", "5")
		wire.WriteError(w, http.StatusServiceUnavailable, "not_ready", "vault unreachable")
		return
	}
	wire.WriteJSON(w, http.StatusOK, map[string]any{"status": "ready", "checks": map[string]string{"vault": "ok"}})
}

func (c *Custodian) commitShares(w http.ResponseWriter, r *http.Request) {
	var body wire.ShareRefs
	if !decode(w, r, &body) {
		return
	}
	res, err := c.CommitShares(r.Context(), body.Shares)
	if err != nil {
		c.callError(w, "commit", err)
		return
	}
	wire.WriteJSON(w, http.StatusOK, wire.CommitAnswer{Results: res})
}

func (c *Custodian) storeShares(w http.ResponseWriter, r *http.Request) {
	var body wire.StoreShares
	if !decode(w, r, &body) {
		return
	}
	res, err := c.StoreShares(r.Context(), body.Shares)
	if err != nil {
		c.callError(w, "store", err)
		return
	}
	wire.WriteJSON(w, http.StatusOK, wire.StoreAnswer{Results: res})
}

func (c *Custodian) refs(op func(context.Context, []wire.ShareRef) ([]wire.RefResult, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var body wire.ShareRefs
		if !decode(w, r, &body) {
			return
		}
		res, err := op(r.Context(), body.Shares)
		if err != nil {
			c.callError(w, "destroy", err)
			return
		}
		wire.WriteJSON(w, http.StatusOK, wire.RefAnswer{Results: res})
	}
}

func (c *Custodian) serveRelease(w http.ResponseWriter, r *http.Request) {
	var body wire.ReleaseEvidence
	if !decode(w, r, &body) {
		return
	}
	ans, err := c.Release(r.Context(), body)
	if err != nil {
		c.callError(w, "release", err)
		return
	}
	wire.WriteJSON(w, http.StatusOK, ans)
}

func (c *Custodian) rewrap(w http.ResponseWriter, r *http.Request) {
	ans, err := c.Rewrap(r.Context())
	if err != nil {
		c.callError(w, "rewrap", err)
		return
	}
	wire.WriteJSON(w, http.StatusOK, ans)
}

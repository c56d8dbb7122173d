// Package pseudonymservice is the pseudonym service's HTTP API: the
// VOPRF evaluation of package pseudonym, for the callers it knows by
// token, each within its rate, counted and logged without identifiers.
// It is run by an organisation other than the mediator's operator
// (docs/pseudonyms.md).
package pseudonymservice

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mediatorhq/mediator/pseudonym"
	"github.com/mediatorhq/mediator/ratelimit"
	"github.com/mediatorhq/mediator/wire"
)

// Caller is one client the service answers: its name, in logs, metrics
// and rate limits, and its bearer token. Tokens are compared in constant
// time and never logged.
type Caller struct {
	Name  string
	Token []byte
}

// ServiceConfig configures the service's HTTP API.
type ServiceConfig struct {
	Key *pseudonym.Key
	// PreviousKey, if set, is the key Key replaces: during a rotation's
	// overlap the service also evaluates with it for a client that asks
	// for it by id (the roster lists both, the new one first).
	PreviousKey *pseudonym.Key
	Callers     []Caller
	// Limit bounds the elements each caller may have evaluated: Rate per
	// second, Burst at once (DefaultLimit when zero).
	Limit ratelimit.Limit
	Log   *slog.Logger
	// MetricsToken, if set, is the bearer token GET /metrics needs (the
	// operator's monitoring); without it /metrics is not served.
	MetricsToken []byte
	Now          func() time.Time // for tests; time.Now when nil
}

// DefaultLimit is a caller's default rate: 2,000 identifiers a second,
// 20,000 at once — a gateway's first-seen identifiers, far below what
// enumerating phone numbers would need (10^10 of them take 58 days).
var DefaultLimit = ratelimit.Limit{Rate: 2000, Burst: 20_000}

// maxEvaluateBody bounds an evaluation request: pseudonym.MaxBatch elements of 32
// bytes in base64, with room to spare.
const maxEvaluateBody = 128 << 10

// Service is the pseudonym service's HTTP API:
//
//	POST /v1/evaluate     a caller's blinded elements → pseudonym.Evaluation (bearer token)
//	GET  /v1/public-key   {"public_key","key_id"} (public)
//	GET  /healthz         200
//	GET  /metrics         Prometheus metrics (the metrics token, when configured)
//
// It logs, per call, the caller and how many elements it evaluated, never
// the elements; it counts them per caller
// (mediator_pseudonym_elements_total) so that an alert can see a rate
// like enumeration.
type Service struct {
	previous *pseudonym.PublicKey            // the key replaced, during an overlap
	eval     *pseudonym.Evaluator            // with the key in force
	byKeyID  map[string]*pseudonym.Evaluator // every key it holds
	pub      pseudonym.PublicKey
	callers  []hashedCaller
	limit    *ratelimit.Buckets
	log      *slog.Logger
	now      func() time.Time

	metricsToken [32]byte // SHA-256 of the metrics token; zero: no /metrics
	registry     *prometheus.Registry
	*Metrics
}

// Metrics are the service's metrics, in a registry of its own.
type Metrics struct {
	elements *prometheus.CounterVec
	refused  *prometheus.CounterVec
}

// NewMetrics returns the service's metrics, registered nowhere yet.
func NewMetrics() *Metrics {
	return &Metrics{
		elements: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mediator_pseudonym_elements_total",
			Help: "Blinded elements evaluated, per caller."}, []string{"caller"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mediator_pseudonym_refused_total",
			Help: "Evaluation calls refused, per caller and reason (unauthenticated, rate_limited, bad_request, unknown_key)."}, []string{"caller", "reason"}),
	}
}

// Collectors are the metrics' collectors, to register.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.elements, m.refused}
}

type hashedCaller struct {
	name  string
	token [32]byte // SHA-256 of the token
}

// NewService returns the service for cfg.
func NewService(cfg ServiceConfig) (*Service, error) {
	if cfg.Key == nil {
		return nil, errors.New("pseudonym: the service needs its key")
	}
	if len(cfg.Callers) == 0 {
		return nil, errors.New("pseudonym: the service needs at least one caller")
	}
	s := &Service{eval: pseudonym.NewEvaluator(cfg.Key), pub: cfg.Key.Public(), log: cfg.Log, now: cfg.Now, Metrics: NewMetrics()}
	s.byKeyID = map[string]*pseudonym.Evaluator{s.eval.KeyID(): s.eval}
	if cfg.PreviousKey != nil {
		prev := cfg.PreviousKey.Public()
		if prev.ID() == s.pub.ID() {
			return nil, errors.New("pseudonym: the previous key is the key in force")
		}
		s.previous = &prev
		s.byKeyID[prev.ID()] = pseudonym.NewEvaluator(cfg.PreviousKey)
	}
	for _, c := range cfg.Callers {
		if c.Name == "" || len(c.Token) < 16 {
			return nil, fmt.Errorf("pseudonym: caller %q needs a name and a token of at least 16 bytes", c.Name)
		}
		s.callers = append(s.callers, hashedCaller{name: c.Name, token: sha256.Sum256(c.Token)})
	}
	limit := cfg.Limit
	if limit.Rate == 0 {
		limit = DefaultLimit
	}
	s.limit = ratelimit.New(limit)
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.registry = prometheus.NewRegistry()
	s.registry.MustRegister(s.Collectors()...)
	if len(cfg.MetricsToken) > 0 {
		if len(cfg.MetricsToken) < 16 {
			return nil, errors.New("pseudonym: the metrics token needs at least 16 bytes")
		}
		s.metricsToken = sha256.Sum256(cfg.MetricsToken)
	}
	return s, nil
}

// Handler returns the service's routes.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/evaluate", s.postEvaluate)
	mux.HandleFunc("GET /v1/public-key", func(w http.ResponseWriter, _ *http.Request) {
		ans := PublicKeyAnswer{PublicKey: s.pub.String(), KeyID: s.pub.ID()}
		if s.previous != nil {
			ans.PreviousPublicKey, ans.PreviousKeyID = s.previous.String(), s.previous.ID()
		}
		wire.WriteJSON(w, http.StatusOK, ans)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	if s.metricsToken != [32]byte{} {
		metrics := promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{})
		mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
			tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			sum := sha256.Sum256([]byte(tok))
			if subtle.ConstantTimeCompare(sum[:], s.metricsToken[:]) != 1 {
				wire.WriteError(w, http.StatusUnauthorized, "unauthenticated", "the metrics token is required")
				return
			}
			metrics.ServeHTTP(w, r)
		})
	}
	return mux
}

// PublicKeyAnswer is GET /v1/public-key: the service's word on its keys,
// which no client trusts for itself (the roster names the key).
type PublicKeyAnswer struct {
	PublicKey string `json:"public_key"`
	// PreviousPublicKey and PreviousKeyID name the key replaced, while
	// the service still evaluates with it.
	PreviousPublicKey string `json:"previous_public_key,omitempty"`
	PreviousKeyID     string `json:"previous_key_id,omitempty"`
	KeyID             string `json:"key_id"`
}

// caller returns the name of the caller whose token r carries.
func (s *Service) caller(r *http.Request) (string, bool) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return "", false
	}
	sum := sha256.Sum256([]byte(tok))
	name, found := "", 0
	for _, c := range s.callers {
		eq := subtle.ConstantTimeCompare(sum[:], c.token[:])
		if eq == 1 {
			name = c.name
		}
		found |= eq
	}
	return name, found == 1
}

func (s *Service) postEvaluate(w http.ResponseWriter, r *http.Request) {
	name, ok := s.caller(r)
	if !ok {
		s.refused.WithLabelValues("", "unauthenticated").Inc()
		wire.WriteError(w, http.StatusUnauthorized, "unauthenticated", "a caller's bearer token is required")
		return
	}
	var req pseudonym.EvaluateRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxEvaluateBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		s.refused.WithLabelValues(name, "bad_request").Inc()
		wire.WriteError(w, http.StatusBadRequest, "bad_request", "the body must be {\"elements\": [base64, …]} of at most "+strconv.Itoa(maxEvaluateBody)+" bytes")
		return
	}
	if n := len(req.Elements); n > 0 && n <= pseudonym.MaxBatch {
		if ok, wait := s.limit.ReserveN(name, n, s.now()); !ok {
			s.refused.WithLabelValues(name, "rate_limited").Inc()
			s.log.Warn("evaluation rate limited", "caller", name, "elements", n)
			w.Header().Set("Retry-After", strconv.Itoa(ratelimit.RetryAfterSeconds(wait)))
			wire.WriteError(w, http.StatusTooManyRequests, "rate_limited", "too many identifiers for this caller; retry later")
			return
		}
	}
	eval := s.eval
	if req.KeyID != "" {
		if eval = s.byKeyID[req.KeyID]; eval == nil {
			s.refused.WithLabelValues(name, "unknown_key").Inc()
			wire.WriteError(w, http.StatusUnprocessableEntity, "unknown_key",
				"this service evaluates with "+s.pub.ID()+" (and the key it replaces, during a rotation); the roster may be newer or older than the client's")
			return
		}
	}
	ev, err := eval.Evaluate(req)
	if errors.Is(err, pseudonym.ErrBadRequest) {
		s.refused.WithLabelValues(name, "bad_request").Inc()
		wire.WriteError(w, http.StatusUnprocessableEntity, "bad_elements", err.Error())
		return
	}
	if err != nil {
		s.log.Error("evaluation failed", "caller", name, "err", err)
		wire.WriteError(w, http.StatusInternalServerError, "internal", "the evaluation failed")
		return
	}
	s.elements.WithLabelValues(name).Add(float64(len(req.Elements)))
	s.log.Info("evaluated", "caller", name, "elements", len(req.Elements))
	wire.WriteJSON(w, http.StatusOK, ev)
}

// Package api is the mediator's HTTP interface: the chi router, thin
// handlers, and the middleware every request passes through (request ids,
// access logs, panic recovery, body limits, authentication and OPA
// authorization). Handlers decode, call a package, and encode; they never talk
// SQL or Vault themselves.
package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mediatorhq/mediator/access"
	"github.com/mediatorhq/mediator/audit"
	"github.com/mediatorhq/mediator/escrow"
	"github.com/mediatorhq/mediator/governance"
	"github.com/mediatorhq/mediator/identity"
	"github.com/mediatorhq/mediator/ingest"
	"github.com/mediatorhq/mediator/policy"
	"github.com/mediatorhq/mediator/ratelimit"
	"github.com/mediatorhq/mediator/stats"
)

// Authenticator verifies a bearer token.
type Authenticator interface {
	Verify(ctx context.Context, raw string) (identity.Principal, error)
}

// Authorizer decides whether a call is allowed.
type Authorizer interface {
	Authorize(ctx context.Context, in policy.AuthzInput) (bool, error)
}

// Check is one readiness probe; Probe returns nil when Name is reachable.
type Check struct {
	Name  string
	Probe func(ctx context.Context) error
}

// Deps are what the router needs; cmd/mediator wires the real ones.
type Deps struct {
	Logger  *slog.Logger
	Authn   Authenticator
	Authz   Authorizer
	Metrics *Metrics
	Ready   []Check

	// Ingest takes events into Log; Log answers for its entries, proofs,
	// checkpoints and bundles.
	Ingest Ingester
	Log    *audit.Log

	Escrow *escrow.Service
	Access *access.Service
	// Governance runs the roster: proposals, signatures, check-ins.
	Governance *governance.Service

	// The SOC view: counts of committed events, and the k below which
	// nothing is reported.
	Stats         *stats.Store
	StatsMinGroup int

	// Limits are the per-identity request rates (zero: unlimited).
	Limits Limits
}

// defaultBodyLimit bounds request bodies on routes that do not set their own.
const defaultBodyLimit = 1 << 20

type server struct {
	log     *slog.Logger
	authn   Authenticator
	authz   Authorizer
	metrics *Metrics
	ready   []Check

	ingest     Ingester
	auditLog   *audit.Log
	escrow     *escrow.Service
	access     *access.Service
	governance *governance.Service

	stats         *stats.Store
	statsMinGroup int
}

// NewRouter returns the handler for every endpoint. Each route is listed
// here with the middleware it runs; which roles may call it is decided by
// policy/authz.rego through guard.
func NewRouter(d Deps) http.Handler {
	s := &server{log: d.Logger, authn: d.Authn, authz: d.Authz, metrics: d.Metrics, ready: d.Ready,
		ingest: d.Ingest, auditLog: d.Log, escrow: d.Escrow, access: d.Access, governance: d.Governance,
		stats: d.Stats, statsMinGroup: d.StatsMinGroup}
	r := chi.NewRouter()
	r.Use(requestID, s.accessLog, s.recoverPanic)
	r.NotFound(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, codeNotFound, "no such endpoint")
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusMethodNotAllowed, codeMethodNotAllowed, "method not allowed on this endpoint")
	})

	// Every route is guarded; bodies are capped after the caller is known.
	g := r.With(s.guard, limitBody(defaultBodyLimit))

	// Operations: probes and the API description are public by policy;
	// metrics need the metrics role (or the private listener,
	// MetricsHandler).
	g.Get("/healthz", s.healthz)
	g.Get("/readyz", s.readyz)
	g.Get("/metrics", MetricsHandler(d.Metrics).ServeHTTP)
	g.Get("/openapi.yaml", s.openAPISpec)

	// Identity.
	g.Get("/v1/whoami", s.whoami)

	// Ingest: delivery metadata into the audit log, rate-limited per caller.
	// Bodies are admitted by bytes too: per caller, and within the
	// service-wide budget of bytes in flight, before they are read.
	ingestBytes := d.Limits.IngestBytes
	if ingestBytes.Rate > 0 {
		ingestBytes.Burst = max(ingestBytes.Burst, ingest.MaxBodyBytes)
	}
	r.With(s.guard, s.rateLimited(ratelimit.New(d.Limits.Ingest)), limitBody(ingest.MaxBodyBytes),
		s.ingestAdmission(ratelimit.New(ingestBytes), newIngestBudget(d.Limits.IngestInFlightBytes))).Post("/v1/events", s.ingestEvents)

	// The audit log, for auditors and officers.
	g.Get("/v1/audit/checkpoint", s.checkpoint)
	g.Get("/v1/audit/verifier-key", s.verifierKey)
	g.Get("/v1/audit/entries", s.entries)
	g.Get("/v1/audit/entries/{seq}", s.entry)
	g.Get("/v1/audit/entries/{seq}/tlog-proof", s.tlogProof)
	g.Get("/v1/audit/proof/inclusion", s.inclusionProof)
	g.Get("/v1/audit/proof/consistency", s.consistencyProof)
	g.Get("/v1/audit/export", s.export)
	// The same log as C2SP tlog-tiles, for auditors' own tools.
	g.Get("/v1/audit/tlog/checkpoint", s.checkpoint)
	tiles := g.With(s.rateLimited(ratelimit.New(d.Limits.Tiles)),
		s.serviceLimited(ratelimit.New(d.Limits.TilesService)))
	tiles.Get("/v1/audit/tlog/tile/entries/*", s.tlogEntries)
	tiles.Get("/v1/audit/tlog/tile/{level}/*", s.tlogTile)

	// Key escrow.
	g.Get("/v1/escrow/custodians", s.custodianSet)
	g.With(s.rateLimited(ratelimit.New(d.Limits.Deposit))).Post("/v1/escrow/keys", s.depositKey)

	// Lawful access: the roster (proposed by admins, signed by approvers),
	// requests (officers), signed approvals (approvers) and releases (the
	// requesting officer).
	// Every write is rate-limited per caller.
	aw := g.With(s.rateLimited(ratelimit.New(d.Limits.Access)))
	aw.Post("/v1/approvers", s.retiredApprovers)
	g.Get("/v1/approvers", s.retiredApprovers)
	aw.Post("/v1/approvers/{id}/keys", s.retiredApprovers)
	aw.Post("/v1/approvers/{id}/deactivate", s.retiredApprovers)
	g.Get("/v1/roster", s.rosterChain)
	g.Get("/v1/roster/proposals", s.rosterProposals)
	g.Get("/v1/roster/proposals/{digest}", s.rosterProposal)
	aw.Post("/v1/roster/proposals", s.proposeRoster)
	aw.Post("/v1/roster/proposals/{digest}/signatures", s.signRoster)
	aw.Post("/v1/roster/checkins", s.checkin)
	aw.Post("/v1/access-requests", s.createRequest)
	g.Get("/v1/access-requests", s.listRequests)
	g.Get("/v1/access-requests/{id}", s.getRequest)
	aw.Post("/v1/access-requests/{id}/approvals", s.approveRequest)
	aw.Post("/v1/access-requests/{id}/release", s.releaseRequest)
	g.Get("/v1/access-requests/{id}/release", s.releasedAgain)
	aw.Post("/v1/access-requests/{id}/revoke", s.revokeRequest)

	// The SOC view: aggregate counts without identifiers.
	g.Get("/v1/stats/transport", s.transportStats)

	return r
}

// MetricsHandler serves m's registry in the Prometheus text format, with
// no authentication of its own: the router guards it, and a separate
// listener serving it alone must be bound to a private address.
func MetricsHandler(m *Metrics) http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
}

// Routes lists "METHOD pattern" for every route h serves, for tests that
// check each one against the policy and the API description.
func Routes(h http.Handler) ([]string, error) {
	r, ok := h.(chi.Routes)
	if !ok {
		return nil, errors.New("api: handler is not a chi router")
	}
	var out []string
	err := chi.Walk(r, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		out = append(out, method+" "+route)
		return nil
	})
	return out, err
}

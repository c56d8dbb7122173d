package custodian

import (
	"errors"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/invalid"
	"github.com/mediatorhq/mediator/vaultclient"
)

// Metrics are a custodian's own metric families, on its own registry.
// Labels carry outcomes and codes only, never an id. A nil *Metrics records
// nothing.
type Metrics struct {
	Registry *prometheus.Registry

	shares         *prometheus.CounterVec
	releases       *prometheus.CounterVec
	releaseTime    prometheus.Histogram
	sharesOut      *prometheus.CounterVec
	lifecycleOps   *prometheus.CounterVec
	policyRefused  prometheus.Counter
	rosterRefusedC prometheus.Counter
	logRefusedC    prometheus.Counter
	officerRefC    prometheus.Counter
	vetoes         *prometheus.CounterVec
	signedHolds    *prometheus.CounterVec
	rateLimitedC   prometheus.Counter
	vetoWithheldC  prometheus.Counter
	revocations    *prometheus.CounterVec
	revokedRefC    prometheus.Counter
	denialsC       prometheus.Counter
	lockedRefC     prometheus.Counter
	rosterVersionG prometheus.Gauge
	requests       *prometheus.CounterVec
	vault          *vaultclient.Metrics
}

// NewMetrics makes a custodian's registry with its metrics, Vault call
// metrics, and the Go and process collectors.
func NewMetrics() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		shares: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mediator_custodian_shares_total",
			Help: "Shares offered to this custodian for storing, by outcome: stored, invalid (did not open as its share), replayed (stored here before, or kept under another escrow id), destroyed (destroyed here before), stale (a v2 deposit time far from this custodian's clock), retired_key (sealed to an HPKE key the roster replaced more than hpke_grace ago), unavailable.",
		}, []string{"outcome"}),
		releases: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mediator_custodian_releases_total",
			Help: "Release calls this custodian checked, by outcome: checked (its checks passed), refused (policy or evidence), bad_request, error.",
		}, []string{"outcome"}),
		releaseTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mediator_custodian_release_seconds",
			Help:    "Time to check a release and re-seal its shares.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		sharesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mediator_custodian_shares_released_total",
			Help: "Shares asked for in releases, by outcome: released, released_again (the kept answer of an earlier call), not_found, not_in_scope, already_released, unavailable, too_many_in_call (past the most one call answers).",
		}, []string{"outcome"}),
		rateLimitedC: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mediator_custodian_rate_limited_total",
			Help: "Calls to the routes that need no credential refused because their address called too often (public_rate).",
		}),
		lifecycleOps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mediator_custodian_lifecycle_total",
			Help: "Commit, destroy and abort requests per share, by operation and outcome (committed, destroyed, aborted, held, too_young, too_old, released, committed (an abort refused), not_found, failed).",
		}, []string{"op", "outcome"}),
		policyRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mediator_custodian_policy_refused_total",
			Help: "Release policies this custodian refused to load (data checks or probes failed).",
		}),
		rosterRefusedC: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mediator_custodian_roster_refused_total",
			Help: "Release calls refused because the roster chain offered did not hold the newest version this custodian had verified (a rollback).",
		}),
		logRefusedC: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mediator_custodian_log_refused_total",
			Help: "Release calls refused because the request was not proven to be in the audit log under a checkpoint this custodian cosigned.",
		}),
		officerRefC: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mediator_custodian_officer_refused_total",
			Help: "Release calls refused because the request was not signed by an officer of the roster in force (a recipient key or scope the officer did not choose).",
		}),
		signedHolds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mediator_custodian_signed_holds_total",
			Help: "Signed hold statements delivered directly (POST /v1/holds/signed), by action (place, lift, other) and outcome: recorded, already_recorded, refused (not valid, not a member or approver, bad signature, a lift short of the roster rule, roster refused), error.",
		}, []string{"action", "outcome"}),
		vetoes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mediator_custodian_vetoes_total",
			Help: "Deny votes delivered directly (POST /v1/vetoes), by outcome: recorded, already_recorded, refused (bad signature, not an approver, not a canonical request, roster refused), error.",
		}, []string{"outcome"}),
		vetoWithheldC: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mediator_custodian_veto_withheld_total",
			Help: "Release calls refused while a deny vote delivered to this custodian directly was not in the evidence: a mediator withholding a veto, or one that never heard of it.",
		}),
		revocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mediator_custodian_revocations_total",
			Help: "Officers' revocations of their requests delivered directly (POST /v1/revocations), by outcome: recorded, already_recorded, refused (bad signature, not the requester, not an officer, not a canonical request, another digest on record, roster refused), error.",
		}, []string{"outcome"}),
		revokedRefC: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mediator_custodian_revoked_refused_total",
			Help: "Release calls refused because the request's officer revoked it at this custodian: a mediator asking for a request its officer withdrew.",
		}),
		denialsC: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mediator_custodian_denials_total",
			Help: "Refusals of a release by this custodian's own policy, each recorded toward the request's lock (5 lock it).",
		}),
		lockedRefC: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mediator_custodian_locked_refused_total",
			Help: "Release calls refused because this custodian's policy refused the request's release 5 times before: someone probing the policy, or a mediator that does not lock.",
		}),
		rosterVersionG: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mediator_custodian_roster_version",
			Help: "The newest roster version this custodian has verified from its pinned genesis.",
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mediator_custodian_http_requests_total",
			Help: "API calls by route and status code.",
		}, []string{"route", "code"}),
	}
	reg.MustRegister(m.shares, m.releases, m.releaseTime, m.sharesOut, m.lifecycleOps, m.policyRefused, m.rosterRefusedC, m.logRefusedC, m.officerRefC, m.vetoes, m.signedHolds, m.rateLimitedC, m.vetoWithheldC,
		m.revocations, m.revokedRefC, m.denialsC, m.lockedRefC, m.rosterVersionG, m.requests,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.vault = vaultclient.NewMetrics(reg)
	return m
}

func (m *Metrics) stored(outcome string, n int) {
	if m == nil || n == 0 {
		return
	}
	m.shares.WithLabelValues(outcome).Add(float64(n))
}

func (m *Metrics) release(err error, d time.Duration) {
	if m == nil {
		return
	}
	var refused *RefusedError
	_, bad := invalid.As(err)
	outcome := "checked"
	switch {
	case errors.As(err, &refused):
		outcome = "refused"
	case bad:
		outcome = "bad_request"
	case err != nil:
		outcome = "error"
	}
	m.releases.WithLabelValues(outcome).Inc()
	m.releaseTime.Observe(d.Seconds())
}

func (m *Metrics) shareReleased(outcome string) {
	if m == nil {
		return
	}
	m.sharesOut.WithLabelValues(outcome).Inc()
}

func (m *Metrics) lifecycle(op, outcome string) {
	if m == nil {
		return
	}
	m.lifecycleOps.WithLabelValues(op, outcome).Inc()
}

func (m *Metrics) rateLimited() {
	if m == nil {
		return
	}
	m.rateLimitedC.Inc()
}

func (m *Metrics) lifecycleN(op, outcome string, n int) {
	if m == nil || n == 0 {
		return
	}
	m.lifecycleOps.WithLabelValues(op, outcome).Add(float64(n))
}

func (m *Metrics) request(route string, code int) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
}

func (m *Metrics) rosterRefused() {
	if m != nil {
		m.rosterRefusedC.Inc()
	}
}

func (m *Metrics) rosterVersion(v uint64) {
	if m != nil {
		m.rosterVersionG.Set(float64(v))
	}
}

func (m *Metrics) logRefused() {
	if m != nil {
		m.logRefusedC.Inc()
	}
}

func (m *Metrics) officerRefused() {
	if m != nil {
		m.officerRefC.Inc()
	}
}

// veto counts a delivered veto by its outcome: status when recorded, else
// refused (the caller's fault) or error.
func (m *Metrics) veto(status string, err error) {
	if m == nil {
		return
	}
	var re *RosterError
	_, bad := invalid.As(err)
	switch {
	case errors.As(err, &re) || bad:
		status = "refused"
	case err != nil:
		status = "error"
	}
	m.vetoes.WithLabelValues(status).Inc()
}

func (m *Metrics) vetoWithheld() {
	if m != nil {
		m.vetoWithheldC.Inc()
	}
}

// revocation counts a delivered revocation by its outcome: status when
// recorded, else refused (the caller's fault) or error.
func (m *Metrics) revocation(status string, err error) {
	if m == nil {
		return
	}
	var re *RosterError
	_, bad := invalid.As(err)
	switch {
	case errors.As(err, &re) || bad:
		status = "refused"
	case err != nil:
		status = "error"
	}
	m.revocations.WithLabelValues(status).Inc()
}

func (m *Metrics) revokedRefused() {
	if m != nil {
		m.revokedRefC.Inc()
	}
}

func (m *Metrics) denialRecorded() {
	if m != nil {
		m.denialsC.Inc()
	}
}

func (m *Metrics) lockedRefused() {
	if m != nil {
		m.lockedRefC.Inc()
	}
}

// signedHold counts a delivered signed hold statement by its action and
// outcome: status when recorded, else refused (the caller's fault) or
// error.
func (m *Metrics) signedHold(action, status string, err error) {
	if m == nil {
		return
	}
	if action != approval.HoldPlace && action != approval.HoldLift {
		action = "other"
	}
	var re *RosterError
	var hre *HoldRefusedError
	_, bad := invalid.As(err)
	switch {
	case errors.As(err, &re) || errors.As(err, &hre) || bad:
		status = "refused"
	case err != nil:
		status = "error"
	}
	m.signedHolds.WithLabelValues(action, status).Inc()
}

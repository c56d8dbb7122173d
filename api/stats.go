package api

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/mediatorhq/mediator/redact"
	"github.com/mediatorhq/mediator/stats"
)

// StatsSource answers the SOC's aggregate questions (stats.Store).
type StatsSource interface {
	Transport(ctx context.Context, q stats.Query, now time.Time) (stats.Report, error)
}

// Tally counts committed records for the SOC view (stats.Tally).
type Tally interface {
	Count(r *redact.Record)
}

// transportStats is GET /v1/stats/transport?window=1h&group_by=mcc|platform|transport
// (auditor): counts by transport and status, E2EE coverage and downgrades,
// with every group and cell under k left out.
func (s *server) transportStats(w http.ResponseWriter, r *http.Request) {
	q := stats.Query{Window: time.Hour, GroupBy: "transport", MinGroup: s.statsMinGroup}
	if v := r.URL.Query().Get("window"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			writeError(w, http.StatusUnprocessableEntity, codeValidationFailed, "window must be a duration such as 15m, 1h or 24h")
			return
		}
		q.Window = d
	}
	if v := r.URL.Query().Get("group_by"); v != "" {
		q.GroupBy = v
	}
	rep, err := s.stats.Transport(r.Context(), q, time.Now())
	if errors.Is(err, stats.ErrInvalid) {
		writeError(w, http.StatusUnprocessableEntity, codeValidationFailed, strings.TrimPrefix(err.Error(), "stats: invalid query: "))
		return
	}
	if err != nil {
		s.logFailure(r, "transport stats", err)
		unavailable(w, "postgres", "the statistics are unavailable")
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

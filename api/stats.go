package api

import (
	"net/http"
	"time"

	"github.com/mediatorhq/mediator/stats"
	"github.com/mediatorhq/mediator/wire"
)

// transportStats is GET /v1/stats/transport?window=1h&group_by=mcc|platform|transport
// (auditor): counts by transport and status, E2EE coverage and downgrades
// for the last complete aligned window, with nothing below k published.
func (s *server) transportStats(w http.ResponseWriter, r *http.Request) {
	q := stats.Query{Window: time.Hour, GroupBy: "transport", MinGroup: s.statsMinGroup}
	if v := r.URL.Query().Get("window"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			writeError(w, http.StatusUnprocessableEntity, codeValidationFailed, "window must be one of 15m, 1h, 6h, 24h or 168h",
				wire.FieldProblem{Field: "window", Reason: "must be one of 15m, 1h, 6h, 24h or 168h"})
			return
		}
		q.Window = d
	}
	if v := r.URL.Query().Get("group_by"); v != "" {
		q.GroupBy = v
	}
	rep, err := s.stats.Transport(r.Context(), q, time.Now())
	if writeInvalid(w, err) {
		return
	}
	if err != nil {
		s.logFailure(r, "transport stats", err)
		unavailable(w, "postgres", "the statistics are unavailable")
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

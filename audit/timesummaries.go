package audit

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/mediatorhq/mediator/job"
)

// maxRangesPerCall bounds the page ranges of the time index one call
// summarises: 64 ranges of 128 pages, 64 MiB of the table. Ingest at
// 30,000 entries a second fills about 25 a second; a log that grew before
// migration 00023, or with the leader away, catches up at this pace.
const maxRangesPerCall = 64

// sqlSummarizeTimes summarises the full ranges of audit_entries_occurred
// from range $1 on, at most $2, and returns the first one it left
// (migration 00023).
const sqlSummarizeTimes = "SELECT mediator_summarize_audit_times($1, $2)"

// summarizeTimes summarises the full page ranges of the time index up to
// at most max from range from on, and returns the first range it left:
// from itself if a VACUUM or ANALYZE held the table.
func (s *store) summarizeTimes(ctx context.Context, from int64, max int) (int64, error) {
	var next int64
	if err := s.pool.QueryRow(ctx, sqlSummarizeTimes, from, max).Scan(&next); err != nil {
		return from, fmt.Errorf("audit: summarise the time index: %w", err)
	}
	return next, nil
}

// summarizeTimes keeps the time index's summaries up with the table every
// interval until ctx ends: PostgreSQL summarises a BRIN range only when
// asked, so without this a search by time reads every range filled since
// the last VACUUM, and a VACUUM reads each of them again to summarise it
// (docs/decisions.md, "The service summarises the time index").
func (l *Log) summarizeTimes(ctx context.Context, interval time.Duration, log *slog.Logger) {
	var next int64 // ranges below are summarised; after a start, none is known to be
	job.Every(ctx, interval, func() {
		n, err := l.store.summarizeTimes(ctx, next, maxRangesPerCall)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("summarising the time index failed; searches by time read more of the table meanwhile", "err", err)
			}
			return
		}
		next = n
	})
}

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

// maxFreshRows bounds the new rows one round reads (see readFresh).
const maxFreshRows = 200_000

// sqlReadFresh reads the new rows $1 to $2-1 of the table, each row's
// heap tuple (occurred_at is not in the primary key), so that PostgreSQL
// marks them as committed while their pages are still in memory.
const sqlReadFresh = "SELECT count(occurred_at) FROM audit_entries WHERE seq >= $1 AND seq < $2"

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

// readFresh reads the entries from to to-1 once. The first reader of a
// row marks it on its page as committed (PostgreSQL's hint bits), which
// dirties the page: read while the page is still dirty from the append,
// that costs no write; read first by a VACUUM, a summary or a verify
// minutes later, it writes the page out again.
func (s *store) readFresh(ctx context.Context, from, to int64) error {
	var n int64
	if err := s.pool.QueryRow(ctx, sqlReadFresh, from, to).Scan(&n); err != nil {
		return fmt.Errorf("audit: read new entries %d to %d: %w", from, to-1, err)
	}
	return nil
}

// summarizeTimes keeps the time index's summaries up with the table every
// interval until ctx ends: PostgreSQL summarises a BRIN range only when
// asked, so without this a search by time reads every range filled since
// the last VACUUM, and a VACUUM reads each of them again to summarise it
// (docs/decisions.md, "The service summarises the time index"). Each
// round first reads the rows appended since the last (readFresh): while
// a VACUUM holds the table, which at full ingest is most of the time with
// autovacuum on, the summaries wait, and the vacuum summarises those
// ranges itself when it ends, then without writing them again.
func (l *Log) summarizeTimes(ctx context.Context, interval time.Duration, log *slog.Logger) {
	var next int64     // ranges below are summarised; after a start, none is known to be
	fresh := int64(-1) // entries from here on are not read yet; at a start, the tree's size
	job.Every(ctx, interval, func() {
		var size int64
		if err := l.store.pool.QueryRow(ctx, sqlTreeSize).Scan(&size); err != nil {
			return
		}
		if fresh < 0 || fresh > size {
			fresh = size
		}
		if to := min(size, fresh+maxFreshRows); to > fresh {
			if err := l.store.readFresh(ctx, fresh, to); err != nil {
				if ctx.Err() == nil {
					log.Warn("reading new entries failed", "err", err)
				}
				return
			}
			fresh = to
		}
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

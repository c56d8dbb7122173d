-- +goose Up
-- Autovacuum no longer vacuums audit_entries because rows were inserted
-- (issue 24). Since PostgreSQL 13 it vacuums a table once the rows
-- inserted since its last vacuum pass autovacuum_vacuum_insert_threshold
-- plus autovacuum_vacuum_insert_scale_factor (20 %) of it, to mark its
-- pages all-visible and freeze the rows old enough. This table gets
-- nothing from that:
--   - its rows are never updated or deleted, so there is nothing to
--     reclaim;
--   - no hot query reads it with an index-only scan, which is what the
--     visibility map is for;
--   - the pages such a vacuum visits are young, younger than
--     vacuum_freeze_min_age, so it freezes none of them. The
--     anti-wraparound vacuum must scan every page anyway;
--   - the leader reads new rows while their pages are still dirty (hint
--     bits) and summarises the time index itself (00023).
-- What it costs is a second write of every heap page, once per fifth of
-- the table's growth, minutes to hours after the pages left memory: at 1
-- billion entries each pass would read and write some 170 GB. Vacuums for
-- wraparound, and ANALYZE, still run as configured (docs/operations.md,
-- "Vacuum and the audit log").
ALTER TABLE audit_entries SET (autovacuum_vacuum_insert_threshold = -1);

-- +goose Down
ALTER TABLE audit_entries RESET (autovacuum_vacuum_insert_threshold);

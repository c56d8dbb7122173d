-- +goose Up
-- The duplicate check of an append probes the log by event id (issue 24).
-- Event ids are stored as digests ("eid1:" + 64 hex digits), random keys,
-- so every append writes into a random page of their index: the unique
-- (event_id, submitter) index of 00011, about 90 bytes an entry, outgrew
-- memory at a few million entries, and after each PostgreSQL checkpoint
-- every page it touched was written to the WAL again in full. An index on
-- a 64-bit hash of the id holds 20 bytes an entry instead (1.3 GB → 0.3 GB
-- at 10 M entries). It is not unique (two ids may share a hash): the probe
-- rechecks event_id and submitter on the row, and an id's uniqueness per
-- submitter is decided under the sequencer lock, which every append takes
-- before its duplicate check (audit/store.go, docs/decisions.md).
-- hashtextextended is PostgreSQL's own text hash, the one hash partitioning
-- relies on being stable. Building it locks appends for the scan: seconds
-- per million entries.
CREATE INDEX audit_entries_event_hash ON audit_entries (hashtextextended(event_id, 0)) WHERE event_id IS NOT NULL;
DROP INDEX audit_entries_submitter_event;

-- +goose Down
CREATE UNIQUE INDEX audit_entries_submitter_event ON audit_entries (event_id, submitter);
DROP INDEX audit_entries_event_hash;

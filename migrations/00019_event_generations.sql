-- +goose Up
-- The duplicate check probes one generation (issue 24). Event ids are
-- random keys: an index on their hash alone took every append, and every
-- probe, to a random page of an index as large as the log, and PostgreSQL's
-- cost per row doubled between the first and the tenth million entries.
-- Keyed by generation first (2^20 entries, seq >> 20), appends write into
-- the current generation's part of the index only, and the sequencer
-- probes that part for every id; a closed generation is probed only for
-- the ids its filter in audit_event_filters cannot rule out.
CREATE INDEX audit_entries_event_generation ON audit_entries ((seq >> 20), hashtextextended(event_id, 0)) WHERE event_id IS NOT NULL;
DROP INDEX audit_entries_event_hash;

-- One Bloom filter (package idfilter) of the (submitter, event id) pairs of
-- each closed generation, built once the generation is full, from its
-- entries. last_leaf is the SHA-256 of the generation's last leaf: a
-- filter is used only while that entry is the same, so one built before a
-- restore that brought back other entries is ignored. Derived data: a
-- wrong filter can let a duplicate in as a new entry, never refuse one or
-- hide an entry.
CREATE TABLE audit_event_filters (
    generation bigint      PRIMARY KEY CHECK (generation >= 0),
    filter     bytea       NOT NULL,
    last_leaf  bytea       NOT NULL CHECK (length(last_leaf) = 32),
    built_at   timestamptz NOT NULL DEFAULT now()
);
-- Random bits do not compress: store them out of line without trying.
ALTER TABLE audit_event_filters ALTER COLUMN filter SET STORAGE EXTERNAL;

CREATE TRIGGER audit_event_filters_append_only BEFORE UPDATE OR DELETE ON audit_event_filters
    FOR EACH ROW EXECUTE FUNCTION mediator_refuse_change();
CREATE TRIGGER audit_event_filters_no_truncate BEFORE TRUNCATE ON audit_event_filters
    FOR EACH STATEMENT EXECUTE FUNCTION mediator_refuse_change();

GRANT SELECT, INSERT ON audit_event_filters TO mediator_runtime;

-- +goose Down
DROP TABLE audit_event_filters;
CREATE INDEX audit_entries_event_hash ON audit_entries (hashtextextended(event_id, 0)) WHERE event_id IS NOT NULL;
DROP INDEX audit_entries_event_generation;

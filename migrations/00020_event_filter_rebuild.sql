-- +goose Up
-- A generation's filter is keyed by the generation and the hash of the
-- last leaf it was built with (issue 24). Until now a filter whose
-- generation's last leaf changed (a restore brought back other entries),
-- or one removed by hand, was never built again: the table is append-only
-- and held one filter a generation, and filters were stored only after
-- the newest. The service now stores a filter for every closed generation
-- that has none matching its last leaf, beside the stale one.
ALTER TABLE audit_event_filters DROP CONSTRAINT audit_event_filters_pkey;
ALTER TABLE audit_event_filters ADD PRIMARY KEY (generation, last_leaf);

-- +goose Down
-- Only a filter that matches its generation's last leaf is ever used:
-- drop the others, which leaves at most one a generation.
ALTER TABLE audit_event_filters DISABLE TRIGGER audit_event_filters_append_only;
DELETE FROM audit_event_filters f
    WHERE f.last_leaf IS DISTINCT FROM (SELECT sha256(e.leaf) FROM audit_entries e WHERE e.seq = ((f.generation + 1) << 20) - 1);
ALTER TABLE audit_event_filters ENABLE TRIGGER audit_event_filters_append_only;
ALTER TABLE audit_event_filters DROP CONSTRAINT audit_event_filters_pkey;
ALTER TABLE audit_event_filters ADD PRIMARY KEY (generation);

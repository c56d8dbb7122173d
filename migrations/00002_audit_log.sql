-- +goose Up
-- The audit log. Rows are only ever inserted: triggers refuse UPDATE,
-- DELETE and TRUNCATE, and the runtime role may only INSERT and SELECT.

-- audit_entries: one row per leaf; seq is the leaf index, gapless from 0.
-- hashes holds the RFC 6962 tree hashes that appending this leaf completed,
-- in the order golang.org/x/mod/sumdb/tlog.StoredHashes returns them (the
-- leaf hash, then each subtree root the leaf closes), so the tree costs no
-- rows of its own and any stored hash is one primary-key lookup away.
CREATE TABLE audit_entries (
    seq             bigint      PRIMARY KEY CHECK (seq >= 0),
    leaf            bytea       NOT NULL,
    hashes          bytea       NOT NULL CHECK (length(hashes) % 32 = 0 AND length(hashes) > 0),
    kind            text        NOT NULL,
    event_id        text        UNIQUE,
    conversation_id text,
    occurred_at     timestamptz,
    ingested_at     timestamptz NOT NULL
);
-- Searches filter by conversation (a btree), by time (a BRIN index: entries
-- arrive roughly in time order, and BRIN costs almost nothing to maintain
-- on append), and by kind (scanned in seq order with the other filters;
-- every index on this table is paid for on every append).
CREATE INDEX audit_entries_conversation ON audit_entries (conversation_id, seq);
CREATE INDEX audit_entries_occurred ON audit_entries USING brin (occurred_at);

-- audit_checkpoints: every signed checkpoint, as the signed note text.
CREATE TABLE audit_checkpoints (
    tree_size  bigint      PRIMARY KEY CHECK (tree_size >= 0),
    root_hash  bytea       NOT NULL CHECK (length(root_hash) = 32),
    note       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER audit_entries_append_only BEFORE UPDATE OR DELETE ON audit_entries
    FOR EACH ROW EXECUTE FUNCTION mediator_refuse_change();
CREATE TRIGGER audit_entries_no_truncate BEFORE TRUNCATE ON audit_entries
    FOR EACH STATEMENT EXECUTE FUNCTION mediator_refuse_change();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION mediator_refuse_change();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION mediator_refuse_change();

-- mediator_runtime is the group role the service's login role joins. Roles
-- are cluster-wide: it is created only when pg_roles lacks it, so a schema
-- owner without CREATEROLE migrates once a superuser has made it
-- (docs/operations.md, "Database roles"), and another database (or a
-- concurrent migration) having made it first is no error. An owner who
-- may not create it is told the SQL that does. This block was changed
-- after release; goose keeps no checksums, and every database it already
-- ran on has the role.
-- +goose StatementBegin
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mediator_runtime') THEN
        BEGIN
            CREATE ROLE mediator_runtime NOLOGIN;
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN
                NULL;
            WHEN insufficient_privilege THEN
                RAISE EXCEPTION 'mediator: role mediator_runtime does not exist and role % may not create it (no CREATEROLE); as a superuser run: CREATE ROLE mediator_runtime NOLOGIN; then migrate again (docs/operations.md, "Database roles")', current_user
                    USING ERRCODE = 'insufficient_privilege';
        END;
    END IF;
END
$$;
-- +goose StatementEnd
GRANT SELECT, INSERT ON audit_entries, audit_checkpoints TO mediator_runtime;
GRANT SELECT ON goose_db_version TO mediator_runtime;

-- +goose Down
DROP TABLE audit_checkpoints;
DROP TABLE audit_entries;

-- +goose Up
-- The log's halt (issue 26). The checkpointer writes this row when the
-- database holds less of the log than was signed: a failover to a standby
-- that had not received the newest entries (a lost tail), or a restore
-- from an old backup. While it exists, no entry is appended and no
-- checkpoint signed, so nothing is acknowledged into a tree that would
-- fork what the witnesses cosigned. The service may write it but not
-- remove it: an operator deletes it (as the schema's owner) once the lost
-- entries are recovered or a new log is decided on; docs/operations.md,
-- "The log lost its tail".
CREATE TABLE audit_halt (
    singleton      boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    reason         text        NOT NULL,
    tree_size      bigint      NOT NULL CHECK (tree_size >= 0),
    signed_size    bigint      NOT NULL CHECK (signed_size >= 0),
    found_at       timestamptz NOT NULL DEFAULT now()
);

GRANT SELECT, INSERT ON audit_halt TO mediator_runtime;

-- +goose Down
DROP TABLE audit_halt;

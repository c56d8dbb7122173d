-- +goose Up
-- Witnesses' cosignatures of the log's checkpoints (issue 14, C2SP
-- tlog-witness and tlog-cosignature): one signature line per witness and
-- checkpoint. A checkpoint is published (served, exported) only once the
-- configured quorum of witnesses cosigned it; each line verifies with its
-- witness's key, so a row written by anyone else counts for nothing.
CREATE TABLE audit_cosignatures (
    tree_size   bigint      NOT NULL,
    witness     text        NOT NULL CHECK (length(witness) BETWEEN 1 AND 256),
    line        text        NOT NULL CHECK (length(line) <= 4096),
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tree_size, witness)
);

CREATE TRIGGER audit_cosignatures_append_only BEFORE UPDATE OR DELETE ON audit_cosignatures
    FOR EACH ROW EXECUTE FUNCTION mediator_refuse_change();
CREATE TRIGGER audit_cosignatures_no_truncate BEFORE TRUNCATE ON audit_cosignatures
    FOR EACH STATEMENT EXECUTE FUNCTION mediator_refuse_change();

GRANT SELECT, INSERT ON audit_cosignatures TO mediator_runtime;

-- +goose Down
DROP TABLE audit_cosignatures;

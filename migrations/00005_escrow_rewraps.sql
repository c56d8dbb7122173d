-- +goose Up
-- After a custodian's Transit key is rotated, `mediator escrow rewrap`
-- re-wraps that custodian's shares to the new key version inside Vault. The
-- hash of each new wrapped share is recorded here before the share is
-- replaced, so reconstruction accepts the deposit's hash or a recorded
-- rewrap's, and nothing else.
CREATE TABLE escrow_share_rewraps (
    escrow_id    uuid        NOT NULL REFERENCES escrow_keys,
    share_index  smallint    NOT NULL CHECK (share_index >= 0),
    share_hash   bytea       NOT NULL CHECK (length(share_hash) = 32),
    rewrapped_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (escrow_id, share_index, share_hash)
);

CREATE TRIGGER escrow_share_rewraps_append_only BEFORE UPDATE OR DELETE ON escrow_share_rewraps
    FOR EACH ROW EXECUTE FUNCTION mediator_refuse_change();
CREATE TRIGGER escrow_share_rewraps_no_truncate BEFORE TRUNCATE ON escrow_share_rewraps
    FOR EACH STATEMENT EXECUTE FUNCTION mediator_refuse_change();

GRANT SELECT, INSERT ON escrow_share_rewraps TO mediator_runtime;

-- +goose Down
DROP TABLE escrow_share_rewraps;

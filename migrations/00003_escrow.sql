-- +goose Up
-- Escrow metadata: ids, N, K, custodians, the key commitment and a hash of
-- each wrapped share. Never key material. All tables are append-only.

CREATE TABLE escrow_keys (
    escrow_id       uuid     PRIMARY KEY,
    conversation_id text     NOT NULL,
    key_id          text     NOT NULL,
    threshold       smallint NOT NULL CHECK (threshold >= 2),
    shares          smallint NOT NULL CHECK (shares >= threshold AND shares <= 255),
    custodians      text[]   NOT NULL CHECK (cardinality(custodians) = shares),
    key_commitment  text     NOT NULL CHECK (key_commitment ~ '^sha256:[0-9a-f]{64}$'),
    share_hashes    bytea[]  NOT NULL CHECK (cardinality(share_hashes) = shares),
    UNIQUE (conversation_id, key_id)
);

-- The audit entry of each deposit, written in the same transaction.
CREATE TABLE escrow_deposit_audit (
    escrow_id  uuid        PRIMARY KEY REFERENCES escrow_keys,
    audit_seq  bigint      NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- A destroyed escrow: its shares are gone from every custodian.
CREATE TABLE escrow_destructions (
    escrow_id    uuid        PRIMARY KEY REFERENCES escrow_keys,
    audit_seq    bigint      NOT NULL,
    destroyed_at timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER escrow_keys_append_only BEFORE UPDATE OR DELETE ON escrow_keys
    FOR EACH ROW EXECUTE FUNCTION mediator_refuse_change();
CREATE TRIGGER escrow_keys_no_truncate BEFORE TRUNCATE ON escrow_keys
    FOR EACH STATEMENT EXECUTE FUNCTION mediator_refuse_change();
CREATE TRIGGER escrow_deposit_audit_append_only BEFORE UPDATE OR DELETE ON escrow_deposit_audit
    FOR EACH ROW EXECUTE FUNCTION mediator_refuse_change();
CREATE TRIGGER escrow_deposit_audit_no_truncate BEFORE TRUNCATE ON escrow_deposit_audit
    FOR EACH STATEMENT EXECUTE FUNCTION mediator_refuse_change();
CREATE TRIGGER escrow_destructions_append_only BEFORE UPDATE OR DELETE ON escrow_destructions
    FOR EACH ROW EXECUTE FUNCTION mediator_refuse_change();
CREATE TRIGGER escrow_destructions_no_truncate BEFORE TRUNCATE ON escrow_destructions
    FOR EACH STATEMENT EXECUTE FUNCTION mediator_refuse_change();

GRANT SELECT, INSERT ON escrow_keys, escrow_deposit_audit, escrow_destructions TO mediator_runtime;

-- +goose Down
DROP TABLE escrow_destructions;
DROP TABLE escrow_deposit_audit;
DROP TABLE escrow_keys;

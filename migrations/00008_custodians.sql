-- +goose Up
-- Custodians hold the shares (issue 12): the mediator keeps, per escrow,
-- which custodian holds which share, where (the locator of its deposit
-- receipt) and the custodian's signed deposit receipt; who deposited it and
-- under which custodian set. Nothing here opens a share: a receipt carries
-- ids, hashes and the custodian's signature. Append-only like the log.
ALTER TABLE escrow_keys ADD COLUMN depositor text;
ALTER TABLE escrow_keys ADD COLUMN custodian_set text CHECK (custodian_set ~ '^sha256:[0-9a-f]{64}$');

CREATE TABLE escrow_custodian_shares (
    escrow_id   uuid     NOT NULL REFERENCES escrow_keys,
    custodian   text     NOT NULL,
    share_index smallint NOT NULL CHECK (share_index BETWEEN 1 AND 255),
    locator     text     NOT NULL,
    receipt     jsonb    NOT NULL,
    PRIMARY KEY (escrow_id, custodian)
);

-- Shares custodians released for a request, each sealed by its custodian
-- to the request's recipient key, kept so that an officer whose answer was
-- lost can fetch them again, and so that a release that reached K
-- custodians over several attempts completes. The mediator cannot open
-- them.
CREATE TABLE access_release_shares (
    request_id  uuid        NOT NULL REFERENCES access_requests,
    escrow_id   uuid        NOT NULL REFERENCES escrow_keys,
    custodian   text        NOT NULL,
    share_index smallint    NOT NULL CHECK (share_index BETWEEN 1 AND 255),
    sealed      bytea       NOT NULL,
    receipt     jsonb       NOT NULL,
    audit_seq   bigint      NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (request_id, escrow_id, custodian)
);

CREATE TRIGGER escrow_custodian_shares_append_only BEFORE UPDATE OR DELETE ON escrow_custodian_shares
    FOR EACH ROW EXECUTE FUNCTION mediator_refuse_change();
CREATE TRIGGER escrow_custodian_shares_no_truncate BEFORE TRUNCATE ON escrow_custodian_shares
    FOR EACH STATEMENT EXECUTE FUNCTION mediator_refuse_change();
CREATE TRIGGER access_release_shares_append_only BEFORE UPDATE OR DELETE ON access_release_shares
    FOR EACH ROW EXECUTE FUNCTION mediator_refuse_change();
CREATE TRIGGER access_release_shares_no_truncate BEFORE TRUNCATE ON access_release_shares
    FOR EACH STATEMENT EXECUTE FUNCTION mediator_refuse_change();

GRANT SELECT, INSERT ON escrow_custodian_shares, access_release_shares TO mediator_runtime;

-- +goose Down
DROP TABLE access_release_shares;
DROP TABLE escrow_custodian_shares;
ALTER TABLE escrow_keys DROP COLUMN custodian_set;
ALTER TABLE escrow_keys DROP COLUMN depositor;

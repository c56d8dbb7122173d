-- +goose Up
-- The roster (issue 13) replaces the single-admin approver registry: who
-- may approve and who holds shares is a chain of versions, each adopted
-- only by a quorum of the previous version's approvers and by every key
-- it adds. The mediator keeps proposals, their signatures and the adopted
-- chain; whoever reads the chain verifies it from the pinned genesis, so
-- these rows prove nothing by themselves. Approvals now name roster
-- approvers, so they no longer reference the retired registry.
ALTER TABLE access_approvals DROP CONSTRAINT access_approvals_approver_id_fkey;
ALTER TABLE access_approvals DROP CONSTRAINT access_approvals_approver_id_key_id_fkey;

CREATE TABLE roster_proposals (
    digest      text        PRIMARY KEY CHECK (digest ~ '^sha256:[0-9a-f]{64}$'),
    version     bigint      NOT NULL CHECK (version >= 1),
    canonical   bytea       NOT NULL,
    proposed_by text        NOT NULL,
    audit_seq   bigint      NOT NULL,
    proposed_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE roster_signatures (
    digest      text        NOT NULL REFERENCES roster_proposals,
    approver_id text        NOT NULL,
    key_id      text        NOT NULL,
    signature   bytea       NOT NULL CHECK (length(signature) = 64),
    audit_seq   bigint      NOT NULL,
    signed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (digest, approver_id, key_id)
);

-- The adopted chain of each genesis: the primary key makes two versions
-- with one number impossible, whatever races. A service reads only the
-- chain of the genesis it pins (a development database may outlive one).
CREATE TABLE roster_versions (
    genesis    text        NOT NULL CHECK (genesis ~ '^sha256:[0-9a-f]{64}$'),
    version    bigint      NOT NULL CHECK (version >= 1),
    digest     text        NOT NULL UNIQUE REFERENCES roster_proposals,
    audit_seq  bigint      NOT NULL,
    adopted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (genesis, version)
);

-- Approvers' signed check-ins: liveness, so that a quorum that can no
-- longer act is noticed before a lawful request needs it.
CREATE TABLE approver_checkins (
    approver_id   text        NOT NULL,
    key_id        text        NOT NULL,
    checked_in_at timestamptz NOT NULL,
    signature     bytea       NOT NULL CHECK (length(signature) = 64),
    received_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX approver_checkins_by_approver ON approver_checkins (approver_id, checked_in_at DESC);

CREATE TRIGGER roster_proposals_append_only BEFORE UPDATE OR DELETE ON roster_proposals
    FOR EACH ROW EXECUTE FUNCTION mediator_refuse_change();
CREATE TRIGGER roster_proposals_no_truncate BEFORE TRUNCATE ON roster_proposals
    FOR EACH STATEMENT EXECUTE FUNCTION mediator_refuse_change();
CREATE TRIGGER roster_signatures_append_only BEFORE UPDATE OR DELETE ON roster_signatures
    FOR EACH ROW EXECUTE FUNCTION mediator_refuse_change();
CREATE TRIGGER roster_signatures_no_truncate BEFORE TRUNCATE ON roster_signatures
    FOR EACH STATEMENT EXECUTE FUNCTION mediator_refuse_change();
CREATE TRIGGER roster_versions_append_only BEFORE UPDATE OR DELETE ON roster_versions
    FOR EACH ROW EXECUTE FUNCTION mediator_refuse_change();
CREATE TRIGGER roster_versions_no_truncate BEFORE TRUNCATE ON roster_versions
    FOR EACH STATEMENT EXECUTE FUNCTION mediator_refuse_change();
CREATE TRIGGER approver_checkins_append_only BEFORE UPDATE OR DELETE ON approver_checkins
    FOR EACH ROW EXECUTE FUNCTION mediator_refuse_change();
CREATE TRIGGER approver_checkins_no_truncate BEFORE TRUNCATE ON approver_checkins
    FOR EACH STATEMENT EXECUTE FUNCTION mediator_refuse_change();

GRANT SELECT, INSERT ON roster_proposals, roster_signatures, roster_versions, approver_checkins TO mediator_runtime;

-- +goose Down
DROP TABLE approver_checkins;
DROP TABLE roster_versions;
DROP TABLE roster_signatures;
DROP TABLE roster_proposals;

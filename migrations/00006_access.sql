-- +goose Up
-- The lawful-access workflow: the approver registry, requests, signed
-- approvals, policy decisions and each request's one final state. Every
-- table is append-only like the log; every row has its audit entry
-- (audit_seq), written in the same transaction.

-- Approvers: people whose signed approvals the release policy weighs. The
-- id is the sub of that person's bearer token.
CREATE TABLE approvers (
    approver_id   text        PRIMARY KEY CHECK (length(approver_id) BETWEEN 1 AND 128),
    roles         text[]      NOT NULL CHECK (cardinality(roles) BETWEEN 1 AND 16),
    registered_by text        NOT NULL,
    audit_seq     bigint      NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now()
);

-- An approver's Ed25519 public keys. The newest is the one future
-- signatures must verify with (rotation adds a key); approvals keep the
-- key id they were verified with.
CREATE TABLE approver_keys (
    approver_id text        NOT NULL REFERENCES approvers,
    key_id      text        NOT NULL,
    public_key  bytea       NOT NULL CHECK (length(public_key) = 32),
    added_by    text        NOT NULL,
    audit_seq   bigint      NOT NULL,
    added_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (approver_id, key_id)
);

-- A deactivated approver's future signatures are refused.
CREATE TABLE approver_deactivations (
    approver_id    text        PRIMARY KEY REFERENCES approvers,
    deactivated_by text        NOT NULL,
    reason         text        NOT NULL,
    audit_seq      bigint      NOT NULL,
    deactivated_at timestamptz NOT NULL DEFAULT now()
);

-- Requests. canonical is the RFC 8785 JSON the digest is computed over and
-- approvers sign; the columns beside it are the same facts, for queries.
CREATE TABLE access_requests (
    request_id           uuid        PRIMARY KEY,
    requester            text        NOT NULL,
    case_id              text        NOT NULL,
    legal_basis          text        NOT NULL,
    warrant_ref          text        NOT NULL,
    jurisdiction         text        NOT NULL,
    justification        text        NOT NULL,
    conversation_ids     text[]      NOT NULL CHECK (cardinality(conversation_ids) >= 1),
    scope_from           timestamptz NOT NULL,
    scope_to             timestamptz NOT NULL,
    recipient_kem_id     integer     NOT NULL,
    recipient_public_key bytea       NOT NULL,
    created_at           timestamptz NOT NULL,
    expires_at           timestamptz NOT NULL,
    canonical            bytea       NOT NULL,
    digest               text        NOT NULL CHECK (digest ~ '^sha256:[0-9a-f]{64}$'),
    audit_seq            bigint      NOT NULL
);
CREATE INDEX access_requests_created ON access_requests (created_at);

-- The one transition out of pending: the primary key makes a second
-- final state impossible, whatever races.
CREATE TABLE access_request_finals (
    request_id  uuid        PRIMARY KEY REFERENCES access_requests,
    status      text        NOT NULL CHECK (status IN ('released', 'denied', 'expired', 'revoked')),
    decided_by  text        NOT NULL,
    decision_id uuid,
    audit_seq   bigint      NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX access_request_finals_status ON access_request_finals (status);

-- Approvals, as verified when submitted. One per approver and request.
CREATE TABLE access_approvals (
    request_id   uuid        NOT NULL REFERENCES access_requests,
    approver_id  text        NOT NULL REFERENCES approvers,
    decision     text        NOT NULL CHECK (decision IN ('approve', 'deny')),
    signature    bytea       NOT NULL CHECK (length(signature) = 64),
    key_id       text        NOT NULL,
    roles        text[]      NOT NULL,
    by_requester boolean     NOT NULL,
    audit_seq    bigint      NOT NULL,
    approved_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (request_id, approver_id),
    FOREIGN KEY (approver_id, key_id) REFERENCES approver_keys
);

-- Every release decision the policy made.
CREATE TABLE access_decisions (
    decision_id     uuid        PRIMARY KEY,
    request_id      uuid        NOT NULL REFERENCES access_requests,
    allow           boolean     NOT NULL,
    reasons         text[]      NOT NULL,
    policy_revision text        NOT NULL,
    input_hash      text        NOT NULL,
    audit_seq       bigint      NOT NULL,
    decided_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX access_decisions_request ON access_decisions (request_id);

CREATE TRIGGER approvers_append_only BEFORE UPDATE OR DELETE ON approvers
    FOR EACH ROW EXECUTE FUNCTION mediator_refuse_change();
CREATE TRIGGER approvers_no_truncate BEFORE TRUNCATE ON approvers
    FOR EACH STATEMENT EXECUTE FUNCTION mediator_refuse_change();
CREATE TRIGGER approver_keys_append_only BEFORE UPDATE OR DELETE ON approver_keys
    FOR EACH ROW EXECUTE FUNCTION mediator_refuse_change();
CREATE TRIGGER approver_keys_no_truncate BEFORE TRUNCATE ON approver_keys
    FOR EACH STATEMENT EXECUTE FUNCTION mediator_refuse_change();
CREATE TRIGGER approver_deactivations_append_only BEFORE UPDATE OR DELETE ON approver_deactivations
    FOR EACH ROW EXECUTE FUNCTION mediator_refuse_change();
CREATE TRIGGER approver_deactivations_no_truncate BEFORE TRUNCATE ON approver_deactivations
    FOR EACH STATEMENT EXECUTE FUNCTION mediator_refuse_change();
CREATE TRIGGER access_requests_append_only BEFORE UPDATE OR DELETE ON access_requests
    FOR EACH ROW EXECUTE FUNCTION mediator_refuse_change();
CREATE TRIGGER access_requests_no_truncate BEFORE TRUNCATE ON access_requests
    FOR EACH STATEMENT EXECUTE FUNCTION mediator_refuse_change();
CREATE TRIGGER access_request_finals_append_only BEFORE UPDATE OR DELETE ON access_request_finals
    FOR EACH ROW EXECUTE FUNCTION mediator_refuse_change();
CREATE TRIGGER access_request_finals_no_truncate BEFORE TRUNCATE ON access_request_finals
    FOR EACH STATEMENT EXECUTE FUNCTION mediator_refuse_change();
CREATE TRIGGER access_approvals_append_only BEFORE UPDATE OR DELETE ON access_approvals
    FOR EACH ROW EXECUTE FUNCTION mediator_refuse_change();
CREATE TRIGGER access_approvals_no_truncate BEFORE TRUNCATE ON access_approvals
    FOR EACH STATEMENT EXECUTE FUNCTION mediator_refuse_change();
CREATE TRIGGER access_decisions_append_only BEFORE UPDATE OR DELETE ON access_decisions
    FOR EACH ROW EXECUTE FUNCTION mediator_refuse_change();
CREATE TRIGGER access_decisions_no_truncate BEFORE TRUNCATE ON access_decisions
    FOR EACH STATEMENT EXECUTE FUNCTION mediator_refuse_change();

GRANT SELECT, INSERT ON approvers, approver_keys, approver_deactivations, access_requests,
    access_request_finals, access_approvals, access_decisions TO mediator_runtime;

-- +goose Down
DROP TABLE access_decisions;
DROP TABLE access_approvals;
DROP TABLE access_request_finals;
DROP TABLE access_requests;
DROP TABLE approver_deactivations;
DROP TABLE approver_keys;
DROP TABLE approvers;

-- +goose Up
-- Legal holds: while a conversation has an unreleased hold, none of its
-- escrowed keys is destroyed at retention end. Append-only: a hold is
-- released by a release row, never by editing the hold.

CREATE TABLE legal_holds (
    hold_id         uuid        PRIMARY KEY,
    conversation_id text        NOT NULL,
    reason          text        NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    placed_by       text        NOT NULL,
    audit_seq       bigint      NOT NULL,
    placed_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX legal_holds_conversation ON legal_holds (conversation_id);

CREATE TABLE legal_hold_releases (
    hold_id     uuid        PRIMARY KEY REFERENCES legal_holds,
    released_by text        NOT NULL,
    audit_seq   bigint      NOT NULL,
    released_at timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER legal_holds_append_only BEFORE UPDATE OR DELETE ON legal_holds
    FOR EACH ROW EXECUTE FUNCTION mediator_refuse_change();
CREATE TRIGGER legal_holds_no_truncate BEFORE TRUNCATE ON legal_holds
    FOR EACH STATEMENT EXECUTE FUNCTION mediator_refuse_change();
CREATE TRIGGER legal_hold_releases_append_only BEFORE UPDATE OR DELETE ON legal_hold_releases
    FOR EACH ROW EXECUTE FUNCTION mediator_refuse_change();
CREATE TRIGGER legal_hold_releases_no_truncate BEFORE TRUNCATE ON legal_hold_releases
    FOR EACH STATEMENT EXECUTE FUNCTION mediator_refuse_change();

GRANT SELECT, INSERT ON legal_holds, legal_hold_releases TO mediator_runtime;

-- +goose Down
DROP TABLE legal_hold_releases;
DROP TABLE legal_holds;

-- +goose Up
-- The SOC's counts (stats.Tally): message and downgrade events per minute
-- by carrier country code, client platform, transport and status, and a
-- downgrade's from and to. No identifier of any kind: no pseudonym,
-- conversation or event id. Each process appends its own rows every few
-- seconds; queries sum them. Append-only like the log.
CREATE TABLE transport_counts (
    minute         timestamptz NOT NULL,
    kind           text        NOT NULL CHECK (kind IN ('message', 'downgrade')),
    mcc            text        NOT NULL,
    platform       text        NOT NULL,
    transport      text        NOT NULL,
    status         text        NOT NULL,
    downgrade_from text        NOT NULL,
    downgrade_to   text        NOT NULL,
    events         bigint      NOT NULL CHECK (events > 0),
    written_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX transport_counts_minute ON transport_counts (minute);

CREATE TRIGGER transport_counts_append_only BEFORE UPDATE OR DELETE ON transport_counts
    FOR EACH ROW EXECUTE FUNCTION mediator_refuse_change();
CREATE TRIGGER transport_counts_no_truncate BEFORE TRUNCATE ON transport_counts
    FOR EACH STATEMENT EXECUTE FUNCTION mediator_refuse_change();

GRANT SELECT, INSERT ON transport_counts TO mediator_runtime;

-- +goose Down
DROP TABLE transport_counts;

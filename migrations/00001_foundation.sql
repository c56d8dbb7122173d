-- +goose Up
-- The foundation every later table stands on.

-- mediator_refuse_change is attached by later migrations to append-only
-- tables: any UPDATE, DELETE or TRUNCATE raises, so a record, once written,
-- can only be changed by someone who first disables the trigger (which
-- `mediator audit verify` then detects).
-- +goose StatementBegin
CREATE FUNCTION mediator_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'mediator: % on % is not allowed: the table is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION mediator_refuse_change();

-- +goose Up
-- The time index is summarised by the service, as the table fills
-- (issue 24). audit_entries_occurred is a BRIN index (00002): a summary of
-- occurred_at for every range of 128 heap pages. PostgreSQL writes a
-- range's summary only when asked: by VACUUM, or by brin_summarize_*. So
--   - with autovacuum off, no range was ever summarised, and a search by
--     time read the whole table (an unsummarised range may hold anything);
--   - with autovacuum on, each vacuum of the table ended by summarising
--     every range filled since the last one, those appended during its
--     own minute-long pass included: as their rows' first reader it
--     dirtied pages already written out, and wrote 2.2 GB in 9 seconds
--     beside the appends (at 5.8 M entries, docs/performance.md,
--     "Thirteenth pass"). The leader also reads new rows while their
--     pages are still dirty (audit/timesummaries.go).
-- The checkpointer's leader now calls this function every checkpoint
-- interval: it summarises the full ranges from from_range on, at most
-- max_ranges of them, while their pages are still in memory, and returns
-- the first range it left for the next call. A partial range stays
-- unsummarised (a summarised range has its summary rewritten by every
-- insert into it); searches read it whole, as before.
--
-- It runs as the owner: brin_summarize_range needs the index's owner,
-- and the runtime role may only call this, which summarises and nothing
-- else. Its search path is pg_catalog, then the schema this migration ran
-- in, then the caller's temporary tables: a temporary table or index a
-- caller made under these names (the documented roles may make none) is
-- never the one it locks or summarises, and every function it calls is
-- named with its schema, so that no overload in a schema a caller may
-- write to is chosen instead. It takes
-- the table's SHARE UPDATE EXCLUSIVE lock without waiting, so that it
-- never makes a running VACUUM or ANALYZE cancel itself, nor waits behind
-- one: it then does nothing this time (a vacuum summarises too). 128 is
-- the index's pages_per_range (the default); a range summarised already
-- costs a look at the index's range map.
-- +goose StatementBegin
DO $migration$
BEGIN
    EXECUTE pg_catalog.format($create$
CREATE FUNCTION mediator_summarize_audit_times(from_range bigint, max_ranges integer) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, %I, pg_temp AS $body$
DECLARE
    full_ranges bigint := pg_catalog.pg_relation_size('audit_entries'::pg_catalog.regclass)
        / pg_catalog.current_setting('block_size'::pg_catalog.text)::pg_catalog.int8 / 128;
    r bigint := greatest(from_range, 0);
    upto bigint;
BEGIN
    upto := least(full_ranges, r + greatest(max_ranges, 0));
    IF r >= upto THEN
        RETURN r;
    END IF;
    BEGIN
        LOCK TABLE audit_entries IN SHARE UPDATE EXCLUSIVE MODE NOWAIT;
    EXCEPTION WHEN lock_not_available THEN
        RETURN r;
    END;
    WHILE r < upto LOOP
        PERFORM pg_catalog.brin_summarize_range('audit_entries_occurred'::pg_catalog.regclass, r * 128);
        r := r + 1;
    END LOOP;
    RETURN upto;
END
$body$
$create$, current_schema());
END
$migration$;
-- +goose StatementEnd
REVOKE ALL ON FUNCTION mediator_summarize_audit_times(bigint, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION mediator_summarize_audit_times(bigint, integer) TO mediator_runtime;

-- +goose Down
DROP FUNCTION mediator_summarize_audit_times(bigint, integer);

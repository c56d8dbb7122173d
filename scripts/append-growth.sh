#!/usr/bin/env bash
# append-growth.sh: how PostgreSQL's own cost of appending to the log grows
# with its size, without the mediator (docs/performance.md, "The log at 10
# million entries"). One backend appends MILLIONS million rows shaped like
# audit_entries (~490-byte rows, 5,000 conversations, a digest event id per
# row) to a scratch table, 1,000 rows a transaction, each transaction first
# taking an advisory lock and probing the event-id index for its 1,000 ids,
# as the sequencer does; it prints the rate of every million, the WAL it
# wrote, and the sizes at the end. The table is dropped afterwards.
#
# INDEXES picks the secondary indexes (the primary key and the BRIN time
# index are always there):
#   current            the event-id hash and (conversation hash, seq): 00015, 00016
#   text-conversation  the event-id hash and (conversation_id, seq): 00015 alone
#   event-id           the event-id hash alone
#   generation         the event-id hash behind the generation seq >> 20, probed
#                      in the current generation only (what the sequencer's
#                      filter of closed generations leaves), and (conversation
#                      hash, seq)
#   generation-alone   the same without the conversation index
#   none               neither: the primary key and BRIN alone
#
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/test INDEXES=current MILLIONS=10 scripts/append-growth.sh
set -euo pipefail
INDEXES=${INDEXES:-current}
MILLIONS=${MILLIONS:-10}
URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
P=(psql -X -q -v ON_ERROR_STOP=1 "$URL")
trap '"${P[@]}" -c "DROP TABLE IF EXISTS append_growth" -c "DROP PROCEDURE IF EXISTS append_growth_load(int)" >/dev/null' EXIT

"${P[@]}" <<'SQL'
DROP TABLE IF EXISTS append_growth;
CREATE TABLE append_growth (
    seq bigint PRIMARY KEY, leaf bytea NOT NULL, hashes bytea NOT NULL, kind text NOT NULL,
    event_id text, submitter text, conversation_id text, occurred_at timestamptz, ingested_at timestamptz NOT NULL);
CREATE INDEX append_growth_occurred ON append_growth USING brin (occurred_at);
CREATE OR REPLACE PROCEDURE append_growth_load(millions int, generations bool) LANGUAGE plpgsql AS $$
DECLARE
    base bigint := 0;
    t0 timestamptz := clock_timestamp();
    w0 pg_lsn := pg_current_wal_lsn();
    ids text[];
    found int;
    t1 timestamptz;
    probe interval := '0';
BEGIN
    WHILE base < millions::bigint * 1000000 LOOP
        PERFORM pg_advisory_xact_lock(7242);
        SELECT array_agg('eid1:' || encode(sha256(int8send(g)), 'hex')) INTO ids
            FROM generate_series(base, base + 999) g;
        t1 := clock_timestamp();
        IF generations THEN
            SELECT count(*) INTO found FROM unnest(ids) AS q(event_id)
                CROSS JOIN LATERAL (SELECT seq FROM append_growth
                    WHERE seq >> 20 = base >> 20
                        AND hashtextextended(event_id, 0) = hashtextextended(q.event_id, 0)
                        AND event_id = q.event_id AND submitter = 'gateway' LIMIT 1) e;
        ELSE
            SELECT count(*) INTO found FROM unnest(ids) AS q(event_id)
                CROSS JOIN LATERAL (SELECT seq FROM append_growth
                    WHERE hashtextextended(event_id, 0) = hashtextextended(q.event_id, 0)
                        AND event_id = q.event_id AND submitter = 'gateway' LIMIT 1) e;
        END IF;
        probe := probe + (clock_timestamp() - t1);
        INSERT INTO append_growth
            SELECT g, convert_to(repeat(md5(g::text), 8), 'UTF8'),
                sha256(int8send(g)) || sha256(int8send(-g)), 'message.delivered',
                ids[g - base + 1], 'gateway',
                'hmac-sha256:1:' || encode(sha256(int8send(g % 5000)), 'hex'), now(), now()
            FROM generate_series(base, base + 999) g;
        base := base + 1000;
        COMMIT;
        IF base % 1000000 = 0 THEN
            RAISE NOTICE 'million %: % rows/s, % s of it in the duplicate probes, % MB of WAL', base / 1000000,
                round(1000000 / extract(epoch FROM clock_timestamp() - t0)),
                round(extract(epoch FROM probe)::numeric, 1),
                round((pg_current_wal_lsn() - w0) / 1048576);
            t0 := clock_timestamp();
            probe := '0';
            w0 := pg_current_wal_lsn();
        END IF;
    END LOOP;
END $$;
SQL
case $INDEXES in
current)
  "${P[@]}" -c "CREATE INDEX ON append_growth (hashtextextended(event_id, 0)) WHERE event_id IS NOT NULL" \
    -c "CREATE INDEX ON append_growth (hashtextextended(conversation_id, 0), seq) WHERE conversation_id IS NOT NULL" ;;
text-conversation)
  "${P[@]}" -c "CREATE INDEX ON append_growth (hashtextextended(event_id, 0)) WHERE event_id IS NOT NULL" \
    -c "CREATE INDEX ON append_growth (conversation_id, seq)" ;;
event-id)
  "${P[@]}" -c "CREATE INDEX ON append_growth (hashtextextended(event_id, 0)) WHERE event_id IS NOT NULL" ;;
generation)
  "${P[@]}" -c "CREATE INDEX ON append_growth ((seq >> 20), hashtextextended(event_id, 0)) WHERE event_id IS NOT NULL" \
    -c "CREATE INDEX ON append_growth (hashtextextended(conversation_id, 0), seq) WHERE conversation_id IS NOT NULL" ;;
generation-alone)
  "${P[@]}" -c "CREATE INDEX ON append_growth ((seq >> 20), hashtextextended(event_id, 0)) WHERE event_id IS NOT NULL" ;;
none) ;;
*) echo "append-growth: INDEXES must be current, text-conversation, event-id, generation, generation-alone or none" >&2; exit 2 ;;
esac
echo "settings: $("${P[@]}" -Atc "SELECT string_agg(name || '=' || current_setting(name), ' ' ORDER BY name) FROM pg_settings
  WHERE name IN ('shared_buffers', 'max_wal_size', 'wal_compression', 'checkpoint_timeout', 'synchronous_commit')"), indexes: $INDEXES"
"${P[@]}" -c "SET jit = off" -c "CALL append_growth_load($MILLIONS, $(case $INDEXES in generation*) echo true ;; *) echo false ;; esac))" 2>&1 | sed 's/^NOTICE:  //'
"${P[@]}" -c "SELECT c.relname, pg_size_pretty(pg_relation_size(c.oid)) AS size FROM pg_class c
  WHERE c.relname LIKE 'append_growth%' AND c.relkind IN ('r', 'i') ORDER BY 1"

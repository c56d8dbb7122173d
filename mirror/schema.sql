-- The mirror's own database (package mirror). It keeps one log's copy.
-- Rows are only ever inserted: triggers refuse UPDATE, DELETE and TRUNCATE
-- of the copy and of the checkpoints the mirror cosigned.

-- mirror_log: the one log this database mirrors.
CREATE TABLE IF NOT EXISTS mirror_log (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    origin   text    NOT NULL
);

-- mirror_pending: every pending checkpoint (C2SP tlog-mirror), as the log
-- signed it; add-entries may name any of them as upload_end.
CREATE TABLE IF NOT EXISTS mirror_pending (
    tree_size   bigint      PRIMARY KEY CHECK (tree_size >= 0),
    root_hash   bytea       NOT NULL CHECK (length(root_hash) = 32),
    note        text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);

-- mirror_entries: the copy, one row per entry, idx gapless from 0, with the
-- tree hashes appending it completed, packed (package packedhash).
CREATE TABLE IF NOT EXISTS mirror_entries (
    idx    bigint PRIMARY KEY CHECK (idx >= 0),
    leaf   bytea  NOT NULL,
    hashes bytea  NOT NULL CHECK (length(hashes) % 32 = 0 AND length(hashes) > 0)
);

-- mirror_checkpoints: each mirror checkpoint, the log's signed note with the
-- mirror's cosignature; the latest is what the mirror serves.
CREATE TABLE IF NOT EXISTS mirror_checkpoints (
    tree_size bigint      PRIMARY KEY CHECK (tree_size >= 0),
    note      text        NOT NULL,
    cosigned_at timestamptz NOT NULL DEFAULT now()
);

CREATE OR REPLACE FUNCTION mirror_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'mirror: % on % is refused: the copy is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['mirror_entries', 'mirror_checkpoints', 'mirror_pending'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = t || '_append_only') THEN
            EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I FOR EACH ROW EXECUTE FUNCTION mirror_refuse_change()', t || '_append_only', t);
            EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION mirror_refuse_change()', t || '_no_truncate', t);
        END IF;
    END LOOP;
END
$$;

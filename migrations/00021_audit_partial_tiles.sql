-- +goose Up
-- Partial hash tiles above the full ones (issue 24). An inclusion proof at
-- 10 M entries took its hashes of tree levels 16 to 23 from entries'
-- rows: seven rows that depend on the entry proved, scattered over the
-- whole table, each a cold page where the table no longer fits in memory.
-- Those hashes are the nodes of the tree's rightmost, partial tile at
-- level 2 (one new level-16 node every 65,536 entries), which the tile job
-- now stores once for each width it reaches: every proof then reads the
-- same short row. A row is derived data, as a full tile is: a partial
-- tile of width w is the first w hashes of its full tile, identical in
-- every tree that holds them; the service reads it back only into proofs
-- and tiles that clients check against a cosigned checkpoint, so a forged
-- row can make them fail but never pass; audit verify compares every
-- stored partial tile with the hashes it recomputes.
CREATE TABLE audit_partial_tiles (
    level smallint NOT NULL CHECK (level BETWEEN 1 AND 7),
    idx   bigint   NOT NULL CHECK (idx >= 0),
    width smallint NOT NULL CHECK (width BETWEEN 1 AND 255),
    data  bytea    NOT NULL CHECK (length(data) = 32 * width),
    PRIMARY KEY (level, idx, width)
);
ALTER TABLE audit_partial_tiles ALTER COLUMN data SET STORAGE EXTERNAL;

CREATE TRIGGER audit_partial_tiles_append_only BEFORE UPDATE OR DELETE ON audit_partial_tiles
    FOR EACH ROW EXECUTE FUNCTION mediator_refuse_change();
CREATE TRIGGER audit_partial_tiles_no_truncate BEFORE TRUNCATE ON audit_partial_tiles
    FOR EACH STATEMENT EXECUTE FUNCTION mediator_refuse_change();

GRANT SELECT, INSERT ON audit_partial_tiles TO mediator_runtime;

-- +goose Down
DROP TABLE audit_partial_tiles;

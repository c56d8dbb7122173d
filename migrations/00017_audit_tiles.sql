-- +goose Up
-- Full C2SP tlog-tiles hash tiles, written once their tree is published
-- (issue 25). A level-0 tile read from audit_entries touches the pages of
-- 256 rows (some 26 heap pages at 10 M entries, most of them outside
-- shared buffers, evicting what ingest just wrote), and a level-1 tile
-- 256 scattered rows; kept here, a tile is one row whose 8 KiB are read
-- from a few TOAST pages. Full tiles never change. A row is derived data:
-- the service reads it back only as a tile clients check against a
-- cosigned checkpoint, so a forged row can make their proofs fail but
-- never pass; audit verify compares every stored tile with the hashes it
-- recomputes.
CREATE TABLE audit_tiles (
    level smallint NOT NULL CHECK (level BETWEEN 0 AND 7),
    idx   bigint   NOT NULL CHECK (idx >= 0),
    data  bytea    NOT NULL CHECK (length(data) = 8192),
    PRIMARY KEY (level, idx)
);
-- The hashes do not compress: store them out of line without trying.
ALTER TABLE audit_tiles ALTER COLUMN data SET STORAGE EXTERNAL;

CREATE TRIGGER audit_tiles_append_only BEFORE UPDATE OR DELETE ON audit_tiles
    FOR EACH ROW EXECUTE FUNCTION mediator_refuse_change();
CREATE TRIGGER audit_tiles_no_truncate BEFORE TRUNCATE ON audit_tiles
    FOR EACH STATEMENT EXECUTE FUNCTION mediator_refuse_change();

GRANT SELECT, INSERT ON audit_tiles TO mediator_runtime;

-- +goose Down
DROP TABLE audit_tiles;

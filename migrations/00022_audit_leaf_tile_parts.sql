-- +goose Up
-- Full level-0 hash tiles in eighths, inline (issue 24). An inclusion
-- proof at 10 M entries took its level-0 hashes from an audit_tiles row:
-- 8 KiB stored out of line, a TOAST index lookup and about three TOAST
-- pages, most of them outside shared buffers right after ingest. A proof
-- needs only 8 of those 256 hashes: the 32 leaf hashes of the part of
-- the tile that holds its entry give the nodes below level 5, and the
-- three subtrees beside that part, at levels 5, 6 and 7, are stored with
-- it. A part is one row of 1,160 bytes, seven to a heap page and never
-- toasted (STORAGE PLAIN): a proof reads one heap page for its level-0
-- hashes. The tile job writes a tile's eight parts in one transaction; a
-- full tile served to clients is its eight rows in order. A row is derived
-- data, as a full tile is: the service reads it back only into proofs and
-- tiles that clients check against a cosigned checkpoint, so a forged row
-- can make them fail but never pass; audit verify compares every stored
-- part with the hashes it recomputes. Level-0 rows already in audit_tiles
-- stay readable; the job stores their parts too, from the rows once it
-- has checked each against its stored level-8 hash.
CREATE TABLE audit_leaf_tile_parts (
    idx      bigint   NOT NULL CHECK (idx >= 0),                -- the level-0 tile
    part     smallint NOT NULL CHECK (part BETWEEN 0 AND 7),    -- its leaves 32·part to 32·part+31
    -- The roots of the subtrees beside the part at tree levels 5, 6 and 7,
    -- in that order. Before hashes, so that the row packs seven to a page.
    siblings bytea    NOT NULL CHECK (length(siblings) = 96),
    hashes   bytea    NOT NULL CHECK (length(hashes) = 1024),   -- the part's 32 leaf hashes
    PRIMARY KEY (idx, part)
);
ALTER TABLE audit_leaf_tile_parts ALTER COLUMN siblings SET STORAGE PLAIN;
ALTER TABLE audit_leaf_tile_parts ALTER COLUMN hashes SET STORAGE PLAIN;

CREATE TRIGGER audit_leaf_tile_parts_append_only BEFORE UPDATE OR DELETE ON audit_leaf_tile_parts
    FOR EACH ROW EXECUTE FUNCTION mediator_refuse_change();
CREATE TRIGGER audit_leaf_tile_parts_no_truncate BEFORE TRUNCATE ON audit_leaf_tile_parts
    FOR EACH STATEMENT EXECUTE FUNCTION mediator_refuse_change();

GRANT SELECT, INSERT ON audit_leaf_tile_parts TO mediator_runtime;

-- +goose Down
DROP TABLE audit_leaf_tile_parts;

-- +goose Up
-- The hash of each kept release receipt (shares.SignedReceipt.Hash), kept
-- beside it (issue 21): the call that completes a release of many keys
-- names every share by this hash in its access.release entry, and reads
-- 64 bytes a share instead of the receipt. Rows kept before this
-- migration have none; the reader hashes their receipts instead.
ALTER TABLE access_release_shares ADD COLUMN receipt_sha256 text;

-- +goose Down
ALTER TABLE access_release_shares DROP COLUMN receipt_sha256;

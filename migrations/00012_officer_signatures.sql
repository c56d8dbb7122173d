-- +goose Up
-- Officers sign their requests (issue 20): the filing officer's Ed25519
-- signature over the request's digest, checked by the mediator, each
-- approver's tool and each custodian against the officer's key in the
-- roster in force. Requests filed before this migration have none, and
-- can no longer be approved or released.
ALTER TABLE access_requests ADD COLUMN officer_signature bytea;

-- +goose Down
ALTER TABLE access_requests DROP COLUMN officer_signature;

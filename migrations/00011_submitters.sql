-- +goose Up
-- Event ids are unique per submitter (issue 15): the authenticated subject
-- that sent an event is kept with it, in the leaf and in this column, and
-- one gateway can no longer claim another's event id first. Entries from
-- before this migration have the empty submitter, a namespace of their own. The column is checked against the leaf by `mediator audit verify`.
ALTER TABLE audit_entries ADD COLUMN submitter text NOT NULL DEFAULT '';
ALTER TABLE audit_entries DROP CONSTRAINT audit_entries_event_id_key;
-- event_id first: an append looks its batch's ids up with event_id = ANY,
-- as it did before, and keeps the rows of its own submitters.
CREATE UNIQUE INDEX audit_entries_submitter_event ON audit_entries (event_id, submitter);

-- Escrow ids likewise: (conversation_id, key_id) is unique per depositor,
-- so a depositor cannot squat another's key id; each escrow names its
-- depositor (escrow_keys.depositor, since 00008, and its audit entry).
ALTER TABLE escrow_keys DROP CONSTRAINT escrow_keys_conversation_id_key_id_key;
CREATE UNIQUE INDEX escrow_keys_depositor_key ON escrow_keys ((coalesce(depositor, '')), conversation_id, key_id);

-- +goose Down
DROP INDEX escrow_keys_depositor_key;
ALTER TABLE escrow_keys ADD CONSTRAINT escrow_keys_conversation_id_key_id_key UNIQUE (conversation_id, key_id);
DROP INDEX audit_entries_submitter_event;
ALTER TABLE audit_entries ADD CONSTRAINT audit_entries_event_id_key UNIQUE (event_id);
ALTER TABLE audit_entries DROP COLUMN submitter;

-- +goose Up
-- The scope query of a release reads a conversation's escrows by
-- conversation id (issue 24). Since 00011 no index led with it (the unique
-- key leads with the depositor), so every release read escrow_keys whole.
-- CREATE INDEX locks escrow_keys against deposits while it builds: a few
-- seconds for millions of keys.
CREATE INDEX escrow_keys_conversation ON escrow_keys (conversation_id);

-- +goose Down
DROP INDEX escrow_keys_conversation;

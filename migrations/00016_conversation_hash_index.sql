-- +goose Up
-- Searches and exports by conversation read the log through an index on
-- (conversation, seq) (issue 24). Keyed by the conversation's pseudonym
-- itself, about 80 characters, it held some 170 bytes an entry: each
-- append goes to the right end of its conversation's range, in the middle
-- of the index, so PostgreSQL splits the page in half and the left half
-- is never written again. At 10 M entries it was about 1.7 GB, far beyond
-- shared buffers, and every page an append touched after a checkpoint
-- went to the WAL again in full. Keyed by a 64-bit hash of the pseudonym
-- instead, an entry costs about 45 bytes, and the rows still come out in
-- seq order for a conversation: searches compare the hash and then the
-- pseudonym itself on the row (audit/store.go, searchWhere).
-- hashtextextended is PostgreSQL's own text hash, as in 00015. Building it
-- locks appends for the scan: seconds per million entries.
CREATE INDEX audit_entries_conversation_hash ON audit_entries (hashtextextended(conversation_id, 0), seq) WHERE conversation_id IS NOT NULL;
DROP INDEX audit_entries_conversation;

-- +goose Down
CREATE INDEX audit_entries_conversation ON audit_entries (conversation_id, seq);
DROP INDEX audit_entries_conversation_hash;

package migrations

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// auditEntriesDDL creates audit_entries exactly as migrations 00002 to
// 00024 leave it: columns in the same order, the same constraints,
// indexes, triggers and grants (TestRecreatedAuditEntriesMatch compares
// the catalogs). A migration that changes audit_entries changes this too.
const auditEntriesDDL = `
CREATE TABLE audit_entries (
    seq             bigint      PRIMARY KEY CHECK (seq >= 0),
    leaf            bytea       NOT NULL,
    hashes          bytea       NOT NULL CHECK (length(hashes) % 32 = 0 AND length(hashes) > 0),
    kind            text        NOT NULL,
    event_id        text,
    conversation_id text,
    occurred_at     timestamptz,
    ingested_at     timestamptz NOT NULL,
    submitter       text        NOT NULL DEFAULT ''
) WITH (autovacuum_vacuum_insert_threshold = -1);
CREATE INDEX audit_entries_occurred ON audit_entries USING brin (occurred_at);
CREATE INDEX audit_entries_event_generation ON audit_entries ((seq >> 20), hashtextextended(event_id, 0)) WHERE event_id IS NOT NULL;
CREATE INDEX audit_entries_conversation_hash ON audit_entries (hashtextextended(conversation_id, 0), seq) WHERE conversation_id IS NOT NULL;
CREATE TRIGGER audit_entries_append_only BEFORE UPDATE OR DELETE ON audit_entries
    FOR EACH ROW EXECUTE FUNCTION mediator_refuse_change();
CREATE TRIGGER audit_entries_no_truncate BEFORE TRUNCATE ON audit_entries
    FOR EACH STATEMENT EXECUTE FUNCTION mediator_refuse_change();
GRANT SELECT, INSERT ON audit_entries TO mediator_runtime;
`

// RecreateAuditEntries creates, in tx, an empty audit_entries table as the
// migrations leave it, for a database whose table was lost: `mediator
// mirror restore` refills it from a mirror. It fails if the table exists,
// or if the database was not migrated to this binary's schema (the
// table's shape here is the latest migration's).
func RecreateAuditEntries(ctx context.Context, tx pgx.Tx) error {
	var version int64
	if err := tx.QueryRow(ctx, "SELECT max(version_id) FROM goose_db_version WHERE is_applied").Scan(&version); err != nil {
		return fmt.Errorf("migrations: read the schema version: %w", err)
	}
	if version != latestVersion {
		return fmt.Errorf("migrations: the database is at schema version %d, this binary's is %d: migrate first", version, latestVersion)
	}
	if _, err := tx.Exec(ctx, auditEntriesDDL); err != nil {
		return fmt.Errorf("migrations: recreate audit_entries: %w", err)
	}
	return nil
}

// latestVersion is the newest migration's number.
const latestVersion = 24

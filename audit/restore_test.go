package audit

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestRestoreRefusesAnEditedCopy plays the mirror database's superuser:
// a copy with one leaf edited (and its seq kept) is refused against the
// cosigned root, and nothing is written; the genuine copy restores to
// the same rows' tree, in bundles as a mirror serves them.
func TestRestoreRefusesAnEditedCopy(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	if _, err := f.store.appendNow(ctx, entries(0, 600, "restore")); err != nil {
		t.Fatal(err)
	}
	root, err := f.store.TreeHash(ctx, 600)
	if err != nil {
		t.Fatal(err)
	}
	leaves, err := f.store.Leaves(ctx, 0, 600)
	if err != nil {
		t.Fatal(err)
	}
	bundles := func(ls [][]byte) func(context.Context) ([][]byte, error) {
		i := 0
		return func(context.Context) ([][]byte, error) {
			if i >= len(ls) {
				return nil, io.EOF
			}
			b := ls[i:min(i+256, len(ls))]
			i += len(b)
			return b, nil
		}
	}
	// Restore into an empty copy of the table's shape, in the log's own
	// database: the rows already there are the truth to compare with.
	restore := func(ls [][]byte) error {
		return pgx.BeginFunc(ctx, f.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "ALTER TABLE audit_entries RENAME TO audit_entries_kept"); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "CREATE TABLE audit_entries (LIKE audit_entries_kept INCLUDING ALL)"); err != nil {
				return err
			}
			if err := Restore(ctx, tx, 600, root, bundles(ls)); err != nil {
				return err
			}
			var differ int64
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM audit_entries r FULL JOIN audit_entries_kept k USING (seq)
				WHERE r.leaf IS DISTINCT FROM k.leaf OR r.hashes IS DISTINCT FROM k.hashes OR r.kind IS DISTINCT FROM k.kind
				OR r.event_id IS DISTINCT FROM k.event_id OR r.submitter IS DISTINCT FROM k.submitter
				OR r.conversation_id IS DISTINCT FROM k.conversation_id OR r.occurred_at IS DISTINCT FROM k.occurred_at
				OR r.ingested_at IS DISTINCT FROM k.ingested_at`).Scan(&differ); err != nil {
				return err
			}
			if differ != 0 {
				t.Errorf("%d restored rows differ from the log's", differ)
			}
			return errRollback // leave the log as it was
		})
	}
	edited := append([][]byte(nil), leaves...)
	edited[300] = bytes.Replace(edited[300], []byte(`"restore"`), []byte(`"Restore"`), 1)
	if bytes.Equal(edited[300], leaves[300]) {
		t.Fatal("the test did not edit the leaf")
	}
	if err := restore(edited); !errors.Is(err, ErrRestoreRoot) {
		t.Fatalf("an edited copy: %v, want ErrRestoreRoot", err)
	}
	if err := restore(leaves); !errors.Is(err, errRollback) {
		t.Fatalf("the genuine copy: %v", err)
	}
	if err := restore(leaves[:599]); err == nil || errors.Is(err, errRollback) {
		t.Fatalf("a copy one entry short: %v", err)
	}
}

var errRollback = errors.New("rolled back on purpose")

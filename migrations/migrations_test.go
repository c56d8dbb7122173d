package migrations

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/mediatorhq/mediator/test/harness"
)

var env *harness.Env

func TestMain(m *testing.M) { harness.MainPostgres(m, &env) }

func TestUpCheckAndAppendOnlyGuard(t *testing.T) {
	ctx := context.Background()
	db, err := Open(env.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	if err := Check(ctx, db); !errors.Is(err, ErrBehind) {
		t.Fatalf("fresh database: Check = %v, want ErrBehind", err)
	}
	applied, err := Up(ctx, db, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) < 2 || applied[0] != 1 {
		t.Fatalf("applied = %v", applied)
	}
	if err := Check(ctx, db); err != nil {
		t.Fatalf("after Up: %v", err)
	}
	// Up again is a no-op.
	if again, err := Up(ctx, db, slog.New(slog.DiscardHandler)); err != nil || len(again) != 0 {
		t.Fatalf("second Up applied %v, %v", again, err)
	}

	// The guard function refuses changes on a table it is attached to.
	for _, q := range []string{
		"CREATE TABLE t (x int)",
		"CREATE TRIGGER t_guard BEFORE UPDATE OR DELETE ON t FOR EACH ROW EXECUTE FUNCTION mediator_refuse_change()",
		"INSERT INTO t VALUES (1)",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if _, err := db.ExecContext(ctx, "UPDATE t SET x = 2"); err == nil {
		t.Fatal("UPDATE on a guarded table succeeded")
	}
	if _, err := db.ExecContext(ctx, "DELETE FROM t"); err == nil {
		t.Fatal("DELETE on a guarded table succeeded")
	}

	// A database migrated by a newer binary is refused too.
	if _, err := db.ExecContext(ctx, "INSERT INTO goose_db_version (version_id, is_applied) VALUES (999999, true)"); err != nil {
		t.Fatal(err)
	}
	if err := Check(ctx, db); !errors.Is(err, ErrAhead) {
		t.Fatalf("Check on a newer schema = %v, want ErrAhead", err)
	}
}

func TestConcurrentUpAppliesOnce(t *testing.T) {
	ctx := context.Background()
	dsn := env.NewDatabase(t)
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			db, err := Open(dsn)
			if err != nil {
				errs <- err
				return
			}
			defer db.Close()
			_, err = Up(ctx, db, slog.New(slog.DiscardHandler))
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent Up: %v", err)
		}
	}
	db, _ := Open(dsn)
	defer db.Close()
	var n int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM goose_db_version WHERE version_id = 1").Scan(&n); err != nil || n != 1 {
		t.Fatalf("migration 1 recorded %d times (%v)", n, err)
	}
}

// TestRecreatedAuditEntriesMatch: the audit_entries that
// RecreateAuditEntries makes after the table was dropped has the columns,
// constraints, indexes, triggers, grants and storage options the
// migrations give it (no vacuum for inserts), and latestVersion is the
// newest migration.
func TestRecreatedAuditEntriesMatch(t *testing.T) {
	ctx := context.Background()
	shape := func(dsn string, recreate bool) string {
		db, err := Open(dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := Up(ctx, db, slog.New(slog.DiscardHandler)); err != nil {
			t.Fatal(err)
		}
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if recreate {
			if _, err := conn.Exec(ctx, "DROP TABLE audit_entries"); err != nil {
				t.Fatal(err)
			}
			err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error { return RecreateAuditEntries(ctx, tx) })
			if err != nil {
				t.Fatal(err)
			}
		}
		var out string
		err = conn.QueryRow(ctx, `SELECT concat_ws(E'\n',
			(SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod) || ' ' || attnotnull || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), ''), E'\n' ORDER BY attnum)
			   FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
			  WHERE attrelid = 'audit_entries'::regclass AND attnum > 0 AND NOT attisdropped),
			(SELECT string_agg(conname || ' ' || pg_get_constraintdef(oid), E'\n' ORDER BY conname) FROM pg_constraint WHERE conrelid = 'audit_entries'::regclass),
			(SELECT string_agg(indexdef, E'\n' ORDER BY indexname) FROM pg_indexes WHERE tablename = 'audit_entries'),
			(SELECT string_agg(pg_get_triggerdef(oid), E'\n' ORDER BY tgname) FROM pg_trigger WHERE tgrelid = 'audit_entries'::regclass),
			(SELECT string_agg(grantee || ' ' || privilege_type, E'\n' ORDER BY grantee, privilege_type) FROM information_schema.role_table_grants WHERE table_name = 'audit_entries'),
			(SELECT relacl::text || ' ' || coalesce(reloptions::text, '') FROM pg_class WHERE oid = 'audit_entries'::regclass),
			(SELECT max(version_id)::text FROM goose_db_version))`).Scan(&out)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	migrated := shape(env.NewDatabase(t), false)
	recreated := shape(env.NewDatabase(t), true)
	if migrated != recreated {
		t.Fatalf("the recreated audit_entries differs from the migrated one:\nmigrated:\n%s\n\nrecreated:\n%s", migrated, recreated)
	}
	if !strings.HasSuffix(migrated, "\n"+strconv.Itoa(latestVersion)) {
		t.Fatalf("latestVersion %d is not the newest migration:\n%s", latestVersion, migrated)
	}
	// Autovacuum leaves the table alone for inserts (00024), whether
	// migrated or recreated (compared above).
	if !strings.Contains(migrated, "{autovacuum_vacuum_insert_threshold=-1}") {
		t.Fatalf("audit_entries would be vacuumed for inserts:\n%s", migrated)
	}
}

package migrations

import (
	"context"
	"crypto/rand"
	"errors"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediatorhq/mediator/audit"
)

// rolesGuide returns the statements of the sql block in docs/operations.md,
// "Database roles", comments dropped, with the owner, the runtime login and
// the database renamed by suffix: roles are cluster-wide, and other tests
// share the cluster. mediator_runtime keeps its name, which the migrations
// grant to.
func rolesGuide(t *testing.T, suffix string) []string {
	t.Helper()
	doc, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "\n## Database roles\n")
	if !ok {
		t.Fatal(`docs/operations.md has no section "Database roles"`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	m := regexp.MustCompile("(?s)```sql\n(.*?)```").FindStringSubmatch(section)
	if m == nil {
		t.Fatal(`"Database roles" has no sql block`)
	}
	var sql strings.Builder
	for line := range strings.Lines(m[1]) {
		if !strings.HasPrefix(strings.TrimSpace(line), "--") {
			sql.WriteString(line)
		}
	}
	text := strings.NewReplacer("mediator_owner", "mediator_owner_"+suffix, "mediator_app", "mediator_app_"+suffix).Replace(sql.String())
	text = regexp.MustCompile(`\bmediator\b`).ReplaceAllString(text, "mediator_test_"+suffix)
	var stmts []string
	for s := range strings.SplitSeq(text, ";") {
		if s = strings.TrimSpace(s); s != "" {
			stmts = append(stmts, s)
		}
	}
	return stmts
}

// roleURL is the admin URL with user role, on database db.
func roleURL(t *testing.T, role, db string) string {
	t.Helper()
	u, err := url.Parse(env.PG.AdminURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	u.Path = "/" + db
	return u.String()
}

// dropRoles drops roles as a superuser, when a test ends.
func dropRoles(t *testing.T, roles ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, env.PG.AdminURL)
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	defer c.Close(ctx)
	for _, r := range roles {
		if _, err := c.Exec(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{r}.Sanitize()); err != nil {
			t.Errorf("cleanup: drop role %s: %v", r, err)
		}
	}
}

// TestOwnerWithoutCreateRole runs docs/operations.md's "Database roles" as
// a superuser, with fresh names: an owner without CREATEROLE migrates the
// database it owns; the runtime login that joins mediator_runtime passes
// serve's schema check, appends to and reads the audit log, may SELECT and
// INSERT every table and do nothing else, and cannot disable a trigger;
// another login in mediator_runtime cannot connect.
func TestOwnerWithoutCreateRole(t *testing.T) {
	ctx := context.Background()
	suffix := strings.ToLower(rand.Text()[:10])
	owner, app, db := "mediator_owner_"+suffix, "mediator_app_"+suffix, "mediator_test_"+suffix
	admin, err := pgx.Connect(ctx, env.PG.AdminURL)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	t.Cleanup(func() { dropRoles(t, app, owner) })
	t.Cleanup(func() {
		if err := env.PG.DropDatabase(context.Background(), db); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	for _, q := range rolesGuide(t, suffix) {
		_, err := admin.Exec(ctx, q)
		var pgErr *pgconn.PgError
		if err != nil && q == "CREATE ROLE mediator_runtime NOLOGIN" && errors.As(err, &pgErr) && pgErr.Code == "42710" {
			continue // the guide: skip it when another database made it
		}
		if err != nil {
			t.Fatalf("the guide's %q: %v", q, err)
		}
	}
	var createRole, super bool
	if err := admin.QueryRow(ctx, "SELECT rolcreaterole, rolsuper FROM pg_roles WHERE rolname = $1", owner).Scan(&createRole, &super); err != nil || createRole || super {
		t.Fatalf("owner: createrole %v, superuser %v, %v", createRole, super, err)
	}

	if err := Apply(ctx, roleURL(t, owner, db), slog.New(slog.DiscardHandler)); err != nil {
		t.Fatalf("migrate as an owner without CREATEROLE: %v", err)
	}

	rt, err := pgxpool.New(ctx, roleURL(t, app, db))
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	if err := CheckPool(ctx, rt, 10*time.Second); err != nil {
		t.Fatalf("serve's schema check as the runtime login: %v", err)
	}
	tx, err := rt.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rec := map[string]any{"kind": "message", "event_id": "e1", "note": "roles"}
	if _, err := audit.NewTxAppender().AppendTx(ctx, tx, []audit.Entry{{Kind: "message", EventID: "e1", Submitter: "gw", Record: rec}}); err != nil {
		t.Fatalf("append as the runtime login: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := rt.QueryRow(ctx, "SELECT count(*) FROM audit_entries WHERE event_id = 'e1'").Scan(&n); err != nil || n != 1 {
		t.Fatalf("read as the runtime login: %d %v", n, err)
	}
	for _, q := range []string{
		"ALTER TABLE audit_entries DISABLE TRIGGER audit_entries_append_only",
		"ALTER TABLE audit_entries DISABLE TRIGGER USER",
		"UPDATE audit_entries SET kind = 'x'",
		"DELETE FROM audit_entries",
		"TRUNCATE audit_entries",
		"CREATE TABLE t (x int)",
		// Nor a temporary table that would shadow, in an owner's
		// function, the table it names (00023's is proof against that
		// anyway).
		"CREATE TEMP TABLE audit_entries (x int)",
	} {
		_, err := rt.Exec(ctx, q)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
			t.Errorf("runtime login: %s: %v, want insufficient_privilege", q, err)
		}
	}
	rows, err := rt.Query(ctx, `SELECT tablename,
		has_table_privilege(tablename, 'SELECT'), has_table_privilege(tablename, 'INSERT'),
		has_table_privilege(tablename, 'UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')
		FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename`)
	if err != nil {
		t.Fatal(err)
	}
	tables := 0
	for rows.Next() {
		var name string
		var sel, ins, more bool
		if err := rows.Scan(&name, &sel, &ins, &more); err != nil {
			t.Fatal(err)
		}
		tables++
		if !sel || ins != (name != "goose_db_version") || more {
			t.Errorf("runtime login on %s: select %v, insert %v, more %v", name, sel, ins, more)
		}
	}
	if err := rows.Err(); err != nil || tables < 10 {
		t.Fatalf("%d tables, %v", tables, err)
	}
	// The leader summarises the time index as the runtime login, through
	// the owner's function only (migration 00023).
	var next int64
	if err := rt.QueryRow(ctx, "SELECT mediator_summarize_audit_times(0, 64)").Scan(&next); err != nil || next != 0 {
		t.Errorf("runtime login: summarise the time index: next %d, %v; want 0 (no full range yet)", next, err)
	}
	_, err = rt.Exec(ctx, "SELECT brin_summarize_new_values('audit_entries_occurred')")
	if pgErr := (*pgconn.PgError)(nil); !errors.As(err, &pgErr) || pgErr.Code != "42501" {
		t.Errorf("runtime login: brin_summarize_new_values: %v, want insufficient_privilege", err)
	}

	// Another instance's runtime login, also in mediator_runtime, cannot
	// connect to this database.
	other := "mediator_other_" + suffix
	t.Cleanup(func() { dropRoles(t, other) })
	if _, err := admin.Exec(ctx, "CREATE ROLE "+other+" LOGIN IN ROLE mediator_runtime"); err != nil {
		t.Fatal(err)
	}
	c, err := pgx.Connect(ctx, roleURL(t, other, db))
	if err == nil {
		c.Close(ctx)
	}
	if err == nil || !strings.Contains(err.Error(), "permission denied for database") {
		t.Fatalf("another instance's runtime login: %v, want permission denied", err)
	}
}

// TestRoleCreationSaysWhatToRun runs each migration block that creates a
// role, with the role renamed to one the cluster lacks: an owner without
// CREATEROLE is told which role to create and the SQL, and no role is
// made; one with CREATEROLE makes it; with the role there, either owner
// passes.
func TestRoleCreationSaysWhatToRun(t *testing.T) {
	ctx := context.Background()
	createRole := regexp.MustCompile(`CREATE ROLE (\w+)`)
	block := regexp.MustCompile(`(?s)-- \+goose StatementBegin\n(.*?)-- \+goose StatementEnd`)
	var blocks []string
	err := fs.WalkDir(files, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(files, path)
		if err != nil {
			return err
		}
		for _, m := range block.FindAllStringSubmatch(string(b), -1) {
			if createRole.MatchString(m[1]) {
				blocks = append(blocks, m[1])
			}
		}
		if createRole.MatchString(block.ReplaceAllString(string(b), "")) {
			t.Errorf("%s creates a role outside a StatementBegin block", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) == 0 {
		t.Fatal("no migration creates a role")
	}

	dsn := env.NewDatabase(t)
	dbName := dsn[strings.LastIndexByte(dsn, '/')+1:]
	if i := strings.IndexByte(dbName, '?'); i >= 0 {
		dbName = dbName[:i]
	}
	admin, err := pgx.Connect(ctx, env.PG.AdminURL)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	suffix := strings.ToLower(rand.Text()[:10])
	plain, creator := "mediator_owner_"+suffix, "mediator_creator_"+suffix
	var made []string
	t.Cleanup(func() { dropRoles(t, append(made, plain, creator)...) })
	for _, q := range []string{"CREATE ROLE " + plain + " LOGIN", "CREATE ROLE " + creator + " LOGIN CREATEROLE"} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	run := func(as, sql string) error {
		c, err := pgx.Connect(ctx, roleURL(t, as, dbName))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		_, err = c.Exec(ctx, sql)
		return err
	}
	exists := func(role string) bool {
		var ok bool
		if err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", role).Scan(&ok); err != nil {
			t.Fatal(err)
		}
		return ok
	}
	for i, b := range blocks {
		name := createRole.FindStringSubmatch(b)[1]
		missing := "mediator_missing_" + suffix + "_" + string(rune('a'+i))
		made = append(made, missing)
		sql := regexp.MustCompile(`\b`+name+`\b`).ReplaceAllString(b, missing)

		err := run(plain, sql)
		want := "CREATE ROLE " + missing + " NOLOGIN;"
		if err == nil || !strings.Contains(err.Error(), "role "+missing+" does not exist") || !strings.Contains(err.Error(), want) {
			t.Errorf("block creating %s, as an owner without CREATEROLE: %v; want the role named and %q", name, err, want)
		}
		if exists(missing) {
			t.Fatalf("%s exists after a refused creation", missing)
		}
		if err := run(creator, sql); err != nil || !exists(missing) {
			t.Fatalf("block creating %s, as an owner with CREATEROLE: %v (exists %v)", name, err, exists(missing))
		}
		for _, as := range []string{creator, plain} {
			if err := run(as, sql); err != nil {
				t.Errorf("block creating %s, the role there, as %s: %v", name, as, err)
			}
		}
	}
}

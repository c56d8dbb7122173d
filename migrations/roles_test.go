package migrations

import (
	"context"
	"crypto/rand"
	"io/fs"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

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

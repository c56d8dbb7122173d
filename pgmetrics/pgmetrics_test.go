package pgmetrics

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mediatorhq/mediator/test/harness"
)

var env *harness.Env

func TestMain(m *testing.M) { harness.MainPostgres(m, &env) }

// TestTracerTimesCallsWithoutSQL: queries, COPY and batches are timed by
// statement kind, failures counted by SQLSTATE class, the pool reported,
// and no label holds SQL text or an argument.
func TestTracerTimesCallsWithoutSQL(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	cfg, err := pgxpool.ParseConfig(env.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.Tracer = New(reg)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	reg.MustRegister(NewPoolCollector(pool))
	if _, err := pool.Exec(ctx, "CREATE TABLE canary_table (v text)"); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"canary_table"}, []string{"v"}, pgx.CopyFromRows([][]any{{"secret-arg-4711"}})); err != nil {
		t.Fatal(err)
	}
	var v string
	if err := pool.QueryRow(ctx, "SELECT v FROM canary_table WHERE v = $1", "secret-arg-4711").Scan(&v); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "SELEKT 1"); err == nil {
		t.Fatal("a syntax error succeeded")
	}
	b := &pgx.Batch{}
	b.Queue("SELECT 1")
	if err := pool.SendBatch(ctx, b).Close(); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	for _, f := range families {
		for _, m := range f.GetMetric() {
			fmt.Fprint(&text, f.GetName())
			for _, l := range m.GetLabel() {
				fmt.Fprintf(&text, " %s=%s", l.GetName(), l.GetValue())
			}
			text.WriteString("\n")
		}
	}
	out := text.String()
	for _, want := range []string{
		"mediator_postgres_query_seconds op=create", "mediator_postgres_query_seconds op=copy",
		"mediator_postgres_query_seconds op=select", "mediator_postgres_query_seconds op=batch",
		"mediator_postgres_errors_total class=42 op=other", "mediator_postgres_pool_connections state=idle",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "secret-arg-4711") || strings.Contains(out, "canary_table") {
		t.Fatalf("SQL text or arguments in labels:\n%s", out)
	}
}

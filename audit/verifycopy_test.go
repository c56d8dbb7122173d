package audit

import (
	"context"
	"testing"
	"time"
)

// TestVerifyAcrossCopyPages: entries read over several binary COPY pages
// verify, and a gap on a page boundary is found at its seq.
func TestVerifyAcrossCopyPages(t *testing.T) {
	defer func(p int) { copyPage = p }(copyPage)
	copyPage = 1000
	f := newFixture(t)
	ctx := context.Background()
	f.append(t, entries(0, 2500, "c"))
	if _, err := f.cp.Once(ctx); err != nil {
		t.Fatal(err)
	}
	if rep := f.verify(t); !rep.OK() || rep.Entries != 2500 || rep.CheckpointSize != 2500 {
		t.Fatalf("%+v", rep)
	}
	if _, err := f.pool.Exec(ctx, "ALTER TABLE audit_entries DISABLE TRIGGER USER; DELETE FROM audit_entries WHERE seq = 2000"); err != nil {
		t.Fatal(err)
	}
	if rep := f.verify(t); rep.OK() || rep.FirstBadSeq != 2000 || rep.Entries != 2000 {
		t.Fatalf("a gap at 2000: %+v", rep)
	}
}

// TestLeafScannerAgreesWithParseLeafFields: the verify pipeline's leaf
// check finds a leaf invalid, or a column different, exactly when
// parseLeafFields and columnsDiffer do.
func TestLeafScannerAgreesWithParseLeafFields(t *testing.T) {
	ing := time.Date(2026, 12, 3, 10, 0, 0, 123456000, time.UTC)
	occ := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	leaves := []string{
		`{"conversation_id":"c","event_id":"e","ingested_at":"2026-12-03T10:00:00.123456Z","kind":"k","occurred_at":"2026-12-03T09:00:00Z","seq":7,"submitter":"s"}`,
		`{"conversation_id":"c","event_id":"e","ingested_at":"2026-12-03T10:00:00.123456Z","kind":"k","occurred_at":"2026-12-03T10:00:00+01:00","seq":7,"submitter":"s"}`,
		`{"conversation_id":"c","event_id":"e","ingested_at":"2026-12-03T10:00:00.123456Z","kind":"\u006b","occurred_at":"2026-12-03T09:00:00Z","s\u0065q":7,"submitter":"s"}`,
		`{"conversation_id":"c","event_id":"e","ingested_at":"2026-12-03T10:00:00.123456Z","kind":"k","seq":7,"submitter":"s"}`,
		`{"conversation_id":"c","event_id":"e","ingested_at":"2026-12-03T10:00:00.123457Z","kind":"k","occurred_at":"2026-12-03T09:00:00Z","seq":7,"submitter":"s"}`,
		`{"conversation_id":"c","event_id":"e","ingested_at":"2026-12-03T10:00:00.123456Z","kind":"k","occurred_at":"2026-12-03T09:00:00Z","seq":8,"submitter":"s"}`,
		`{"conversation_id":"c","event_id":"e","ingested_at":"2026-12-03T10:00:00.123456Z","kind":"x","occurred_at":"2026-12-03T09:00:00Z","seq":7,"submitter":"s"}`,
		`{"kind":"k","kind":"k","seq":7}`,
		`{"kind":1,"seq":7}`,
		`{"seq":7.5}`,
		`{"seq":"7"}`,
		`{"seq":null}`,
		`{"seq":7} `,
		`{"seq":7}{}`,
		`{"seq":7`,
		`[7]`,
		`{"a":[1,{"b":"\ud800"}],"seq":7}`,
		``,
	}
	var sc leafScanner
	for _, l := range leaves {
		r := verifyRow{seq: 7, leaf: []byte(l), kind: []byte("k"), eventID: []byte("e"), submitter: []byte("s"), convo: []byte("c"),
			occurred: occ, hasOccurred: true, ingested: ing}
		sc.check(&r)
		want := problemNone
		var col string
		f, err := parseLeafFields(r.leaf)
		switch {
		case err != nil:
			want = problemJSON
		case f.Seq != 7:
			want = problemSeq
		default:
			if col = columnsDiffer(f, "k", "e", "s", "c", &occ, ing); col != "" {
				want = problemColumn
			}
		}
		if r.problem != want || r.column != col {
			t.Errorf("%s: scanner says %d %q, parseLeafFields %d %q", l, r.problem, r.column, want, col)
		}
	}
}

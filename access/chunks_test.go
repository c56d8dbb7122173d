package access

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mediatorhq/mediator/dev"
	"github.com/mediatorhq/mediator/escrow"
)

// strictPolicy is a copy of the embedded release policy that asks for
// three approvals: a custodian running it refuses a release two approved.
func strictPolicy(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"release.rego", "data.json"} {
		b, err := os.ReadFile(filepath.Join("..", "policy", name))
		if err != nil {
			t.Fatal(err)
		}
		if name == "data.json" {
			b = []byte(strings.Replace(string(b), `"min_approvals": 2`, `"min_approvals": 3`, 1))
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestReleaseInChunks: a release of more keys than the mediator asks one
// custodian for in one call (here 2, DefaultReleaseChunk in production)
// asks each custodian in several calls, one after another, and completes
// with every key; a custodian that refuses the release is asked once, not
// once per chunk (issue 21: a conversation with many keys still releases).
func TestReleaseInChunks(t *testing.T) {
	ctx := context.Background()
	// custodian-2 is strict: it refuses the release.
	w := newWorldOf(t, dev.CustodianOptions{PolicyDir: map[int]string{2: strictPolicy(t)}}, escrow.Config{ReleaseChunk: 2})
	const n = 5
	keys := map[string][]byte{}
	for i := range n {
		keys[fmt.Sprintf("e%d", i)] = w.deposit(t, "conv-a", fmt.Sprintf("e%d", i))
	}
	r, recipient := w.approved(t, "conv-a")
	rel, err := w.svc.Release(ctx, "olga", r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(rel.Keys) != n || len(rel.Refusals) != 1 || rel.Refusals[0].Custodian != "custodian-2" {
		t.Fatalf("release: %d keys, refusals %+v", len(rel.Keys), rel.Refusals)
	}
	got := w.openVerified(t, recipient, r, rel)
	if len(got) != n {
		t.Fatalf("%d keys opened, want %d", len(got), n)
	}
	for _, k := range got {
		if !bytes.Equal(k.Key, keys[k.KeyID]) {
			t.Fatalf("key %s differs from the one deposited", k.KeyID)
		}
	}
	for i := range 5 {
		checked := w.custodians.Counter(i, "mediator_custodian_releases_total", "checked")
		refused := w.custodians.Counter(i, "mediator_custodian_releases_total", "refused")
		want := [2]float64{3, 0} // ⌈5/2⌉ calls
		if i == 1 {
			want = [2]float64{0, 1}
		}
		if checked != want[0] || refused != want[1] {
			t.Errorf("custodian-%d: %v release calls checked, %v refused; want %v", i+1, checked, refused, want)
		}
	}
}

// TestReleaseInSteps: a release whose call runs out of time (here at
// once) answers that it is in progress, with how many keys are ready,
// keeps what came, and completes in later calls that ask only for the
// rest: a release of many keys is never cut off by the API's write
// timeout. A call stops after its first chunk to each custodian (here 2
// shares), or after its first page of keys read in full (here 1 key);
// the call that gets the last shares past its time leaves recording the
// release to the next (every key ready), which asks nothing.
func TestReleaseInSteps(t *testing.T) {
	for _, tc := range []struct {
		name      string
		chunk     int
		askPage   int
		wantReady string
	}{
		{"chunks of 2", 2, AskPage, "[2 4 5]"},
		{"pages of 1 key", 0, 1, "[1 2 3 4 5]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			w := newWorldOf(t, dev.CustodianOptions{}, escrow.Config{ReleaseChunk: tc.chunk})
			w.svc.budget, w.svc.askPage = time.Nanosecond, tc.askPage
			const n = 5
			for i := range n {
				w.deposit(t, "conv-a", fmt.Sprintf("e%d", i))
			}
			r, recipient := w.approved(t, "conv-a")
			var ready []int
			var rel Release
			var err error
			for range 10 {
				rel, err = w.svc.Release(ctx, "olga", r.ID)
				var ip *InProgressError
				if !errors.As(err, &ip) {
					break
				}
				if ip.KeysTotal != n {
					t.Fatalf("in progress: %d keys in all, want %d", ip.KeysTotal, n)
				}
				ready = append(ready, ip.KeysReady)
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(ready) != tc.wantReady {
				t.Fatalf("keys ready after each call in progress: %v, want %s", ready, tc.wantReady)
			}
			if got := w.openVerified(t, recipient, r, rel); len(got) != n {
				t.Fatalf("%d keys opened, want %d", len(got), n)
			}
		})
	}
}

// TestReleaseAnswersInPages: a release of more keys than one answer page
// (here 2) answers the first page and where the next starts; the pages
// fetched again from there hold every key once, in escrow id order, each
// with its sealed shares, and the last says nothing follows.
func TestReleaseAnswersInPages(t *testing.T) {
	ctx := context.Background()
	w := newWorldOf(t, dev.CustodianOptions{}, escrow.Config{})
	w.svc.pageSize = 2
	const n = 5
	for i := range n {
		w.deposit(t, "conv-a", fmt.Sprintf("e%d", i))
	}
	r, recipient := w.approved(t, "conv-a")
	rel, err := w.svc.Release(ctx, "olga", r.ID)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var sizes []int
	last := ""
	for page := rel; ; {
		sizes = append(sizes, len(page.Keys))
		for _, k := range page.Keys {
			if k.Escrow.EscrowID <= last || seen[k.Escrow.EscrowID] || len(k.Shares) != 5 || len(k.Shares[0].Sealed) == 0 {
				t.Fatalf("key %s out of order, twice, or without its sealed shares", k.Escrow.EscrowID)
			}
			seen[k.Escrow.EscrowID], last = true, k.Escrow.EscrowID
		}
		if got := w.openVerified(t, recipient, r, page); len(got) != len(page.Keys) {
			t.Fatalf("%d keys of a page of %d opened", len(got), len(page.Keys))
		}
		if page.NextAfter == "" {
			break
		}
		if page, err = w.svc.Released(ctx, "olga", r.ID, page.NextAfter, 0); err != nil {
			t.Fatal(err)
		}
	}
	if fmt.Sprint(sizes) != "[2 2 1]" || len(seen) != n {
		t.Fatalf("pages of %v keys, %d keys in all; want [2 2 1] and %d", sizes, len(seen), n)
	}
}

// TestReceiptHashesKeptAndComputed: each kept release share carries its
// receipt's hash, which the completed release's log names; a share kept
// before hashes were (migration 00013, the column empty) has its receipt
// hashed when read.
func TestReceiptHashesKeptAndComputed(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	w.deposit(t, "conv-a", "e0")
	r, _ := w.approved(t, "conv-a")
	if _, err := w.svc.Release(ctx, "olga", r.ID); err != nil {
		t.Fatal(err)
	}
	store := w.svc.releases.(*PGStore)
	// An old row: a copy of a kept share under another custodian's name,
	// without the hash.
	if _, err := w.pool.Exec(ctx, `INSERT INTO access_release_shares (request_id, escrow_id, custodian, share_index, sealed, receipt, audit_seq)
		SELECT request_id, escrow_id, 'custodian-old', share_index, sealed, receipt, audit_seq FROM access_release_shares
		WHERE request_id = $1 AND custodian = 'custodian-1'`, r.ID); err != nil {
		t.Fatal(err)
	}
	hashes, err := store.ReleaseReceiptHashes(ctx, r.ID)
	if err != nil || len(hashes) != 6 {
		t.Fatalf("%d shares with hashes, want 6: %v", len(hashes), err)
	}
	want := map[string]string{}
	var rows []ReleasedShare
	if rows, err = store.releaseShares(ctx, `SELECT escrow_id::text, custodian, share_index, ''::bytea, receipt, audit_seq
		FROM access_release_shares WHERE request_id = $1`, r.ID); err != nil {
		t.Fatal(err)
	}
	for _, sh := range rows {
		want[sh.Custodian] = sh.Receipt.Hash()
	}
	for _, sh := range hashes {
		if sh.ReceiptSHA256 == "" || sh.ReceiptSHA256 != want[sh.Custodian] {
			t.Fatalf("%s: receipt hash %q, want %q", sh.Custodian, sh.ReceiptSHA256, want[sh.Custodian])
		}
	}
	var stored int
	if err := w.pool.QueryRow(ctx, `SELECT count(*) FROM access_release_shares WHERE request_id = $1 AND receipt_sha256 IS NOT NULL`,
		r.ID).Scan(&stored); err != nil || stored != 5 {
		t.Fatalf("%d rows keep their receipt's hash, want the 5 the release kept: %v", stored, err)
	}
}

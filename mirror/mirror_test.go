package mirror_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	tlogfmt "github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/mediatorhq/mediator/mirror"
	"github.com/mediatorhq/mediator/subtree"
	"github.com/mediatorhq/mediator/witness"
)

var env = mirror.SharedEnv

const origin = "mediator.test/mirror-log"

// memLog is a log in memory: what the mirror copies.
type memLog struct {
	stored []tlog.Hash
	leaves [][]byte
	signer note.Signer
}

func (l *memLog) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x >= int64(len(l.stored)) {
			return nil, fmt.Errorf("no hash %d", x)
		}
		out[i] = l.stored[x]
	}
	return out, nil
}

func (l *memLog) HashReader(context.Context) tlog.HashReader { return l }

func (l *memLog) Leaves(_ context.Context, start, end int64) ([][]byte, error) {
	return l.leaves[start:end], nil
}

func (l *memLog) grow(t *testing.T, n int, salt string) {
	t.Helper()
	for range n {
		i := int64(len(l.leaves))
		leaf := []byte(fmt.Sprintf(`{"seq":%d,"salt":%q}`, i, salt))
		hs, err := tlog.StoredHashes(i, leaf, l)
		if err != nil {
			t.Fatal(err)
		}
		l.stored = append(l.stored, hs...)
		l.leaves = append(l.leaves, leaf)
	}
}

func (l *memLog) size() int64 { return int64(len(l.leaves)) }

func (l *memLog) checkpoint(t *testing.T) string {
	t.Helper()
	root, err := tlog.TreeHash(l.size(), l)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := note.Sign(&note.Note{Text: string(tlogfmt.Checkpoint{Origin: origin, Size: uint64(l.size()), Hash: root[:]}.Marshal())}, l.signer)
	if err != nil {
		t.Fatal(err)
	}
	return string(signed)
}

// fixture is a mirror on a database of its own, served over HTTP.
type fixture struct {
	url      string
	verifier note.Verifier
	log      *memLog
	pool     *pgxpool.Pool
	pending  int64 // the size last given to add-checkpoint
}

func setup(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	skey, vkey, _ := note.GenerateKey(rand.Reader, origin)
	logSigner, _ := note.NewSigner(skey)
	logVerifier, _ := note.NewVerifier(vkey)
	seed := make([]byte, 32)
	rand.Read(seed)
	signer, mvkey, err := witness.NewSigner("regulator.test/mirror-1", seed)
	if err != nil {
		t.Fatal(err)
	}
	mv, _ := witness.NewVerifier(mvkey)
	pool, err := pgxpool.New(ctx, env().NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	m, err := mirror.Open(ctx, pool, mirror.Options{Origin: origin, LogVerifiers: []note.Verifier{logVerifier}, Signer: signer, ReadToken: "read-token-canary"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(m.Handler())
	t.Cleanup(srv.Close)
	return &fixture{url: srv.URL, verifier: mv, log: &memLog{signer: logSigner}, pool: pool}
}

// addCheckpoint sends the log's current checkpoint to add-checkpoint.
func (f *fixture) addCheckpoint(t *testing.T) {
	t.Helper()
	var b bytes.Buffer
	fmt.Fprintf(&b, "old %d\n", f.pending)
	if f.pending > 0 && f.pending < f.log.size() {
		proof, err := tlog.ProveTree(f.log.size(), f.pending, f.log)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range proof {
			fmt.Fprintln(&b, base64.StdEncoding.EncodeToString(h[:]))
		}
	}
	b.WriteString("\n" + f.log.checkpoint(t))
	resp, err := http.Post(f.url+"/add-checkpoint", "text/plain", &b)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(answer) != 0 {
		t.Fatalf("add-checkpoint: %d %q, want 200 and no cosignature", resp.StatusCode, answer)
	}
	f.pending = f.log.size()
}

func (f *fixture) get(t *testing.T, path, token string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, f.url+"/"+mirror.OriginHash(origin)+"/"+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestMirrorsAndCosigns: the mirror takes a checkpoint, then its entries
// in two uploads (the second resumes where the first ended), cosigns each
// checkpoint only once it holds every entry, and serves the copy as
// tlog-tiles that equal the log's own, behind its read token.
func TestMirrorsAndCosigns(t *testing.T) {
	ctx := context.Background()
	f := setup(t)
	f.log.grow(t, 1000, "a")
	f.addCheckpoint(t)
	if code, _ := f.get(t, "checkpoint", "read-token-canary"); code != http.StatusNotFound {
		t.Fatalf("a checkpoint is served before any entry is stored: %d", code)
	}
	lines, next, err := mirror.Upload(ctx, http.DefaultClient, f.url, origin, 1000, 0, f.log)
	if err != nil || next != 1000 {
		t.Fatalf("Upload = %v, next %d", err, next)
	}
	if _, err := note.Open([]byte(f.log.checkpoint(t)+string(lines)), note.VerifierList(f.verifier)); err != nil {
		t.Fatalf("the mirror's cosignature does not verify: %v\n%s", err, lines)
	}

	f.log.grow(t, 9000, "a") // more than one request of 32 packages
	f.addCheckpoint(t)
	lines, next, err = mirror.Upload(ctx, http.DefaultClient, f.url, origin, 10000, 0, f.log)
	if err != nil || next != 10000 {
		t.Fatalf("Upload from a stale next = %v, next %d", err, next)
	}
	cp := f.log.checkpoint(t)
	code, served := f.get(t, "checkpoint", "read-token-canary")
	if code != http.StatusOK || string(served) != cp+string(lines) {
		t.Fatalf("served checkpoint %d\n%s\nwant the log's and the mirror's signatures\n%s%s", code, served, cp, lines)
	}
	for _, tile := range []tlog.Tile{{H: 8, L: 0, N: 0, W: 256}, {H: 8, L: 0, N: 39, W: 16}, {H: 8, L: 1, N: 0, W: 39}} {
		want, err := tlog.ReadTileData(tile, f.log)
		if err != nil {
			t.Fatal(err)
		}
		path := strings.TrimPrefix(tile.Path(), "tile/8/")
		code, got := f.get(t, "tile/"+path, "read-token-canary")
		if code != http.StatusOK || !bytes.Equal(got, want) {
			t.Fatalf("tile %s: %d, %d bytes; want the log's %d", path, code, len(got), len(want))
		}
	}
	code, bundle := f.get(t, "tile/entries/039.p/16", "read-token-canary")
	if code != http.StatusOK || !bytes.Contains(bundle, f.log.leaves[9999]) || len(bundle) < 16*2 {
		t.Fatalf("entry bundle 39.p/16: %d %q", code, bundle)
	}
	for _, token := range []string{"", "read-token-canarY"} {
		if code, _ := f.get(t, "checkpoint", token); code != http.StatusUnauthorized {
			t.Fatalf("read with token %q: %d, want 401", token, code)
		}
	}
}

// TestRefusesWhatDoesNotProve: a package whose entries were changed gets
// 422 and stores nothing; an upload to a checkpoint that is not pending,
// of another log, or cut before its first package is refused with the
// spec's status; a cut after one package stores that package (202).
func TestRefusesWhatDoesNotProve(t *testing.T) {
	ctx := context.Background()
	f := setup(t)
	f.log.grow(t, 600, "a")
	f.addCheckpoint(t)

	forged := &memLog{leaves: append([][]byte(nil), f.log.leaves...), stored: f.log.stored, signer: f.log.signer}
	forged.leaves[300] = []byte(`{"seq":300,"salt":"forged"}`)
	_, next, err := mirror.Upload(ctx, http.DefaultClient, f.url, origin, 600, 0, forged)
	if err == nil || !strings.Contains(err.Error(), "422") {
		t.Fatalf("a forged entry: %v, want 422", err)
	}
	if next != 0 {
		// The first package proved and was stored; the forged one was not.
		if next != 256 {
			t.Fatalf("after a forged package the mirror's next entry is %d, want 256", next)
		}
	}
	var stored int64
	if err := f.pool.QueryRow(ctx, "SELECT count(*) FROM mirror_entries").Scan(&stored); err != nil || stored != 256 {
		t.Fatalf("%d entries stored, want the 256 before the forged package (%v)", stored, err)
	}

	if _, _, err := mirror.Upload(ctx, http.DefaultClient, f.url, origin, 599, 0, f.log); !errors.Is(err, mirror.ErrNotPending) {
		t.Fatalf("upload to a size that is not pending: %v, want ErrNotPending", err)
	}
	status := func(body []byte) (int, string) {
		resp, err := http.Post(f.url+"/add-entries", "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := status(header("other.test/log", 256, 600)); code != http.StatusNotFound {
		t.Fatalf("another log: %d, want 404", code)
	}
	if code, _ := status(header(origin, 256, 600)[:10]); code != http.StatusBadRequest {
		t.Fatalf("a cut header: %d, want 400", code)
	}
	if code, _ := status(header(origin, 300, 600)); code != http.StatusConflict {
		t.Fatalf("a start past the next entry: %d, want 409", code)
	}
	// One whole package, then the body ends: 202 with the next entry.
	body := header(origin, 256, 600)
	for _, leaf := range f.log.leaves[256:512] {
		body = binary.BigEndian.AppendUint16(body, uint16(len(leaf)))
		body = append(body, leaf...)
	}
	proof, err := subtree.Prove(600, 256, 512, f.log)
	if err != nil {
		t.Fatal(err)
	}
	body = append(body, byte(len(proof)))
	for _, h := range proof {
		body = append(body, h[:]...)
	}
	if code, info := status(append(body, 0, 5)); code != http.StatusAccepted || info != "600\n512\n\n" {
		t.Fatalf("one package of two: %d %q, want 202 \"600\\n512\\n\\n\"", code, info)
	}
	lines, _, err := mirror.Upload(ctx, http.DefaultClient, f.url, origin, 600, 512, f.log)
	if err != nil || len(lines) == 0 {
		t.Fatalf("the rest: %v", err)
	}
}

func header(origin string, start, end uint64) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(origin)))
	b = append(b, origin...)
	b = binary.BigEndian.AppendUint64(b, start)
	b = binary.BigEndian.AppendUint64(b, end)
	return binary.BigEndian.AppendUint16(b, 0)
}

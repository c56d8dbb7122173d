package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/mediatorhq/mediator/loadgen"
)

// TestTlogTilesWithTesseraClient reads the log as C2SP tlog-tiles with
// Tessera's client (v1.0.4), code we did not write, over HTTP with an
// auditor's token: it verifies our checkpoint, builds inclusion and
// consistency proofs from our tiles alone, byte-equal to
// /v1/audit/proof/*, and reads entry bundles whose leaves are the entries'.
func TestTlogTilesWithTesseraClient(t *testing.T) {
	ctx := context.Background()
	// Tessera's client asks for tiles as fast as it is answered; the
	// default per-reader limit would only slow the test.
	in := startServe(t, serveOpts{extraEnv: []string{"MEDIATOR_RATE_TILES=0", "MEDIATOR_RATE_TILES_SERVICE=0"}})
	in.waitReady(t, 60*time.Second)
	gw, _ := in.issuer.Issue("gateway-tiles", []string{"ingest"}, time.Hour)
	aud, _ := in.issuer.Issue("regulator", []string{"auditor"}, time.Hour)
	const size = 70_000 // full and partial tiles at levels 0 and 1, a partial one at level 2
	var body bytes.Buffer
	for n := int64(0); n < size; n += 1000 {
		body.Reset()
		loadgen.WriteBatch(&body, "tiles", n, 1000)
		if code, resp := post(t, in.base+"/v1/events", "application/json", gw, body.Bytes()); code != 200 {
			t.Fatalf("ingest: %d %v", code, resp)
		}
	}

	get := func(ctx context.Context, path, token string) (int, []byte, http.Header, error) {
		req, err := http.NewRequestWithContext(ctx, "GET", in.base+"/v1/audit/tlog/"+path, nil)
		if err != nil {
			return 0, nil, nil, err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, nil, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, b, resp.Header, err
	}
	fetch := func(ctx context.Context, path string) ([]byte, error) {
		code, b, _, err := get(ctx, path, aud)
		if err == nil && code != 200 {
			err = fmt.Errorf("GET %s: %d %s", path, code, b)
		}
		return b, err
	}
	// The published checkpoint reaches the whole log within seconds.
	var raw []byte
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, b, h, err := get(ctx, "checkpoint", aud)
		if err == nil && code == 200 && strings.Split(string(b), "\n")[1] == strconv.Itoa(size) {
			if h.Get("Cache-Control") != "no-store" {
				t.Fatalf("checkpoint Cache-Control %q", h.Get("Cache-Control"))
			}
			raw = b
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no published checkpoint of %d entries: %d %s %v", size, code, b, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	vkey := verifierKeyText(t, in, aud)
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	origin := strings.Split(string(raw), "\n")[0]
	cp, _, _, err := client.FetchCheckpoint(ctx, func(ctx context.Context) ([]byte, error) { return fetch(ctx, "checkpoint") }, verifier, origin)
	if err != nil || cp.Size != size {
		t.Fatalf("tessera reads our checkpoint: %v %+v", err, cp)
	}
	var root tlog.Hash
	copy(root[:], cp.Hash)

	tiles := func(ctx context.Context, level, index uint64, p uint8) ([]byte, error) {
		return fetch(ctx, layout.TilePath(level, index, p))
	}
	pb, err := client.NewProofBuilder(ctx, cp.Size, tiles)
	if err != nil {
		t.Fatal(err)
	}
	sameProofs(t, in, aud, pb, size, 100, rand.New(rand.NewPCG(25, 1)))

	// Entry bundles hold the leaves the tree hashes: each proves against
	// the checkpoint's root with Tessera's proof.
	bundles := func(ctx context.Context, index uint64, p uint8) ([]byte, error) {
		return fetch(ctx, layout.EntriesPath(index, p))
	}
	for _, seq := range []int64{0, 4242, size - 1} {
		b, err := client.GetEntryBundle(ctx, bundles, uint64(seq/256), size)
		if err != nil {
			t.Fatalf("entry bundle of %d: %v", seq, err)
		}
		proof, err := pb.InclusionProof(ctx, uint64(seq))
		if err != nil {
			t.Fatal(err)
		}
		hashes := make(tlog.RecordProof, len(proof))
		for i := range proof {
			copy(hashes[i][:], proof[i])
		}
		if err := tlog.CheckRecord(hashes, size, root, seq, tlog.RecordHash(b.Entries[seq%256])); err != nil {
			t.Fatalf("entry %d of its bundle does not prove against the checkpoint: %v", seq, err)
		}
	}

	// Entry bundles are gzip-compressed for a client that accepts it (Go's
	// transport asks, and undoes it, unless the caller asks itself).
	plain, err := fetch(ctx, "tile/entries/017")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", in.base+"/v1/audit/tlog/tile/entries/017", nil)
	req.Header.Set("Authorization", "Bearer "+aud)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(resp.Body)
	if err != nil || resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("entry bundle with Accept-Encoding: gzip: %q %v", resp.Header.Get("Content-Encoding"), err)
	}
	unzipped, err := io.ReadAll(zr)
	resp.Body.Close()
	if err != nil || !bytes.Equal(unzipped, plain) {
		t.Fatalf("the gzipped bundle is not the bundle: %v", err)
	}

	// Caching, and who may read.
	for _, path := range []string{"tile/0/000", "tile/0/273.p/112", "tile/1/000", "tile/2/000.p/1", "tile/entries/273.p/112"} {
		code, _, h, err := get(ctx, path, aud)
		if err != nil || code != 200 || h.Get("Cache-Control") != "private, max-age=31536000, immutable" || h.Get("Content-Type") != "application/octet-stream" {
			t.Fatalf("%s: %d %q %q %v", path, code, h.Get("Cache-Control"), h.Get("Content-Type"), err)
		}
	}
	for _, c := range []struct {
		path, token string
		want        int
	}{
		{"tile/0/000", "", 401},
		{"tile/0/000", gw, 403},
		{"tile/0/274", aud, 404},       // beyond the published tree
		{"tile/0/273.p/113", aud, 404}, // wider than the published tree
		{"tile/2/000", aud, 404},
		{"tile/entries/274", aud, 404},
		{"tile/0/1", aud, 400},
		{"tile/00/000", aud, 400},
		{"tile/0/x000", aud, 400},
		{"tile/0/000.p/0", aud, 400},
		{"tile/64/000", aud, 400},
	} {
		if code, b, _, err := get(ctx, c.path, c.token); err != nil || code != c.want {
			t.Errorf("%s: %d %s, want %d (%v)", c.path, code, b, c.want, err)
		}
	}

	// A C2SP tlog-proof of one entry, written by the CLI after it checked
	// it against the auditor's own policy (the log's key; this instance
	// has no witnesses), verifies offline and shows the entry; the same
	// file with its extra data swapped for another entry's leaf fails.
	dir := t.TempDir()
	policyFile, proofFile := filepath.Join(dir, "policy"), filepath.Join(dir, "4242.tlog-proof")
	if err := os.WriteFile(policyFile, []byte("log "+vkey+"\nquorum none\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	auditor := []string{"MEDIATOR_URL=" + in.base, "MEDIATOR_TOKEN=" + aud}
	if _, stderr, err := runCmd(t, auditor, "audit", "proof", "--seq", "4242", "--out", proofFile, "--policy", policyFile); err != nil || !strings.Contains(stderr, "checked against") {
		t.Fatalf("audit proof: %v %s", err, stderr)
	}
	out, stderr, err := runCmd(t, nil, "audit", "verify", "--tlog-proof", proofFile, "--policy", policyFile)
	if err != nil || !strings.Contains(out, ": OK\n") || !strings.Contains(out, `"seq":4242`) || !strings.Contains(out, fmt.Sprintf("checkpoint of %d entries", size)) {
		t.Fatalf("audit verify --tlog-proof: %v\n%s%s", err, out, stderr)
	}
	proof, _ := os.ReadFile(proofFile)
	b, err := client.GetEntryBundle(ctx, bundles, 0, size)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(proof), "\n")
	lines[1] = "extra " + base64.StdEncoding.EncodeToString(b.Entries[42])
	if err := os.WriteFile(proofFile, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, _, err := runCmd(t, nil, "audit", "verify", "--tlog-proof", proofFile, "--policy", policyFile); exitStatus(t, err) != 1 || !strings.Contains(out, "FAILED") {
		t.Fatalf("a swapped leaf: %v\n%s", err, out)
	}
	if code, resp, _ := call(t, "GET", in.base+"/v1/audit/entries/4242/tlog-proof", gw); code != 403 {
		t.Fatalf("tlog-proof as the gateway: %d %v", code, resp)
	}

	// The tree grows: tiles of the new published tree are served (the
	// remembered published size does not hold them back), and the old
	// partial tile is a prefix of its full tile.
	partial, err := fetch(ctx, "tile/0/273.p/112")
	if err != nil {
		t.Fatal(err)
	}
	const grown = size + 1000
	body.Reset()
	loadgen.WriteBatch(&body, "tiles", size, 1000)
	if code, resp := post(t, in.base+"/v1/events", "application/json", gw, body.Bytes()); code != 200 {
		t.Fatalf("ingest: %d %v", code, resp)
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		code, b, _, err := get(ctx, "checkpoint", aud)
		if err == nil && code == 200 && strings.Split(string(b), "\n")[1] == strconv.Itoa(grown) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no published checkpoint of %d entries: %d %s %v", grown, code, b, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	full, err := fetch(ctx, "tile/0/273")
	if err != nil || len(full) != 256*32 || !bytes.Equal(full[:len(partial)], partial) {
		t.Fatalf("tile/0/273 after growth: %d bytes, %v; the partial tile is its prefix: %v", len(full), err, err == nil && len(full) >= len(partial) && bytes.Equal(full[:len(partial)], partial))
	}
	for _, path := range []string{"tile/0/274", "tile/0/277.p/88", "tile/entries/277.p/88", "tile/1/001.p/21"} {
		if _, err := fetch(ctx, path); err != nil {
			t.Errorf("after growth: %v", err)
		}
	}
	if code, _, _, _ := get(ctx, "tile/0/277.p/89", aud); code != 404 {
		t.Errorf("tile/0/277.p/89 beyond the grown tree: %d, want 404", code)
	}
}

// sameProofs has Tessera's proof builder pb (over our tiles of the tree
// of size entries) make n inclusion and n consistency proofs for random
// indexes, and fails t unless each is byte-equal to /v1/audit/proof/*.
func sameProofs(t *testing.T, in *instance, token string, pb *client.ProofBuilder, size int64, n int, rng *rand.Rand) {
	t.Helper()
	ctx := context.Background()
	for range n {
		seq := rng.Int64N(size)
		theirs, err := pb.InclusionProof(ctx, uint64(seq))
		if err != nil {
			t.Fatalf("tessera inclusion proof of %d: %v", seq, err)
		}
		_, ours, _ := call(t, "GET", fmt.Sprintf("%s/v1/audit/proof/inclusion?seq=%d&tree_size=%d", in.base, seq, size), token)
		sameHashes(t, fmt.Sprintf("inclusion of %d", seq), theirs, decodeHashes(t, ours["hashes"]))
		small := 1 + rng.Int64N(size-1)
		theirs, err = pb.ConsistencyProof(ctx, uint64(small), uint64(size))
		if err != nil {
			t.Fatalf("tessera consistency proof %d → %d: %v", small, size, err)
		}
		_, ours, _ = call(t, "GET", fmt.Sprintf("%s/v1/audit/proof/consistency?from=%d&to=%d", in.base, small, size), token)
		sameHashes(t, fmt.Sprintf("consistency from %d", small), theirs, decodeHashes(t, ours["hashes"]))
	}
}

// sameHashes fails t unless a proof from Tessera's client equals ours,
// hash for hash.
func sameHashes(t *testing.T, what string, theirs [][]byte, ours []tlog.Hash) {
	t.Helper()
	if len(theirs) != len(ours) {
		t.Fatalf("%s: tessera %d hashes, ours %d", what, len(theirs), len(ours))
	}
	for i := range ours {
		if !bytes.Equal(theirs[i], ours[i][:]) {
			t.Fatalf("%s: hash %d differs", what, i)
		}
	}
}

// verifierKeyText reads the log's note verifier key.
func verifierKeyText(t *testing.T, in *instance, token string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", in.base+"/v1/audit/verifier-key", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b))
}

// TestTlogTilesAtAMillion is issue 25's acceptance: at more than a
// million entries (1,060,921: full tiles at levels 0 and 1, partial ones
// at levels 0, 1 and 2), Tessera's client, over HTTP with the auditor's
// token, builds inclusion and consistency proofs for 1,000 random
// indexes from our tiles alone, each byte-equal to /v1/audit/proof/*.
func TestTlogTilesAtAMillion(t *testing.T) {
	ctx := context.Background()
	// Tessera's client asks for tiles as fast as it is answered; the
	// default per-reader limit would only slow the test.
	in := startServe(t, serveOpts{extraEnv: []string{"MEDIATOR_RATE_TILES=0", "MEDIATOR_RATE_TILES_SERVICE=0"}})
	in.waitReady(t, 60*time.Second)
	gw, _ := in.issuer.Issue("gateway-million", []string{"ingest"}, time.Hour)
	aud, _ := in.issuer.Issue("regulator", []string{"auditor"}, time.Hour)
	const size = 1<<20 + 12_345
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Go(func() {
			var body bytes.Buffer
			for n := int64(w) * 1000; n < size; n += 4000 {
				batch := min(1000, size-n)
				body.Reset()
				loadgen.WriteBatch(&body, "million", n, int(batch))
				req, _ := http.NewRequestWithContext(ctx, "POST", in.base+"/v1/events", bytes.NewReader(body.Bytes()))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+gw)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs <- fmt.Errorf("ingest at %d: %d", n, resp.StatusCode)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	t.Logf("ingested %d events in %v", size, time.Since(start).Round(time.Millisecond))

	fetch := func(ctx context.Context, path string) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, "GET", in.base+"/v1/audit/tlog/"+path, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+aud)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != 200 {
			err = fmt.Errorf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		return b, err
	}
	verifier, err := note.NewVerifier(verifierKeyText(t, in, aud))
	if err != nil {
		t.Fatal(err)
	}
	var cpSize uint64
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, _, _, err := client.FetchCheckpoint(ctx, func(ctx context.Context) ([]byte, error) { return fetch(ctx, "checkpoint") }, verifier, verifier.Name())
		if err == nil && c.Size == size {
			cpSize = c.Size
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no published checkpoint of %d entries: %v %+v", size, err, c)
		}
		time.Sleep(200 * time.Millisecond)
	}
	pb, err := client.NewProofBuilder(ctx, cpSize, func(ctx context.Context, level, index uint64, p uint8) ([]byte, error) {
		return fetch(ctx, layout.TilePath(level, index, p))
	})
	if err != nil {
		t.Fatal(err)
	}
	sameProofs(t, in, aud, pb, size, 1000, rand.New(rand.NewPCG(25, 1_000_000)))
}

package audit

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mediatorhq/mediator/mirror"
	"github.com/mediatorhq/mediator/tlogpolicy"
	"github.com/mediatorhq/mediator/witness"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Witness is one witness the log asks to cosign its checkpoints (C2SP
// tlog-witness): its name, the URL prefix of its add-checkpoint endpoint,
// and the verifier of its cosignatures.
type Witness struct {
	Name     string
	URL      string
	Verifier note.Verifier
}

// WitnessPolicy is which witnesses a checkpoint needs before it is
// published: the quorum of Rule (a C2SP tlog-policy, with its nested
// groups) or, without a Rule, at least Quorum of Witnesses.
type WitnessPolicy struct {
	// Quorum is, without a Rule, how many of Witnesses must cosign; with
	// a Rule it is not used (see MinCosigners).
	Quorum    int
	Witnesses []Witness
	// Rule, if set, is the policy the witnesses were read from; its
	// witnesses are Witnesses, in order, and a Witness's Name is its key's
	// name (the policy may call it otherwise).
	Rule *tlogpolicy.Policy
}

// met reports whether the witnesses for which cosigned (given a key
// name) is true make the policy's quorum.
func (p WitnessPolicy) met(cosigned func(name string) bool) bool {
	if p.Rule != nil {
		return p.Rule.Met(func(w tlogpolicy.Witness) bool { return cosigned(w.Verifier.Name()) })
	}
	n := 0
	for _, w := range p.Witnesses {
		if cosigned(w.Name) {
			n++
		}
	}
	return n >= p.Quorum
}

// MinCosigners is the fewest cosignatures that can make the quorum: the
// SQL prefilter of publishable checkpoints, and what reports call the
// quorum's size.
func (p WitnessPolicy) MinCosigners() int {
	if p.Rule != nil {
		return p.Rule.MinCosigners()
	}
	return p.Quorum
}

// checkForLog checks that the log with verifier key vkey can follow the
// policy: every witness has an http(s) URL to ask, and a policy that
// lists logs lists this one's key.
func (p WitnessPolicy) checkForLog(vkey string) error {
	for _, w := range p.Witnesses {
		if !strings.HasPrefix(w.URL, "http://") && !strings.HasPrefix(w.URL, "https://") {
			return fmt.Errorf("witness %s has no http(s) URL to send checkpoints to", w.Name)
		}
	}
	if p.Rule == nil || len(p.Rule.Logs) == 0 {
		return nil
	}
	for _, l := range p.Rule.Logs {
		if l.Key == vkey {
			return nil
		}
	}
	return fmt.Errorf("the witness policy lists logs, but not this log's key %s", vkey)
}

// Describe is the quorum in words, for messages.
func (p WitnessPolicy) Describe() string {
	if p.Rule != nil {
		return p.Rule.Describe()
	}
	return fmt.Sprintf("%d of %d", p.Quorum, len(p.Witnesses))
}

// Satisfied counts the witnesses among p whose cosignature lines in
// signed (a checkpoint note with cosignatures) verify, and reports
// whether they make the quorum.
func (p WitnessPolicy) Satisfied(signed []byte) (int, bool) {
	cosigned := map[string]bool{}
	for _, w := range p.Witnesses {
		if _, err := note.Open(signed, note.VerifierList(w.Verifier)); err == nil {
			cosigned[w.Name] = true
		}
	}
	return len(cosigned), p.met(func(name string) bool { return cosigned[name] })
}

// witnessClient asks witnesses to cosign, remembering the size each
// cosigned last so that it sends the right consistency proof.
type witnessClient struct {
	policy WitnessPolicy
	http   *http.Client
	store  *store
	// OnResult, if set, counts each witness's answer (metrics).
	onResult func(witness, result string)

	mu   sync.Mutex
	size map[string]int64 // witness name → size it cosigned last, as far as known
	next map[string]int64 // mirror name → its next entry, as it last said
	// uploads are the mirrors' uploads running in the background, by
	// mirror name: at most one each, never cut short by a round's end.
	uploads map[string]*mirrorUpload
	// uploading counts the running uploads, so Close can wait for them;
	// stop ends them.
	uploading sync.WaitGroup
	stop      context.Context
}

// mirrorUpload is one upload of a checkpoint's entries to a mirror.
type mirrorUpload struct {
	size int64
	done chan struct{} // closed when it ended
	// Once done: the mirror's verified cosignature line (also stored), or
	// why there is none, for metrics.
	line, result string
}

// mirrorWait is how long a round waits for a mirror's upload before it
// goes on without the mirror's cosignature; the upload goes on, and a
// later round publishes with it.
const mirrorWait = 2 * time.Second

// mirrorUploadTimeout bounds one upload in the background.
const mirrorUploadTimeout = 10 * time.Minute

// cosign asks every witness of the policy that has not cosigned cp yet,
// in parallel, and stores each cosignature that verifies. It returns the
// cosignature lines of cp stored in all, by witness name.
func (wc *witnessClient) cosign(ctx context.Context, cp Checkpoint) (map[string]string, error) {
	have, err := wc.store.cosignatures(ctx, cp.Size)
	if err != nil {
		return nil, err
	}
	for name, line := range wc.askAll(ctx, cp, have) {
		have[name] = line
	}
	return have, nil
}

// askAll asks every witness of the policy but those in skip to cosign cp,
// in parallel, stores each cosignature that verifies, and returns them
// by witness name.
func (wc *witnessClient) askAll(ctx context.Context, cp Checkpoint, skip map[string]string) map[string]string {
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := map[string]string{}
	for _, w := range wc.policy.Witnesses {
		if _, done := skip[w.Name]; done {
			continue
		}
		wg.Go(func() {
			line, result := wc.ask(ctx, w, cp)
			if wc.onResult != nil && result != "" {
				wc.onResult(w.Name, result)
			}
			if line == "" || wc.store.insertCosignature(ctx, cp.Size, w.Name, line) != nil {
				return
			}
			mu.Lock()
			got[w.Name] = line
			mu.Unlock()
		})
	}
	wg.Wait()
	return got
}

// witnessTimeout bounds one call to a witness.
const witnessTimeout = 5 * time.Second

// ask sends cp to witness w, once more with the witness's own old size if
// it answers 409, and returns the verified cosignature line and a result
// for metrics: cosigned, conflict, refused, unavailable, mirror_behind
// (or "" for an answer the background upload already counted).
//
// A mirror's upload runs in the background (mirrorUpload). While it runs,
// the mirror is not offered a newer checkpoint, which would replace the
// one it is receiving entries for; once it ended, its cosignature (stored
// already) is this round's answer if it is of cp, and a newer checkpoint
// is offered otherwise.
func (wc *witnessClient) ask(ctx context.Context, w Witness, cp Checkpoint) (string, string) {
	wc.mu.Lock()
	old := wc.size[w.Name]
	u := wc.uploads[w.Name]
	wc.mu.Unlock()
	if u != nil {
		select {
		case <-u.done:
			wc.endUpload(w.Name, u)
			if u.size == cp.Size && u.line != "" {
				return u.line, ""
			}
		default:
			return "", "mirror_behind"
		}
	}
	for attempt := 0; attempt < 2; attempt++ {
		if old > cp.Size {
			return "", "conflict" // the witness saw more than this checkpoint: a rollback or a fork
		}
		body, err := wc.request(ctx, old, cp)
		if err != nil {
			return "", "unavailable"
		}
		cctx, cancel := context.WithTimeout(ctx, witnessTimeout)
		req, _ := http.NewRequestWithContext(cctx, http.MethodPost, strings.TrimSuffix(w.URL, "/")+"/add-checkpoint", bytes.NewReader(body))
		resp, err := wc.http.Do(req)
		if err != nil {
			cancel()
			return "", "unavailable"
		}
		answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		cancel()
		switch resp.StatusCode {
		case http.StatusOK:
			if len(bytes.TrimSpace(answer)) == 0 {
				// A mirror (C2SP tlog-mirror): it keeps cp as pending and
				// cosigns once it holds every entry of it.
				wc.mu.Lock()
				wc.size[w.Name] = cp.Size
				wc.mu.Unlock()
				u := wc.startUpload(w, cp)
				select {
				case <-u.done:
					wc.endUpload(w.Name, u)
					if u.line != "" {
						return u.line, ""
					}
					return "", u.result
				case <-time.After(mirrorWait):
				case <-ctx.Done():
				}
				return "", "mirror_behind"
			}
			return wc.verified(w, cp, answer)
		case http.StatusConflict:
			n, err := strconv.ParseInt(strings.TrimSpace(string(answer)), 10, 64)
			if err != nil || resp.Header.Get("Content-Type") != "text/x.tlog.size" || n == old {
				return "", "conflict" // the same size and another root: a fork
			}
			old = n
			wc.mu.Lock()
			wc.size[w.Name] = n
			wc.mu.Unlock()
		default:
			if resp.StatusCode >= 500 {
				return "", "unavailable" // down or overloaded, not a refusal
			}
			return "", "refused"
		}
	}
	return "", "conflict"
}

// verified returns w's cosignature line of cp in answer if it verifies,
// and the result for metrics.
func (wc *witnessClient) verified(w Witness, cp Checkpoint, answer []byte) (string, string) {
	// Keep only this witness's cosignature, and only if it verifies.
	line := witnessLine(answer, w.Name)
	if _, err := note.Open([]byte(cp.Note+line), note.VerifierList(w.Verifier)); line == "" || err != nil {
		return "", "refused"
	}
	wc.mu.Lock()
	wc.size[w.Name] = cp.Size
	wc.mu.Unlock()
	return line, "cosigned"
}

// startUpload starts uploading the entries of cp to the mirror w in the
// background: when the mirror cosigns, its line is verified and stored,
// and counted as cosigned.
func (wc *witnessClient) startUpload(w Witness, cp Checkpoint) *mirrorUpload {
	u := &mirrorUpload{size: cp.Size, done: make(chan struct{})}
	wc.mu.Lock()
	if wc.uploads == nil {
		wc.uploads = map[string]*mirrorUpload{}
	}
	wc.uploads[w.Name] = u
	wc.mu.Unlock()
	wc.uploading.Add(1)
	go func() {
		defer wc.uploading.Done()
		defer close(u.done)
		ctx, cancel := context.WithTimeout(wc.stop, mirrorUploadTimeout)
		defer cancel()
		answer, result := wc.mirror(ctx, w, cp)
		if result == "" {
			var line string
			if line, result = wc.verified(w, cp, answer); line != "" {
				if err := wc.store.insertCosignature(ctx, cp.Size, w.Name, line); err != nil {
					result = "unavailable"
				} else {
					u.line = line
				}
			}
		}
		u.result = result
		if wc.onResult != nil {
			wc.onResult(w.Name, result)
		}
	}()
	return u
}

// endUpload forgets u, an ended upload to the mirror name.
func (wc *witnessClient) endUpload(name string, u *mirrorUpload) {
	wc.mu.Lock()
	defer wc.mu.Unlock()
	if wc.uploads[name] == u {
		delete(wc.uploads, name)
	}
}

// mirror uploads to the mirror w the entries of cp it lacks (C2SP
// tlog-mirror add-entries) and returns its answer, or a result for
// metrics if it did not cosign: mirror_behind while it is still catching
// up, unavailable, refused.
func (wc *witnessClient) mirror(ctx context.Context, w Witness, cp Checkpoint) ([]byte, string) {
	wc.mu.Lock()
	next := wc.next[w.Name]
	wc.mu.Unlock()
	origin, _, _ := strings.Cut(cp.Note, "\n")
	answer, next, err := mirror.Upload(ctx, wc.http, w.URL, origin, cp.Size, next, wc.store)
	wc.mu.Lock()
	wc.next[w.Name] = next
	wc.mu.Unlock()
	switch {
	case err == nil:
		return answer, ""
	case ctx.Err() != nil:
		return nil, "mirror_behind"
	case errors.Is(err, mirror.ErrNotPending):
		return nil, "refused" // it holds another pending or newer checkpoint
	default:
		return nil, "unavailable"
	}
}

// ahead returns the witnesses that, as their answers said, have cosigned
// a larger tree than size, and the smallest such tree among them (the
// size they all vouch for).
func (wc *witnessClient) ahead(size int64) (map[string]bool, int64) {
	wc.mu.Lock()
	defer wc.mu.Unlock()
	names, least := map[string]bool{}, int64(0)
	for _, w := range wc.policy.Witnesses {
		if n := wc.size[w.Name]; n > size {
			names[w.Name] = true
			if least == 0 || n < least {
				least = n
			}
		}
	}
	return names, least
}

// request is an add-checkpoint body: old size, a consistency proof from
// it, an empty line and the checkpoint.
func (wc *witnessClient) request(ctx context.Context, old int64, cp Checkpoint) ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "old %d\n", old)
	if old > 0 && old < cp.Size {
		proof, err := tlog.ProveTree(cp.Size, old, wc.store.HashReader(ctx))
		if err != nil {
			return nil, err
		}
		for _, h := range proof {
			b.WriteString(base64.StdEncoding.EncodeToString(h[:]) + "\n")
		}
	}
	b.WriteString("\n")
	b.WriteString(cp.Note)
	return b.Bytes(), nil
}

// witnessLine returns the first signature line of answer named name.
func witnessLine(answer []byte, name string) string {
	for _, line := range strings.SplitAfter(string(answer), "\n") {
		if strings.HasPrefix(line, "— "+name+" ") && strings.HasSuffix(line, "\n") {
			return line
		}
	}
	return ""
}

// cosignatures returns the cosignature lines stored for the checkpoint
// at size, by witness name.
func (s *store) cosignatures(ctx context.Context, size int64) (map[string]string, error) {
	rows, err := s.pool.Query(ctx, "SELECT witness, line FROM audit_cosignatures WHERE tree_size = $1", size)
	if err != nil {
		return nil, fmt.Errorf("audit: cosignatures: %w", err)
	}
	out := map[string]string{}
	var name, line string
	if _, err := pgx.ForEachRow(rows, []any{&name, &line}, func() error { out[name] = line; return nil }); err != nil {
		return nil, fmt.Errorf("audit: cosignatures: %w", err)
	}
	return out, nil
}

// insertCosignature stores a witness's cosignature line of the checkpoint
// at size.
func (s *store) insertCosignature(ctx context.Context, size int64, witness, line string) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO audit_cosignatures (tree_size, witness, line) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, size, witness, line)
	if err != nil {
		return fmt.Errorf("audit: store cosignature: %w", err)
	}
	return nil
}

// ErrNoWitnesses: a witness policy names no witness but asks for some.
var ErrNoWitnesses = errors.New("audit: the witness policy's quorum is larger than its witnesses")

// witnessFile is the --witnesses file.
type witnessFile struct {
	Quorum    int `json:"quorum"`
	Witnesses []struct {
		Name        string `json:"name"`
		URL         string `json:"url"`
		VerifierKey string `json:"verifier_key"`
	} `json:"witnesses"`
}

// ParseWitnessPolicy reads a witnesses file in either of its formats:
//
//   - a C2SP tlog-policy file (c2sp.org/tlog-policy): witness lines with
//     cosignature/v1 verifier keys and the URL prefix of their
//     add-checkpoint endpoint, groups, a quorum, and optionally the log
//     lines of the keys the log's checkpoints may be signed with;
//   - the earlier JSON, {"quorum":2,"witnesses":[{"name","url",
//     "verifier_key"}]}, where each name is its key's name: read as the
//     tlog-policy of a group named "witnesses", quorum of them.
//
// Both become the same Rule. Witnesses' key names must differ (the
// cosignatures are stored by them). URLs are checked where witnesses are
// asked (Open), not here, so that a verifier's policy needs none.
func ParseWitnessPolicy(b []byte) (WitnessPolicy, error) {
	if t := bytes.TrimLeft(b, " \t\r\n"); len(t) > 0 && t[0] == '{' {
		return parseWitnessJSON(b)
	}
	rule, err := tlogpolicy.Parse(b)
	if err != nil {
		return WitnessPolicy{}, fmt.Errorf("audit: witnesses file: %w", err)
	}
	return policyOf(rule)
}

// policyOf is the WitnessPolicy of a parsed tlog-policy.
func policyOf(rule *tlogpolicy.Policy) (WitnessPolicy, error) {
	p := WitnessPolicy{Rule: rule}
	names := map[string]string{}
	for _, w := range rule.Witnesses {
		key := w.Verifier.Name()
		if other, dup := names[key]; dup {
			return WitnessPolicy{}, fmt.Errorf("audit: witnesses file: witnesses %s and %s have keys of the same name %q; the log tells cosignatures apart by it", other, w.Name, key)
		}
		names[key] = w.Name
		p.Witnesses = append(p.Witnesses, Witness{Name: key, URL: w.URL, Verifier: w.Verifier})
	}
	return p, nil
}

// parseWitnessJSON reads the earlier JSON witnesses file.
func parseWitnessJSON(b []byte) (WitnessPolicy, error) {
	var f witnessFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return WitnessPolicy{}, fmt.Errorf("audit: witnesses file: %w", err)
	}
	var ws []tlogpolicy.Witness
	for _, w := range f.Witnesses {
		v, err := witness.NewVerifier(w.VerifierKey)
		if err != nil {
			return WitnessPolicy{}, fmt.Errorf("audit: witnesses file: %w", err)
		}
		if v.Name() != w.Name || !strings.HasPrefix(w.URL, "http://") && !strings.HasPrefix(w.URL, "https://") {
			return WitnessPolicy{}, fmt.Errorf("audit: witnesses file: witness %q needs its own verifier key and an http(s) url", w.Name)
		}
		ws = append(ws, tlogpolicy.Witness{Name: w.Name, Key: w.VerifierKey, Verifier: v, URL: w.URL})
	}
	if f.Quorum < 1 || f.Quorum > len(ws) {
		return WitnessPolicy{}, fmt.Errorf("audit: witnesses file: quorum %d must be 1–%d", f.Quorum, len(ws))
	}
	rule, err := tlogpolicy.Threshold("witnesses", f.Quorum, nil, ws)
	if err != nil {
		return WitnessPolicy{}, fmt.Errorf("audit: witnesses file: %w", err)
	}
	return policyOf(rule)
}

// CosignedSize returns the size of the largest checkpoint witness
// cosigned, or 0 when it cosigned none.
func (s *store) CosignedSize(ctx context.Context, witness string) (int64, error) {
	var n *int64
	if err := s.pool.QueryRow(ctx, "SELECT max(tree_size) FROM audit_cosignatures WHERE witness = $1", witness).Scan(&n); err != nil {
		return 0, fmt.Errorf("audit: cosigned size: %w", err)
	}
	if n == nil {
		return 0, nil
	}
	return *n, nil
}

// CheckWitnesses checks the cosignatures stored in pool's log tables
// against policy, as checkWitnesses does, adding what it finds to rep (a
// Report of Verify or VerifyWith on the same tables, whose Origin it
// uses). It checks nothing when rep.OriginMismatch is set.
func CheckWitnesses(ctx context.Context, pool *pgxpool.Pool, rep *Report, policy WitnessPolicy, verifiers ...note.Verifier) error {
	return newStore(pool).checkWitnesses(ctx, rep, policy, verifiers...)
}

// checkWitnesses checks the stored cosignatures against policy: every
// stored cosignature line must verify with its witness's key in policy
// (one that does not was written by someone else), and the newest
// checkpoint must be cosigned by the quorum (it is the one published).
// It adds what it finds to rep and counts, in rep.Witnessed, the
// checkpoints that meet the policy (older ones signed while witnesses
// were down need not: they were never published).
func (s *store) checkWitnesses(ctx context.Context, rep *Report, policy WitnessPolicy, verifiers ...note.Verifier) error {
	if rep.OriginMismatch != nil {
		return nil
	}
	origin := rep.Origin
	if origin == "" {
		origin = verifiers[0].Name()
	}
	byName := map[string]Witness{}
	for _, w := range policy.Witnesses {
		byName[w.Name] = w
	}
	// The checkpoints rep's verification checked: above its verified
	// tree, up to the newest when it began; streamed, a page at a time.
	after, upTo := int64(math.MinInt64), int64(math.MaxInt64)
	if rep.FromSize > 0 {
		after = rep.FromSize
	}
	if rep.checkpointsUpTo != 0 {
		upTo = rep.checkpointsUpTo
	}
	stream := s.streamCheckpoints(ctx, after, upTo)
	var newest struct {
		size     int64
		n        int
		ok, seen bool
	}
	for {
		c, more, err := stream.next()
		if err != nil {
			return err
		}
		if !more {
			break
		}
		newest.seen = false
		if _, _, err := OpenCheckpoint([]byte(c.Note), origin, verifiers...); err != nil {
			continue // reported by Verify
		}
		lines, err := s.cosignatures(ctx, c.Size)
		if err != nil {
			return err
		}
		cosigned := c.Note
		for name, line := range lines {
			w, known := byName[name]
			if !known {
				continue // a witness the policy does not name counts for nothing
			}
			if _, err := note.Open([]byte(c.Note+line), note.VerifierList(w.Verifier)); err != nil {
				rep.bad(-1, "checkpoint %d: the stored cosignature of witness %s does not verify with its key", c.Size, name)
				continue
			}
			cosigned += line
		}
		n, ok := policy.Satisfied([]byte(cosigned))
		if ok {
			rep.Witnessed++
		}
		newest.size, newest.n, newest.ok, newest.seen = c.Size, n, ok, true
	}
	if newest.seen && !newest.ok {
		rep.bad(-1, "checkpoint %d, the newest: cosigned by %d witnesses, short of the policy's quorum %s", newest.size, newest.n, policy.Describe())
	}
	return nil
}

// CheckBundleWitnesses checks that a bundle's checkpoint carries the
// cosignatures of policy's quorum, counting it in rep.Witnessed if so.
func CheckBundleWitnesses(rep *Report, checkpoint []byte, policy WitnessPolicy) {
	if n, ok := policy.Satisfied(checkpoint); !ok {
		rep.bad(-1, "the bundle's checkpoint is cosigned by %d witnesses, short of the policy's quorum %s", n, policy.Describe())
	} else {
		rep.Witnessed++
	}
}

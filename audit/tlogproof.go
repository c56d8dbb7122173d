package audit

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/mediatorhq/mediator/tlogpolicy"
)

// tlogProofHeader is the first line of a C2SP tlog-proof file.
const tlogProofHeader = "c2sp.org/tlog-proof@v1"

// maxTlogProofHashes bounds the inclusion proof a tlog-proof file may
// carry: a tree of 2^63 entries needs 63.
const maxTlogProofHashes = 63

// TlogProof is a C2SP tlog-proof (c2sp.org/tlog-proof@v1): an offline
// proof that an entry is in the log under a checkpoint its witnesses
// cosigned. The mediator puts the entry's leaf, the exact bytes the tree
// hashes, in the proof's extra data, so that the file alone proves what
// was logged; the specification leaves extra data unauthenticated, and
// VerifyTlogProof authenticates it by hashing it into the inclusion proof.
type TlogProof struct {
	Extra      []byte // the entry's leaf
	Index      int64
	Proof      tlog.RecordProof
	Checkpoint []byte // the signed checkpoint note with its cosignature lines
}

// Marshal writes p in the tlog-proof format.
func (p TlogProof) Marshal() []byte {
	var b bytes.Buffer
	b.WriteString(tlogProofHeader + "\n")
	if len(p.Extra) > 0 {
		b.WriteString("extra " + base64.StdEncoding.EncodeToString(p.Extra) + "\n")
	}
	b.WriteString("index " + strconv.FormatInt(p.Index, 10) + "\n")
	for _, h := range p.Proof {
		b.WriteString(base64.StdEncoding.EncodeToString(h[:]) + "\n")
	}
	b.WriteString("\n")
	b.Write(p.Checkpoint)
	return b.Bytes()
}

// ErrTlogProof wraps every reason a tlog-proof file is malformed or does
// not verify.
var ErrTlogProof = errors.New("tlog-proof")

// ParseTlogProof reads a tlog-proof file. It checks the format only; see
// VerifyTlogProof.
func ParseTlogProof(b []byte) (TlogProof, error) {
	bad := func(format string, args ...any) (TlogProof, error) {
		return TlogProof{}, fmt.Errorf("%w: %s", ErrTlogProof, fmt.Sprintf(format, args...))
	}
	head, checkpoint, ok := bytes.Cut(b, []byte("\n\n"))
	if !ok {
		return bad("no empty line before the checkpoint")
	}
	lines := strings.Split(string(head), "\n")
	if lines[0] != tlogProofHeader {
		return bad("the first line is not %s", tlogProofHeader)
	}
	lines = lines[1:]
	var p TlogProof
	if len(lines) > 0 && strings.HasPrefix(lines[0], "extra ") {
		extra, err := base64.StdEncoding.Strict().DecodeString(strings.TrimPrefix(lines[0], "extra "))
		if err != nil {
			return bad("extra: %v", err)
		}
		p.Extra, lines = extra, lines[1:]
	}
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "index ") {
		return bad("no index line")
	}
	index := strings.TrimPrefix(lines[0], "index ")
	n, err := strconv.ParseInt(index, 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != index {
		return bad("index %q is not a decimal without leading zeroes", index)
	}
	p.Index = n
	if len(lines)-1 > maxTlogProofHashes {
		return bad("%d proof hashes; no tree needs more than %d", len(lines)-1, maxTlogProofHashes)
	}
	for i, line := range lines[1:] {
		h, err := base64.StdEncoding.Strict().DecodeString(line)
		if err != nil || len(h) != tlog.HashSize {
			return bad("proof line %d is not a base64 SHA-256 hash", i+1)
		}
		p.Proof = append(p.Proof, tlog.Hash(h))
	}
	p.Checkpoint = checkpoint
	return p, nil
}

// VerifiedTlogProof is what a tlog-proof proved.
type VerifiedTlogProof struct {
	Origin    string
	Index     int64
	Size      int64
	Root      tlog.Hash
	Witnesses []string // the policy's names of the witnesses that cosigned
	Leaf      []byte   // the entry, as the tree hashes it
}

// VerifyTlogProof checks a tlog-proof file offline against policy: the
// checkpoint is signed by one of the policy's logs and cosigned by its
// quorum, the proof's extra data is a leaf of this log at the proof's
// index (its seq member says so), and the inclusion proof puts that leaf
// at that index in the checkpoint's tree. Any other proof, a cut one
// included, fails with an error wrapping ErrTlogProof or one of
// tlogpolicy's errors.
func VerifyTlogProof(b []byte, policy *tlogpolicy.Policy) (VerifiedTlogProof, error) {
	p, err := ParseTlogProof(b)
	if err != nil {
		return VerifiedTlogProof{}, err
	}
	log, witnesses, err := policy.Check(p.Checkpoint)
	if err != nil {
		return VerifiedTlogProof{}, fmt.Errorf("%w: %w", ErrTlogProof, err)
	}
	origin := log.Verifier.Name()
	size, root, err := OpenCheckpoint(p.Checkpoint, origin, log.Verifier)
	if err != nil {
		return VerifiedTlogProof{}, fmt.Errorf("%w: %w", ErrTlogProof, err)
	}
	out := VerifiedTlogProof{Origin: origin, Index: p.Index, Size: size, Root: root, Witnesses: witnesses, Leaf: p.Extra}
	if p.Index >= size {
		return out, fmt.Errorf("%w: index %d is not in the checkpoint's tree of %d entries", ErrTlogProof, p.Index, size)
	}
	if len(p.Extra) == 0 {
		return out, fmt.Errorf("%w: no extra data: the mediator's proofs carry the entry's leaf there", ErrTlogProof)
	}
	fields, _, err := ParseLeaf(p.Extra)
	if err != nil {
		return out, fmt.Errorf("%w: the extra data is not a leaf of this log: %w", ErrTlogProof, err)
	}
	if fields.Seq != p.Index {
		return out, fmt.Errorf("%w: the leaf says seq %d, the proof index %d", ErrTlogProof, fields.Seq, p.Index)
	}
	if err := tlog.CheckRecord(p.Proof, size, root, p.Index, tlog.RecordHash(p.Extra)); err != nil {
		return out, fmt.Errorf("%w: the inclusion proof does not put the leaf at index %d of the checkpoint's tree: %w", ErrTlogProof, p.Index, err)
	}
	return out, nil
}

// TlogProof returns the C2SP tlog-proof of the entry at seq under the
// latest published checkpoint (LatestCheckpoint), cosignatures included,
// with the entry's leaf as its extra data. ErrNotFound when no published
// checkpoint covers seq yet (ErrNotPublished) or there is no such entry.
func (l *Log) TlogProof(ctx context.Context, seq int64) ([]byte, error) {
	e, err := l.reader.Entry(ctx, seq)
	if err != nil && !(l.standby() && errors.Is(err, ErrNotFound)) {
		return nil, err
	}
	cp, err := l.LatestCheckpoint(ctx)
	if errors.Is(err, ErrNotFound) || err == nil && seq >= cp.Size {
		return nil, fmt.Errorf("%w: entry %d is not in a published checkpoint's tree yet", ErrNotPublished, seq)
	}
	if err != nil {
		return nil, err
	}
	if e.Leaf == nil {
		// The standby lacks the entry but published its tree: it cannot.
		return nil, fmt.Errorf("%w: entry %d", ErrNotReplicated, seq)
	}
	proof, err := l.reader.InclusionProof(ctx, seq, cp.Size)
	if err != nil {
		return nil, err
	}
	return TlogProof{Extra: e.Leaf, Index: seq, Proof: proof, Checkpoint: []byte(cp.Note)}.Marshal(), nil
}

// ErrNotPublished: an entry exists but no published checkpoint covers it
// yet; a retry after the next publication succeeds. It wraps ErrNotFound.
var ErrNotPublished = fmt.Errorf("%w: not published yet", ErrNotFound)

package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/mod/sumdb/note"
)

// VerifyStateVersion is the version of the state file this code writes
// and the only one it reads.
const VerifyStateVersion = 1

// VerifyState is what an incremental verification keeps between runs
// (audit verify --state): the last checkpoint it verified, with
// everything needed to check it again offline.
type VerifyState struct {
	// Version is VerifyStateVersion.
	Version int `json:"version"`
	// Origin is the log's origin.
	Origin string `json:"origin"`
	// Size and Root (base64) are the checkpoint's tree.
	Size int64  `json:"size"`
	Root string `json:"root"`
	// Checkpoint is the signed checkpoint note, with the cosignature
	// lines of Witnesses appended.
	Checkpoint string `json:"checkpoint"`
	// Witnesses names the witnesses of the policy whose cosignatures of
	// the checkpoint verified; empty without a witness policy.
	Witnesses []string `json:"witnesses"`
	// VerifiedAt is when the verification that saved it ended.
	VerifiedAt time.Time `json:"verified_at"`
	// EventIDs is the event-id index of the entries below Size, a file
	// beside the state file, which the next verification checks its new
	// entries' event ids against. A state written before it existed has
	// none, and the next verification is a full one.
	EventIDs *IDIndex `json:"event_ids,omitempty"`
}

// ReadVerifyState reads a state file strictly: unknown fields, another
// version or trailing data are errors. A missing file is an error that
// wraps fs.ErrNotExist.
func ReadVerifyState(path string) (*VerifyState, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var st VerifyState
	if err := dec.Decode(&st); err != nil {
		return nil, fmt.Errorf("audit: state file %s: %w", path, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("audit: state file %s: data after the JSON object", path)
	}
	if st.Version != VerifyStateVersion {
		return nil, fmt.Errorf("audit: state file %s: version %d, want %d", path, st.Version, VerifyStateVersion)
	}
	if x := st.EventIDs; x != nil {
		if x.File == "" || filepath.Base(x.File) != x.File || x.File == "." || x.File == ".." || x.Size != st.Size || x.Count < 0 {
			return nil, fmt.Errorf("audit: state file %s: its event-id index is not a file beside it for the state's %d entries", path, st.Size)
		}
		x.path = filepath.Join(filepath.Dir(path), x.File)
	}
	return &st, nil
}

// Write writes the state to path atomically: a temporary file in the
// same directory, mode 0600, synced and renamed over path.
func (st *VerifyState) Write(path string) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("audit: write state: %w", err)
	}
	defer os.Remove(f.Name()) // after the rename, there is nothing to remove
	if err := f.Chmod(0o600); err == nil {
		_, err = f.Write(append(b, '\n'))
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(f.Name(), path)
		}
		if err == nil {
			if d, derr := os.Open(filepath.Dir(path)); derr == nil {
				d.Sync()
				d.Close()
			}
		}
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("audit: write state: %w", err)
	}
	return nil
}

// Tree checks the state against the log it is to verify: its origin must
// be origin, and its checkpoint must be signed by one of verifiers and
// name its Size and Root. A state of another log fails here.
func (st *VerifyState) Tree(origin string, verifiers ...note.Verifier) (VerifiedTree, error) {
	if st.Origin != origin {
		return VerifiedTree{}, &OriginMismatch{Expected: origin, Found: []string{st.Origin}}
	}
	size, root, err := OpenCheckpoint([]byte(st.Checkpoint), origin, verifiers...)
	if err != nil {
		return VerifiedTree{}, fmt.Errorf("the state's checkpoint does not verify with this log's keys (another log's state?): %w", err)
	}
	if size != st.Size || b64(root) != st.Root || size < 1 {
		return VerifiedTree{}, fmt.Errorf("the state's size %d and root %s are not its checkpoint's (%d, %s)", st.Size, st.Root, size, b64(root))
	}
	return VerifiedTree{Size: size, Root: root, EventIDs: st.EventIDs}, nil
}

// NewVerifyState is the state to save after rep, a verification of
// pool's log that passed: the checkpoint at rep.CheckpointSize, with the
// cosignatures of policy's witnesses that verify, and the event-id index
// rep wrote. It returns nil when no checkpoint verified.
func NewVerifyState(ctx context.Context, pool *pgxpool.Pool, rep *Report, policy WitnessPolicy, verifiers ...note.Verifier) (*VerifyState, error) {
	if rep.CheckpointSize < 1 {
		return nil, nil
	}
	s := newStore(pool)
	c, err := s.checkpointAt(ctx, rep.CheckpointSize)
	if err != nil {
		return nil, err
	}
	size, root, err := OpenCheckpoint([]byte(c.Note), rep.Origin, verifiers...)
	if err != nil || size != c.Size || root != c.Root {
		return nil, fmt.Errorf("audit: checkpoint %d changed during verification", c.Size)
	}
	st := &VerifyState{Version: VerifyStateVersion, Origin: rep.Origin, Size: size, Root: b64(root), Checkpoint: c.Note,
		Witnesses: []string{}, VerifiedAt: time.Now().UTC()}
	if x := rep.EventIDIndex; x != nil && x.Size == size {
		st.EventIDs = x
	}
	lines, err := s.cosignatures(ctx, c.Size)
	if err != nil {
		return nil, err
	}
	for _, w := range policy.Witnesses {
		line, ok := lines[w.Name]
		if !ok {
			continue
		}
		if _, err := note.Open([]byte(c.Note+line), note.VerifierList(w.Verifier)); err == nil {
			st.Checkpoint += line
			st.Witnesses = append(st.Witnesses, w.Name)
		}
	}
	slices.Sort(st.Witnesses)
	return st, nil
}

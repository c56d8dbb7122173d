package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	jsonv2 "github.com/go-json-experiment/json"

	"github.com/mediatorhq/mediator/roster"
)

// State is the roster memory the agent keeps across restarts: the newest
// roster version it verified from Genesis, and that version's digest
// ((*client.Client).RosterMemory). Loaded at start
// ((*client.Client).RememberRoster), it makes a restarted agent refuse a
// chain that does not hold that version (client.ErrRosterRollback): a
// mediator cannot hide a removal or a re-key by serving an older chain to
// an agent that restarted.
type State struct {
	Genesis string `json:"genesis"`
	Version uint64 `json:"version"`
	Digest  string `json:"digest"`
}

// ErrOtherGenesis: the state file remembers a roster of another genesis
// than the one configured. The agent does not start: either the file or
// the genesis is not the one meant, and neither may be overwritten
// silently.
var ErrOtherGenesis = errors.New("agent: the state file is for another roster genesis")

// maxStateFile bounds the state file: a genesis, a number and a digest.
const maxStateFile = 4 << 10

// LoadState reads the state file at path for genesis. A missing file is
// no memory (ok false): a first start. A file that does not parse
// strictly, whose version or digest is malformed, or that is for another
// genesis (ErrOtherGenesis) is an error.
func LoadState(path, genesis string) (st State, ok bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return State{}, false, nil
	}
	if err != nil {
		return State{}, false, fmt.Errorf("agent: state file: %w", err)
	}
	if len(b) > maxStateFile {
		return State{}, false, fmt.Errorf("agent: state file %s: larger than %d bytes", path, maxStateFile)
	}
	if err := jsonv2.Unmarshal(b, &st, jsonv2.RejectUnknownMembers(true)); err != nil {
		return State{}, false, fmt.Errorf("agent: state file %s: %w", path, err)
	}
	if st.Version == 0 || !roster.ValidDigest(st.Digest) || !roster.ValidDigest(st.Genesis) {
		return State{}, false, fmt.Errorf("agent: state file %s: needs a genesis, a version of at least 1 and a digest", path)
	}
	if st.Genesis != genesis {
		return State{}, false, fmt.Errorf("%w: %s remembers genesis %s, the configuration pins %s", ErrOtherGenesis, path, st.Genesis, genesis)
	}
	return st, true, nil
}

// SaveState writes st to path atomically: a temporary file in the same
// directory is written with mode 0600, synced, and renamed over path,
// and the directory is synced, so that a crash leaves the old memory or
// the new one, never a torn file.
//
// Cost: two fsyncs.
func SaveState(path string, st State) error {
	b, err := jsonv2.Marshal(st)
	if err != nil {
		return fmt.Errorf("agent: state file: %w", err)
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("agent: state file: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename, there is nothing by that name
	err = tmp.Chmod(0o600)
	if err == nil {
		_, err = tmp.Write(append(b, '\n'))
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("agent: state file: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return fmt.Errorf("agent: state file: sync %s: %w", dir, err)
		}
	}
	return nil
}

package agent

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// staleProbe bounds the dial that tells a live socket from a stale one.
const staleProbe = 500 * time.Millisecond

// Listen opens the listener a: a unix socket created with mode 0600 (only
// the agent's user may connect), after removing a stale socket file that
// no process answers on; or a TCP listener whose bound address is
// loopback (a "localhost" that resolves elsewhere is refused). It refuses
// a path held by a live agent or by anything but a socket.
func Listen(a Address) (net.Listener, error) {
	switch a.Network {
	case "unix":
		return listenUnix(a.Address)
	case "tcp":
		if !loopbackHost(hostOf(a.Address)) {
			return nil, fmt.Errorf("agent: listen %s: %w", a, ErrNotLocal)
		}
		ln, err := net.Listen("tcp", a.Address)
		if err != nil {
			return nil, fmt.Errorf("agent: listen: %w", err)
		}
		if !isLocal(ln.Addr()) {
			ln.Close()
			return nil, fmt.Errorf("agent: listen %s bound %s: %w", a, ln.Addr(), ErrNotLocal)
		}
		return ln, nil
	}
	return nil, fmt.Errorf("agent: listen %q: %w", a.Address, ErrNotLocal)
}

func hostOf(hostport string) string {
	h, _, _ := net.SplitHostPort(hostport)
	return h
}

// isLocal reports whether addr is a unix socket or a loopback TCP address.
func isLocal(addr net.Addr) bool {
	switch a := addr.(type) {
	case *net.UnixAddr:
		return true
	case *net.TCPAddr:
		return a.IP.IsLoopback()
	}
	return false
}

// listenUnix binds the socket in a fresh private directory beside path,
// gives it mode 0600 and renames it to path: no other user can connect in
// the moment between bind and chmod, which a umask change would make
// process-wide.
func listenUnix(path string) (net.Listener, error) {
	if err := removeStale(path); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(filepath.Dir(path), ".agent-sock-")
	if err != nil {
		return nil, fmt.Errorf("agent: listen: %w", err)
	}
	defer os.RemoveAll(dir)
	bound := filepath.Join(dir, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: bound, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("agent: listen: %w", err)
	}
	ln.SetUnlinkOnClose(false) // the socket is renamed: Close removes it by its final name
	err = os.Chmod(bound, 0o600)
	if err == nil {
		err = os.Rename(bound, path)
	}
	var st os.FileInfo
	if err == nil {
		st, err = os.Lstat(path)
	}
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("agent: listen: %w", err)
	}
	return &unixListener{UnixListener: ln, path: path, file: st}, nil
}

// removeStale removes a socket file at path that no process accepts on.
func removeStale(path string) error {
	st, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("agent: listen: %w", err)
	}
	if st.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("agent: listen: %s exists and is not a socket; not removing it", path)
	}
	if c, err := net.DialTimeout("unix", path, staleProbe); err == nil {
		c.Close()
		return fmt.Errorf("agent: listen: a process already accepts on %s (another agent?)", path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("agent: listen: remove the stale socket: %w", err)
	}
	return nil
}

// unixListener is the agent's socket under its final name.
type unixListener struct {
	*net.UnixListener
	path string
	file os.FileInfo // the socket file made, to remove only that one
	once sync.Once
}

// Addr is the socket's path (the bound name was temporary).
func (l *unixListener) Addr() net.Addr { return &net.UnixAddr{Name: l.path, Net: "unix"} }

// Close stops accepting and removes the socket file, unless another
// process replaced it meanwhile.
func (l *unixListener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() {
		if st, serr := os.Lstat(l.path); serr == nil && os.SameFile(st, l.file) {
			os.Remove(l.path)
		}
	})
	return err
}

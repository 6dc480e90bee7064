//go:build unix

package control

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// SocketMode is the control socket's mode: everyone may connect and read
// the state; writes are gated by peer credentials.
const SocketMode = 0o666

// Listen opens the control socket at path. It creates the parent directory
// (mode 0755) if missing. A socket left behind by a daemon that died is
// removed, but only if nothing answers on it: if another daemon is live,
// Listen fails and says so. A path that exists but is not a socket is never
// removed. The socket is removed when the listener is closed.
func Listen(path string) (net.Listener, error) {
	if path == "" {
		return nil, errors.New("control: listen: empty socket path")
	}
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("control: listen: create %s: %w", dir, err)
		}
		// MkdirAll honours the umask; the directory must be searchable
		// by everyone for the socket to be reachable.
		if err := os.Chmod(dir, 0o755); err != nil {
			return nil, fmt.Errorf("control: listen: %w", err)
		}
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control: listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, SocketMode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control: listen: %w", err)
	}
	return ln, nil
}

// removeStale removes the socket at path if no daemon answers on it.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control: listen: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("control: listen: %s exists and is not a socket; refusing to replace it", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("control: listen: another nymvpnd is already running on %s (stop it first: sudo systemctl stop nymvpnd)", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("control: listen: %s exists and cannot be checked for a live daemon: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("control: listen: remove stale socket: %w", err)
	}
	return nil
}

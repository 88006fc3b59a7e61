package control

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Listen listens on the Unix socket path for Serve. It creates the parent
// directory (mode 0755) if it is missing, replaces a stale socket left by a
// timed that is gone (but not a live one, nor anything that is not a
// socket), and makes the socket mode 0666: anyone may connect, and the
// server authorizes each command by the peer's credentials. Closing the
// listener removes the socket file.
func Listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control: listen: %w", err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control: %w", err)
	}
	return ln, nil
}

// removeStale removes path if it is a socket nobody listens on.
func removeStale(path string) error {
	st, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	if st.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("control: %s exists and is not a socket; not replacing it", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("control: %s: another timed is already listening there", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("control: %s: cannot tell whether the socket is stale: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("control: removing stale socket: %w", err)
	}
	return nil
}

// FallbackSocket is where an unprivileged timed puts its control socket
// when it cannot use the default one, and where timectl then finds it:
// $XDG_RUNTIME_DIR/timed/timed.sock (given the value of XDG_RUNTIME_DIR),
// else $TMPDIR/timed-UID/timed.sock.
func FallbackSocket(xdgRuntimeDir string) string {
	if xdgRuntimeDir != "" {
		if st, err := os.Stat(xdgRuntimeDir); err == nil && st.IsDir() {
			return filepath.Join(xdgRuntimeDir, "timed", "timed.sock")
		}
	}
	return filepath.Join(os.TempDir(), "timed-"+strconv.Itoa(os.Getuid()), "timed.sock")
}

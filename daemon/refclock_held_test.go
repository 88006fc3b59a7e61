//go:build unix

package daemon

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"
)

// takeSockets keeps the bound Unix datagram sockets by path and closes any
// other descriptor it is given: a stream listener, a regular file.
func TestTakeSockets(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "chrony.ttyS0.sock")
	gram, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer gram.Close()
	stream, err := net.Listen("unix", filepath.Join(dir, "stream.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	file, err := os.Create(filepath.Join(dir, "file"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()

	// Descriptors of their own, as the service manager would pass.
	gf, err := gram.File()
	if err != nil {
		t.Fatal(err)
	}
	defer gf.Close()
	sf, err := stream.(*net.UnixListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer sf.Close()
	var fds []uintptr
	for _, f := range []*os.File{gf, sf, file} {
		d, err := unix.Dup(int(f.Fd()))
		if err != nil {
			t.Fatal(err)
		}
		fds = append(fds, uintptr(d))
	}
	got := takeSockets(fds, zaptest.NewLogger(t))
	c, ok := got[path]
	if len(got) != 1 || !ok {
		t.Fatalf("takeSockets = %v, want only %s", got, path)
	}
	defer c.Close()
	for i, fd := range fds {
		if _, err := unix.FcntlInt(fd, unix.F_GETFD, 0); !errors.Is(err, unix.EBADF) {
			t.Errorf("descriptor %d (%d) still open: %v", i, fd, err)
		}
	}
	// The socket taken reads what is sent to the path.
	w, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Write([]byte("sample")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "sample" {
		t.Errorf("read %q, %v", buf[:n], err)
	}
}

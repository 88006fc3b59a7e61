package control

import (
	"errors"
	"fmt"
	"net"
)

// onSocketFD runs get on the file descriptor of a Unix socket connection,
// for the OS-specific peer-credential lookups.
func onSocketFD(conn net.Conn, get func(fd int) error) error {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return errors.New("not a Unix socket")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return fmt.Errorf("peer credentials: %w", err)
	}
	var getErr error
	if err := raw.Control(func(fd uintptr) { getErr = get(int(fd)) }); err != nil {
		return fmt.Errorf("peer credentials: %w", err)
	}
	return getErr
}

package control

import (
	"errors"
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// peerCredentials asks the kernel who is at the other end of a Unix socket
// (SO_PEERCRED: the peer's uid, primary gid and pid when it connected).
func peerCredentials(conn net.Conn) (*peerCred, error) {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return nil, errors.New("not a Unix socket")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("peer credentials: %w", err)
	}
	var (
		cred  *unix.Ucred
		opErr error
	)
	if err := raw.Control(func(fd uintptr) {
		cred, opErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, fmt.Errorf("peer credentials: %w", err)
	}
	if opErr != nil {
		return nil, fmt.Errorf("peer credentials: SO_PEERCRED: %w", opErr)
	}
	return &peerCred{UID: cred.Uid, GID: cred.Gid, PID: cred.Pid}, nil
}

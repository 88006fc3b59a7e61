//go:build freebsd || darwin

package control

import (
	"errors"
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// peerCredentials asks the kernel who is at the other end of a Unix socket
// (LOCAL_PEERCRED: the peer's effective uid and groups, the first of which
// is its effective gid). The pid is not reported.
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
		cred  *unix.Xucred
		opErr error
	)
	if err := raw.Control(func(fd uintptr) {
		cred, opErr = unix.GetsockoptXucred(int(fd), unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
	}); err != nil {
		return nil, fmt.Errorf("peer credentials: %w", err)
	}
	if opErr != nil {
		return nil, fmt.Errorf("peer credentials: LOCAL_PEERCRED: %w", opErr)
	}
	if cred.Ngroups < 1 {
		return nil, errors.New("peer credentials: LOCAL_PEERCRED reported no groups")
	}
	return &peerCred{UID: cred.Uid, GID: cred.Groups[0]}, nil
}

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
	var cred *unix.Xucred
	err := onSocketFD(conn, func(fd int) (err error) {
		cred, err = unix.GetsockoptXucred(fd, unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
		if err != nil {
			return fmt.Errorf("peer credentials: LOCAL_PEERCRED: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if cred.Ngroups < 1 {
		return nil, errors.New("peer credentials: LOCAL_PEERCRED reported no groups")
	}
	return &peerCred{UID: cred.Uid, GID: cred.Groups[0]}, nil
}
